"""Full-text search over every stored message (revision ``0006``).

SQLite: an FTS5 table ``messages_fts`` over ``messages.content`` (external content, kept in
sync by triggers), ranked by BM25. PostgreSQL: the generated column
``messages.search_vector`` (``to_tsvector('openpista_search', left(content, 100000))``,
revisions ``0008`` and ``0011``) with a GIN index, ranked by ``ts_rank_cd``. Both tokenise the same
language-neutral way (words of letters and digits, case and accents folded, revision
``0011``: "café" finds "cafe" and back; no stemming, no stop words), so a query finds the
same messages on either database. PostgreSQL indexes the first
:data:`PG_INDEXED_CHARACTERS` characters of a message (a ``tsvector`` holds at most 1 MB).

User input is never FTS syntax: :func:`query_terms` splits it into words, and every word is
matched literally (all of them must appear).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, text

from openpista.memory.checks import MemoryStoreError
from openpista.memory.tables import UTCDateTime

MAX_QUERY_LENGTH = 500
"""Longest query accepted, in characters."""
MAX_TERMS = 16
"""Most words a query may have."""
PG_INDEXED_CHARACTERS = 100_000
SNIPPET_WORDS = 16
"""About how many words a snippet shows around the matches."""
MARK_START, MARK_END = "[", "]"
"""How a snippet marks the words that matched."""

# The PostgreSQL column holding each message's tsvector (generated from its content).
PG_VECTOR = "m.search_vector"
# The PostgreSQL text search configuration of that column and of queries (revision 0011):
# ``simple`` with accents folded by ``unaccent``.
PG_CONFIG = "openpista_search"


@dataclass(frozen=True, slots=True)
class SearchScope:
    """Which sessions a search looks in; every condition given applies (none: all).

    ``channel_id``: the sessions that chat took part in or is bound to. ``person``: the
    sessions that person (``telegram:123``), or an identity the owner linked with it, spoke
    in, or whose private chat is theirs.
    """

    session_id: str | None = None
    channel_id: str | None = None
    person: str | None = None


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One matching message: where it is, a one-line snippet with the matches marked
    (``[word]``), and its relevance (higher is better; comparable within one search)."""

    session_id: str
    message_id: int
    role: str
    snippet: str
    created_at: datetime
    score: float

    def as_dict(self) -> dict[str, Any]:
        """The hit as JSON-ready values."""
        return {
            "session_id": self.session_id,
            "message_id": self.message_id,
            "role": self.role,
            "snippet": self.snippet,
            "created_at": self.created_at.isoformat(),
            "score": round(self.score, 6),
        }


def query_terms(query: object) -> list[str]:
    """The words of ``query`` to match literally: split on white space, control characters
    dropped, words without a letter or digit left out; raises :class:`MemoryStoreError`
    when nothing is left or the query is too long."""
    if not isinstance(query, str):
        raise MemoryStoreError(f"a search query is text, not {type(query).__name__}")
    if len(query) > MAX_QUERY_LENGTH:
        raise MemoryStoreError(
            f"the search query is {len(query)} characters long; the limit is {MAX_QUERY_LENGTH}"
        )
    shown = "".join(
        " " if unicodedata.category(char) in ("Cc", "Cf", "Cs") else char for char in query
    )
    terms = [word for word in shown.split() if any(char.isalnum() for char in word)]
    if not terms:
        raise MemoryStoreError("nothing to search for: give one or more words")
    if len(terms) > MAX_TERMS:
        raise MemoryStoreError(f"the search query has {len(terms)} words; the limit is {MAX_TERMS}")
    return terms


def fts5_match(terms: list[str]) -> str:
    """An FTS5 ``MATCH`` expression requiring every term, each quoted as a literal string
    (``"`` doubled), so that no operator, column filter or prefix mark gets through."""
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


def search_messages(
    conn: Connection, terms: list[str], scope: SearchScope, limit: int
) -> list[SearchHit]:
    """The ``limit`` most relevant messages containing every term, within ``scope``."""
    where, params = scope_filter(scope)
    params["limit"] = limit
    if conn.dialect.name == "postgresql":
        params["q"] = " ".join(terms)
        statement = _PG_SEARCH.format(vector=PG_VECTOR, config=PG_CONFIG, where=where)
    else:
        params["q"] = fts5_match(terms)
        join = " JOIN messages AS m ON m.id = f.rowid" if where else ""
        statement = _SQLITE_SEARCH.format(join=join, where=where)
    rows = conn.execute(text(statement).columns(created_at=UTCDateTime()), params).all()
    return [_hit(row) for row in rows]


def scope_filter(scope: SearchScope) -> tuple[str, dict[str, Any]]:
    """SQL conditions (each after ``AND``, on ``messages AS m``) keeping the messages of
    ``scope``, and their parameters: shared by full-text and vector search."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if scope.session_id is not None:
        clauses.append("m.session_id = :scope_session")
        params["scope_session"] = scope.session_id
    if scope.channel_id is not None:
        clauses.append(
            "m.session_id IN (SELECT session_id FROM session_people WHERE channel_id = :scope_chat"
            " UNION SELECT session_id FROM channel_sessions WHERE channel_id = :scope_chat)"
        )
        params["scope_chat"] = scope.channel_id
    if scope.person is not None:
        clauses.append(
            "m.session_id IN (SELECT session_id FROM session_people WHERE person = :scope_person"
            " OR person IN (SELECT identity FROM person_links WHERE person ="
            " (SELECT person FROM person_links WHERE identity = :scope_person)))"
        )
        params["scope_person"] = scope.person
    return "".join(f" AND {clause}" for clause in clauses), params


# Ranked first (FTS5's ``ORDER BY rank LIMIT`` when unscoped), snippets made for the hits
# shown only: snippet() reads and tokenises the whole text of each row it is called for.
_SQLITE_SEARCH = (
    "WITH hits AS (SELECT f.rowid AS id, f.rank AS rank FROM messages_fts AS f{join} "  # noqa: S608  only constant SQL fragments; values are bound parameters
    "WHERE messages_fts MATCH :q{where} ORDER BY f.rank LIMIT :limit) "
    "SELECT m.id, m.session_id, m.role, m.created_at, -hits.rank AS score, "
    f"snippet(messages_fts, 0, '{MARK_START}', '{MARK_END}', '…', {SNIPPET_WORDS}) AS snippet "
    "FROM hits JOIN messages_fts ON messages_fts.rowid = hits.id "
    "JOIN messages AS m ON m.id = hits.id "
    "WHERE messages_fts MATCH :q ORDER BY hits.rank, m.id DESC"
)

# Ranked first, the snippets made for the hits shown only (ts_headline reads the text).
_PG_SEARCH = (
    "WITH q AS (SELECT plainto_tsquery('{config}'::regconfig, :q) AS q), "  # noqa: S608  only constant SQL fragments; values are bound parameters
    "hits AS (SELECT m.id, ts_rank_cd({vector}, q.q, 1) AS score FROM messages AS m, q "
    "WHERE {vector} @@ q.q{where} ORDER BY score DESC, m.id DESC LIMIT :limit) "
    "SELECT m.id, m.session_id, m.role, m.created_at, hits.score, "
    "ts_headline('{config}'::regconfig, "
    f"left(m.content, {PG_INDEXED_CHARACTERS}), q.q, "
    f"'StartSel={MARK_START}, StopSel={MARK_END}, MaxWords={SNIPPET_WORDS}, MinWords=4, "
    'MaxFragments=2, FragmentDelimiter=" … "\') AS snippet '
    "FROM hits JOIN messages AS m ON m.id = hits.id, q ORDER BY hits.score DESC, m.id DESC"
)


def _hit(row: Row[Any]) -> SearchHit:
    return SearchHit(
        session_id=row.session_id,
        message_id=int(row.id),
        role=row.role,
        snippet=one_line(row.snippet or ""),
        created_at=row.created_at,
        score=float(row.score),
    )


def one_line(snippet: str) -> str:
    """The snippet on one line, without control or format characters (it is printed)."""
    shown = "".join(" " if unicodedata.category(char) in ("Cc", "Cf") else char for char in snippet)
    return " ".join(shown.split())
