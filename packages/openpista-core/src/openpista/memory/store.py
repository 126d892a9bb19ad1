"""Conversation memory: sessions, their messages and the chats bound to them, in SQLite or
PostgreSQL.

Usage::

    async with await MemoryStore.open("sqlite+aiosqlite:///~/.openpista/memory.db") as store:
        history = await store.start_turn("s1", Message(role="user", content="hi"))
        await store.append_messages("s1", [Message(role="assistant", content="hello")])
        messages = await store.load_messages("s1")

:meth:`MemoryStore.open` expands ``~``, creates the directory of a SQLite file and upgrades the
schema to the newest Alembic revision, so a database written by an older openpista is
upgraded in place. Every write is one transaction; SQLite runs in WAL mode with
``synchronous=NORMAL``: a committed message survives a crash or kill of the process, and the
database is never corrupted; a power loss may undo the last commits (the price of not
syncing the disk on every message, which halved the gateway's throughput).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Self

from pydantic import ValidationError
from sqlalchemy import (
    Connection,
    Row,
    Select,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    union,
    update,
)

from openpista.memory.checks import (
    MemoryStoreError,
    SessionNotFoundError,
    check_channel_id,
    check_limit,
    check_session_id,
    check_text,
)
from openpista.memory.decisions import (
    DecisionAction,
    DecisionSource,
    ToolDecision,
    decision_row,
    insert_decision,
    select_decisions,
)
from openpista.memory.embeddings import (
    DEFAULT_MIN_SIMILARITY,
    Embedder,
    MessageEmbeddingRow,
    normalized,
)
from openpista.memory.engine import Database, upsert
from openpista.memory.notes import (
    Note,
    NotesEdit,
    check_note,
    delete_notes,
    insert_note,
    replace_notes,
    select_notes,
)
from openpista.memory.people import (
    SessionPersonRow,
    Speaker,
    check_person,
    identities_of,
    link_people,
    record_speaker,
    sessions_only_of,
    unlink_person,
)
from openpista.memory.schema import migrate
from openpista.memory.search import SearchHit, SearchScope, query_terms, search_messages
from openpista.memory.summaries import SummaryRow, insert_summary, latest_summary
from openpista.memory.tables import ChannelSessionRow, MessageRow, SessionRow, ToolDecisionRow
from openpista.memory.usage import (
    UsageFilter,
    UsageTotal,
    budget_limit_row,
    insert_usage,
    replace_budget_limit,
    select_budget_limits,
    select_spent,
    select_totals,
    usage_row,
)
from openpista.models import Message, ToolResult, utc_now

if TYPE_CHECKING:
    # Imported on use: semantic search, export and import are not part of a turn.
    from openpista.memory.indexer import EmbeddingIndexer
    from openpista.memory.transfer import SessionDocument

log = logging.getLogger(__name__)

__all__ = [
    "INTERRUPTED",
    "MemoryStore",
    "Purged",
    "SessionInfo",
    "recent_window",
    "title_from",
    "well_formed",
]

TITLE_LENGTH = 60
"""Longest title a session gets from its first message (longer ones are cut, with …)."""


class Purged(NamedTuple):
    """What :meth:`MemoryStore.purge` deleted: sessions, notes, and the person's messages
    in sessions shared with others."""

    sessions: int
    notes: int
    messages: int


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A stored session; timestamps are timezone-aware UTC."""

    id: str
    title: str | None
    created_at: datetime
    updated_at: datetime
    message_count: int


class MemoryStore:
    """Sessions and their messages. Open it with :meth:`open`; close it with :meth:`close`
    or by using it as an async context manager (``async with await MemoryStore.open(url)``).

    Safe for concurrent use by many tasks of one event loop, and by several processes on the
    same database. Methods raise :class:`MemoryStoreError` (or a subclass) for bad input, a
    missing session, and database failures; bad input is rejected before anything is
    written.
    """

    def __init__(self, database: Database) -> None:
        """Wrap a :class:`~openpista.memory.engine.Database` whose schema is at head.

        Prefer :meth:`open`, which also runs the migrations.
        """
        self._db = database
        self._last_stamp = datetime.min.replace(tzinfo=UTC)
        self.embeddings: EmbeddingIndexer | None = None
        """Set by :meth:`enable_embeddings`: the vectors kept for semantic search."""

    @classmethod
    async def open(cls, url: str) -> Self:
        """Connect to ``url`` (``~`` expanded) and upgrade its schema to the newest revision."""
        database = Database(url)
        try:
            await migrate(database, "head")
        except BaseException:
            await database.close()
            raise
        return cls(database)

    async def close(self) -> None:
        """Close every connection. Idempotent; the store cannot be used afterwards."""
        if self.embeddings is not None:
            await self.embeddings.close()
        await self._db.close()

    def enable_embeddings(
        self, embedder: Embedder, batch: int = 32, min_similarity: float = DEFAULT_MIN_SIMILARITY
    ) -> EmbeddingIndexer:
        """Semantic search: from now on every stored message is embedded by ``embedder`` in
        the background (see :class:`~openpista.memory.indexer.EmbeddingIndexer`), and
        :meth:`search` fuses full-text results with the messages whose vectors have at
        least ``min_similarity`` to the query's."""
        from openpista.memory.indexer import EmbeddingIndexer

        self.embeddings = EmbeddingIndexer(self._db, embedder, batch, min_similarity)
        return self.embeddings

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- sessions ---------------------------------------------------------------------------

    async def get_session(self, session_id: str) -> SessionInfo | None:
        """The session ``session_id``, or ``None`` if there is none."""
        sid = check_session_id(session_id)

        def work(conn: Connection) -> SessionInfo | None:
            row = conn.execute(_session_query().where(SessionRow.id == sid)).first()
            return None if row is None else _session_info(row)

        return await self._db.run(work, f"reading session {sid!r}", write=False)

    async def list_sessions(self, limit: int = 50) -> list[SessionInfo]:
        """Up to ``limit`` sessions, the most recently updated first."""
        query = (
            _session_query()
            .order_by(SessionRow.updated_at.desc(), SessionRow.id.desc())
            .limit(check_limit(limit))
        )

        def work(conn: Connection) -> list[SessionInfo]:
            return [_session_info(row) for row in conn.execute(query)]

        return await self._db.run(work, "listing sessions", write=False)

    async def delete_session(self, session_id: str) -> bool:
        """Delete the session with its messages, chat bindings and decisions; ``False`` if
        there was no such session."""
        sid = check_session_id(session_id)

        return await self._db.run(
            lambda conn: _delete_session(conn, sid), f"deleting session {sid!r}", write=True
        )

    async def export_session(self, session_id: str) -> SessionDocument:
        """The session with every message, as :mod:`openpista.memory.transfer` writes it.

        Raises :class:`SessionNotFoundError` if the session does not exist.
        """
        from openpista.memory.transfer import SessionDocument

        sid = check_session_id(session_id)

        def work(conn: Connection) -> SessionDocument:
            row = conn.execute(_session_query().where(SessionRow.id == sid)).first()
            if row is None:
                raise SessionNotFoundError(f"cannot export session {sid!r}: no such session")
            info = _session_info(row)
            messages = _history(conn, sid, None)
            senders = conn.scalars(_SENDERS, {"sid": sid})
            written = {i: sender for i, sender in enumerate(senders) if sender is not None}
            return SessionDocument(
                sid, info.title, info.created_at, info.updated_at, messages, written
            )

        return await self._db.run(work, f"exporting session {sid!r}", write=False)

    async def import_session(self, document: SessionDocument, session_id: str = "") -> str:
        """Store ``document`` as a new session (``session_id``, else the exported id) with
        its title, times, messages and their senders, in one transaction; returns its id. An
        existing session of that id is never overwritten: the import is refused."""
        from openpista.memory.transfer import check_senders

        sid = check_session_id(session_id or document.id)
        title = None if document.title is None else title_from(document.title)
        rows = [_message_row(sid, message, i) for i, message in enumerate(document.messages)]
        senders = check_senders(document.messages, document.senders)
        for index, row in enumerate(rows):
            row["sender"] = senders.get(index)
        session = {
            "id": sid,
            "title": title,
            "created_at": document.created_at,
            "updated_at": document.updated_at,
        }

        def work(conn: Connection) -> None:
            if conn.scalar(_EXISTS, {"sid": sid}) is not None:
                raise MemoryStoreError(f"session {sid!r} exists already; import it under a new id")
            conn.execute(insert(SessionRow).values(**session))
            if rows:
                conn.execute(_INSERT_MESSAGE, rows)

        await self._db.run(work, f"importing session {sid!r}", write=True)
        self._stored()
        return sid

    async def purge(self, target: str) -> Purged:
        """Delete what is stored about ``target``, a person or a chat (``telegram:123``):
        their notes and links, the sessions in which only they took part (with everything
        in them), their chat bindings, and in sessions shared with others the messages they
        wrote (with their search index entries), the record of them and the summaries of
        those sessions (a summary may repeat their words; the messages it stood for stay
        stored, so the next turn that needs one summarises what is left); the rest of those
        conversations stays."""
        who = check_channel_id(target)

        def work(conn: Connection) -> Purged:
            sessions = sessions_only_of(conn, who)
            for sid in sessions:
                _delete_session(conn, sid)
            people = SessionPersonRow
            spoke_in = union(
                select(people.session_id).where(people.person == who),
                select(MessageRow.session_id).where(MessageRow.sender == who),
            )
            conn.execute(delete(SummaryRow).where(SummaryRow.session_id.in_(spoke_in)))
            conn.execute(delete(people).where((people.person == who) | (people.channel_id == who)))
            conn.execute(delete(ChannelSessionRow).where(ChannelSessionRow.channel_id == who))
            unlink_person(conn, who)
            said = delete_said(conn, who)
            return Purged(len(sessions), delete_notes(conn, [who], None), said)

        return await self._db.run(work, f"purging {who!r}", write=True)

    # -- messages ---------------------------------------------------------------------------

    async def append_messages(self, session_id: str, messages: Sequence[Message]) -> None:
        """Append ``messages`` to the session, all or none, in one transaction.

        Also updates the session's ``updated_at``. Raises :class:`SessionNotFoundError` if
        the session does not exist.
        """
        sid = check_session_id(session_id)
        received: object = messages  # a lone Message is iterable too; catch that mistake
        if isinstance(received, Message):
            raise MemoryStoreError("append_messages takes a list; use append_message for one")
        rows = [_message_row(sid, message, index) for index, message in enumerate(messages)]
        now = self._now()

        def work(conn: Connection) -> None:
            if not rows:
                _require_session(conn, sid, "cannot append to")
                return
            # Updating the session first both checks that it exists and, on PostgreSQL,
            # locks its row, so concurrent appends to one session keep their order.
            if conn.execute(_TOUCH, {"sid": sid, "now": now}).rowcount == 0:
                raise SessionNotFoundError(f"cannot append to session {sid!r}: no such session")
            conn.execute(_INSERT_MESSAGE, rows)

        await self._db.run(work, f"appending to session {sid!r}", write=bool(rows))
        if rows:
            self._stored()

    async def append_message(self, session_id: str, message: Message) -> None:
        """Append one message; see :meth:`append_messages`."""
        await self.append_messages(session_id, [message])

    async def load_messages(self, session_id: str, limit: int | None = None) -> list[Message]:
        """Every message of the session, in insertion order, as appended; each tool call
        followed by its result (see :func:`well_formed`: one cut short is told interrupted).

        With ``limit``, only the newest ones: at most ``limit``, oldest first, starting at a
        user message (see :func:`recent_window`), read from the tail (the
        ``(session_id, id)`` index) however long the session is.
        Raises :class:`SessionNotFoundError` if the session does not exist.
        """
        sid = check_session_id(session_id)
        window = None if limit is None else check_limit(limit)

        def work(conn: Connection) -> list[Message]:
            _require_session(conn, sid, "cannot load")
            return _history(conn, sid, window)

        return await self._db.run(work, f"loading session {sid!r}", write=False)

    async def start_turn(
        self,
        session_id: str,
        message: Message,
        history_limit: int | None = None,
        *,
        speaker: Speaker | None = None,
    ) -> list[Message]:
        """Begin a turn: create the session if needed, append ``message`` and return the
        history before it, all in one transaction.

        A session without a title gets one from the first user message it sees (see
        :func:`title_from`). In a compacted session the history is its newest summary (a
        ``system`` message, see :meth:`summarize`) and the messages after it. With
        ``history_limit``, only the newest messages are read, as :meth:`load_messages`
        reads them with ``limit``. ``speaker`` (who wrote
        ``message``) is recorded as a person of the session (see :meth:`search`).
        """
        sid = check_session_id(session_id)
        window = None if history_limit is None else check_limit(history_limit)
        row = _message_row(sid, message, 0)
        if speaker is not None and message.role == "user":
            row["sender"] = speaker.person
        title = title_from(message.content) if message.role == "user" else None
        now = self._now()

        def work(conn: Connection) -> list[Message]:
            conn.execute(_open_session(conn), {"sid": sid, "title": title, "now": now})
            if speaker is not None:
                record_speaker(conn, sid, speaker)
            history = _turn_history(conn, sid, window)
            conn.execute(_INSERT_MESSAGE, row)
            return history

        history = await self._db.run(work, f"starting a turn in {sid!r}", write=True)
        self._stored()
        return history

    async def resume_turn(self, session_id: str, history_limit: int | None = None) -> list[Message]:
        """The history a turn cut short continues from: as :meth:`start_turn` returns it,
        with the turn's own user message and what it stored so far (a tool call cut short
        has its :data:`INTERRUPTED` result, see :func:`well_formed`); nothing is stored.
        Raises :class:`SessionNotFoundError` if the session does not exist."""
        sid = check_session_id(session_id)
        window = None if history_limit is None else check_limit(history_limit)

        def work(conn: Connection) -> list[Message]:
            _require_session(conn, sid, "cannot resume a turn in")
            return _turn_history(conn, sid, window)

        return await self._db.run(work, f"resuming a turn in {sid!r}", write=False)

    async def summarize(self, session_id: str, keep_last: int, summary: str) -> bool:
        """Store ``summary`` as standing for every message of the session but the newest
        ``keep_last`` in the histories :meth:`start_turn` returns from now on (the messages
        stay stored); ``False`` when there was nothing older to stand for."""
        sid = check_session_id(session_id)
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
            raise MemoryStoreError(f"keep_last must be a count, not {keep_last!r}")
        check_text(summary, "the summary")
        now = self._now()
        return await self._db.run(
            lambda conn: insert_summary(conn, sid, keep_last, summary, now),
            f"summarising session {sid!r}",
            write=True,
        )

    # -- channels ---------------------------------------------------------------------------

    async def bind_channel(self, channel_id: str, session_id: str) -> None:
        """Make ``channel_id`` (a chat, e.g. ``telegram:42``) talk to ``session_id``.

        Replaces an earlier binding of the channel; the session is created (untitled) when
        it does not exist. Both happen in one transaction.
        """
        cid = check_channel_id(channel_id)
        sid = check_session_id(session_id)
        now = self._now()

        def work(conn: Connection) -> None:
            _create_session(conn, sid, now)
            bind = upsert(conn, ChannelSessionRow).values(
                channel_id=cid, session_id=sid, updated_at=now
            )
            conn.execute(
                bind.on_conflict_do_update(
                    index_elements=[ChannelSessionRow.channel_id],
                    set_={"session_id": sid, "updated_at": now},
                )
            )

        await self._db.run(work, f"binding channel {cid!r}", write=True)

    async def ensure_channel(self, channel_id: str, session_id: str) -> str:
        """The session ``channel_id`` is bound to; if it is not bound yet, it is bound to
        ``session_id`` (created when missing) and that is returned.

        Atomic: of several tasks or processes that ensure one channel at the same time,
        all get the same session, and no session is left behind by the losers.
        """
        cid = check_channel_id(channel_id)
        sid = check_session_id(session_id)
        query = select(ChannelSessionRow.session_id).where(ChannelSessionRow.channel_id == cid)
        now = self._now()

        def work(conn: Connection) -> str | None:
            bound = conn.scalar(query)
            if bound is not None:
                return bound
            created = _create_session(conn, sid, now)
            bind = conn.execute(
                upsert(conn, ChannelSessionRow)
                .values(channel_id=cid, session_id=sid, updated_at=now)
                .on_conflict_do_nothing(index_elements=[ChannelSessionRow.channel_id])
            )
            if bind.rowcount:
                return sid
            # Another process bound the channel in between (PostgreSQL; SQLite serializes
            # writers): use its session and drop the one made here for nothing.
            if created:
                conn.execute(delete(SessionRow).where(SessionRow.id == sid))
            return conn.scalar(query)

        winner = await self._db.run(work, f"binding channel {cid!r}", write=True)
        if winner is None:
            raise MemoryStoreError(f"channel {cid!r} was bound and unbound meanwhile; try again")
        return winner

    async def channels_of(self, session_ids: Sequence[str]) -> dict[str, list[str]]:
        """The chats (channel ids such as ``telegram:42``) bound to each of ``session_ids``,
        sorted; a session without a chat is left out."""
        if not session_ids:
            return {}
        query = (
            select(ChannelSessionRow.session_id, ChannelSessionRow.channel_id)
            .where(ChannelSessionRow.session_id.in_(list(session_ids)))
            .order_by(ChannelSessionRow.channel_id)
        )

        def work(conn: Connection) -> dict[str, list[str]]:
            found: dict[str, list[str]] = {}
            for session_id, channel_id in conn.execute(query):
                found.setdefault(session_id, []).append(channel_id)
            return found

        return await self._db.run(work, "reading the chats of sessions", write=False)

    # -- search and notes -------------------------------------------------------------------

    async def search(
        self, query: str, scope: SearchScope | None = None, limit: int = 20
    ) -> list[SearchHit]:
        """The ``limit`` messages most relevant to ``query`` (every word of it must appear,
        taken literally: no search syntax), within ``scope`` (every session by default).

        With :meth:`enable_embeddings`, also the messages whose vectors are nearest to the
        query's, in the same scope, fused by reciprocal rank (``openpista.memory.hybrid``);
        when the query cannot be embedded, full-text results only."""
        terms = query_terms(query)
        scope = scope or SearchScope()
        if scope.session_id is not None:
            check_session_id(scope.session_id)
        if scope.channel_id is not None:
            check_channel_id(scope.channel_id)
        if scope.person is not None:
            check_person(scope.person)
        most = check_limit(limit)
        indexer = self.embeddings
        vector = await self._query_vector(query)
        if indexer is None or vector is None:
            return await self._db.run(
                lambda conn: search_messages(conn, terms, scope, most), "searching", write=False
            )
        from openpista.memory.hybrid import hybrid_search

        model, floor = indexer.embedder.model, indexer.min_similarity
        return await self._db.run(
            lambda conn: hybrid_search(conn, terms, model, vector, scope, most, floor),
            "searching",
            write=False,
        )

    async def remember(self, person: str, note: str) -> Note:
        """Add ``note`` to the notes of ``person`` (``telegram:123``) and return it."""
        who, text = check_person(person), check_note(note)
        now = self._now()
        return await self._db.run(
            lambda conn: insert_note(conn, who, text, now), f"remembering for {who}", write=True
        )

    async def notes_of(self, person: str) -> list[Note]:
        """The notes of ``person`` and of the identities linked with it, newest first."""
        who = check_person(person)
        return await self._db.run(
            lambda conn: select_notes(conn, identities_of(conn, who)),
            f"reading the notes of {who}",
            write=False,
        )

    async def replace_notes(self, person: str, notes: list[str]) -> NotesEdit:
        """Make ``notes`` (oldest first) the notes of ``person`` and its linked identities,
        in one transaction: unchanged notes stay as they were, new ones become
        ``person``'s; every note is checked before anything is written."""
        who = check_person(person)
        texts = [check_note(note) for note in notes]
        now = self._now()
        return await self._db.run(
            lambda conn: replace_notes(conn, who, identities_of(conn, who), texts, now),
            f"editing the notes of {who}",
            write=True,
        )

    async def forget(self, person: str, note_id: int | None = None) -> int:
        """Delete the note ``note_id`` of ``person`` (``None``: all their notes); how many
        were deleted (a note of someone else is never touched)."""
        who = check_person(person)
        if note_id is not None and (not isinstance(note_id, int) or note_id < 1):
            raise MemoryStoreError(f"a note id is a positive number, not {note_id!r}")
        return await self._db.run(
            lambda conn: delete_notes(conn, identities_of(conn, who), note_id),
            f"forgetting for {who}",
            write=True,
        )

    # -- linked identities --------------------------------------------------------------------

    async def link(self, first: str, second: str) -> list[str]:
        """Join the identities ``first`` and ``second`` (``telegram:1``, ``web:alice``, with
        whatever each is linked to already) into one person, whose searches and notes span
        all of them; returns that person's identities. The owner's decision only: nothing
        a chat says may call this."""
        one, other = check_person(first), check_person(second)
        return await self._db.run(
            lambda conn: link_people(conn, one, other), f"linking {one} and {other}", write=True
        )

    async def unlink(self, person: str) -> list[str]:
        """Make ``person`` a person of its own again; the identities it was linked with
        (empty: it was not linked)."""
        who = check_person(person)
        return await self._db.run(
            lambda conn: unlink_person(conn, who), f"unlinking {who}", write=True
        )

    async def linked(self, person: str) -> list[str]:
        """The identities linked with ``person``, sorted, without ``person`` itself."""
        who = check_person(person)
        return await self._db.run(
            lambda conn: [one for one in identities_of(conn, who) if one != who],
            f"reading the links of {who}",
            write=False,
        )

    # -- tool decisions -----------------------------------------------------------------------

    async def record_decision(
        self,
        session_id: str,
        channel_id: str,
        tool: str,
        arguments: dict[str, Any],
        action: DecisionAction,
        decided_by: DecisionSource,
        detail: str = "",
    ) -> ToolDecision:
        """Append a tool-policy decision to the session's audit trail and return it.

        Raises :class:`SessionNotFoundError` if the session does not exist.
        """
        sid = check_session_id(session_id)
        row = decision_row(sid, channel_id, tool, arguments, action, decided_by, detail)
        now = self._now()

        def work(conn: Connection) -> ToolDecision:
            _require_session(conn, sid, "cannot record a decision in")
            return insert_decision(conn, row, now)

        return await self._db.run(work, f"recording a decision in {sid!r}", write=True)

    async def list_decisions(self, session_id: str) -> list[ToolDecision]:
        """The session's tool-policy decisions, oldest first.

        Raises :class:`SessionNotFoundError` if the session does not exist.
        """
        sid = check_session_id(session_id)

        def work(conn: Connection) -> list[ToolDecision]:
            _require_session(conn, sid, "cannot list decisions of")
            return select_decisions(conn, sid)

        return await self._db.run(work, f"listing decisions of {sid!r}", write=False)

    # -- token usage --------------------------------------------------------------------------

    async def record_usage(
        self,
        session_id: str,
        channel_id: str,
        provider: str,
        model: str,
        tokens: tuple[int, int],
        cost_usd: float | None,
    ) -> None:
        """Store the ``(prompt, completion)`` tokens and the cost (``None``: unknown price)
        of one LLM response of ``session_id`` (which need not exist: a refused first turn
        stores nothing else); ``channel_id`` may be empty."""
        row = usage_row(check_session_id(session_id), channel_id, provider, model, tokens, cost_usd)
        now = self._now()
        await self._db.run(
            lambda conn: insert_usage(conn, row, now), "recording token usage", write=True
        )

    async def usage_totals(self, where: UsageFilter | None = None) -> list[UsageTotal]:
        """Tokens and cost summed per provider and model over the responses ``where``
        selects (every response by default), costliest first."""
        where = where or UsageFilter()
        if where.session_id is not None:
            check_session_id(where.session_id)
        return await self._db.run(
            lambda conn: select_totals(conn, where), "reading token usage", write=False
        )

    async def spent(self, *, since: datetime | None = None, session_id: str | None = None) -> float:
        """USD spent by the priced responses since ``since`` and/or of ``session_id``."""
        sid = None if session_id is None else check_session_id(session_id)
        return await self._db.run(
            lambda conn: select_spent(conn, since, sid), "reading the spend", write=False
        )

    async def budget_limits(self) -> list[tuple[str, str, float]]:
        """The budget limits set at run time (``openpista budget set``), overriding
        ``[budget]``: ``(kind, session_id, usd)``, ``kind`` ``daily`` (``session_id``
        empty) or ``session``."""
        return await self._db.run(select_budget_limits, "reading the budget limits", write=False)

    async def set_budget_limit(self, kind: str, session_id: str, usd: float | None) -> None:
        """Set the ``daily`` (``session_id`` ``""``) or ``session`` limit to ``usd``, or
        remove it (``None``: ``[budget]`` applies again); kept over restarts."""
        sid = check_session_id(session_id) if session_id else ""
        row = budget_limit_row(kind, sid, usd)
        now = self._now()
        await self._db.run(
            lambda conn: replace_budget_limit(conn, kind, sid, row, now),
            "setting a budget limit",
            write=True,
        )

    # -- internals --------------------------------------------------------------------------

    def _stored(self) -> None:
        if self.embeddings is not None:
            self.embeddings.notify()

    async def _query_vector(self, query: str) -> list[float] | None:
        """The (normalised) vector of ``query``; None without embeddings, or when embedding
        fails (logged: the search falls back to full-text)."""
        if self.embeddings is None:
            return None
        try:
            return normalized((await self.embeddings.embedder.embed([query]))[0])
        except Exception as exc:
            log.warning("❌ cannot embed the search query (full-text results only): %s", exc)
            return None

    def _now(self) -> datetime:
        # Strictly increasing within the store, so that sessions touched one after the other
        # list in that order even when the clock has not advanced in between.
        now = utc_now()
        if now <= self._last_stamp:
            now = self._last_stamp + timedelta(microseconds=1)
        self._last_stamp = now
        return now


def recent_window(messages: list[Message]) -> list[Message]:
    """The tail ``messages`` with what comes before its first user message left out, so that
    no tool result is separated from the call that asked for it and the conversation starts
    the way every provider accepts. Without a user message, leading tool results go."""
    for start, message in enumerate(messages):
        if message.role == "user":
            return messages[start:]
    start = 0
    while start < len(messages) and messages[start].role == "tool":
        start += 1
    return messages[start:]


INTERRUPTED = (
    "❌ interrupted: this tool call was still running when openpista stopped (its replica "
    "died or the turn was cancelled); it may or may not have taken effect, and it was not "
    "run again."
)
"""The result a tool call stored without one is given (:func:`well_formed`)."""


def well_formed(messages: list[Message]) -> list[Message]:
    """``messages`` with each assistant message's tool calls followed by exactly their
    results, in call order: a call without a stored result (it was running when its turn
    was cut short) gets an :data:`INTERRUPTED` error result; a result of no call, or a
    second one, is left out. What every provider accepts, whatever was stored."""
    shaped: list[Message] = []
    index = 0
    while index < len(messages):
        message = messages[index]
        index += 1
        if message.role == "tool":
            continue  # a result of no call: its assistant message is not here
        shaped.append(message)
        if not message.tool_calls:
            continue
        results: dict[str, Message] = {}
        while index < len(messages) and messages[index].role == "tool":
            result = messages[index].tool_result
            if result is not None:
                results.setdefault(result.call_id, messages[index])
            index += 1
        for call in message.tool_calls:
            found = results.get(call.id)
            if found is None:
                interrupted = ToolResult(
                    call_id=call.id, name=call.name, output=INTERRUPTED, is_error=True
                )
                found = Message(role="tool", tool_result=interrupted, created_at=message.created_at)
            shaped.append(found)
    return shaped


def title_from(text: str) -> str | None:
    """A session title made of ``text`` (a first message): its words on one line, cut to
    :data:`TITLE_LENGTH` characters with an ellipsis; ``None`` when there are no words.

    Control and format characters go (a title is printed to terminals: no escape sequences,
    no bidi overrides from whoever wrote the message)."""
    shown = "".join(
        (" " if char.isspace() else "") if unicodedata.category(char) in ("Cc", "Cf") else char
        for char in text
    )
    words = " ".join(shown.split())
    if len(words) <= TITLE_LENGTH:
        return words or None
    return words[: TITLE_LENGTH - 1].rstrip() + "…"


# -- statements -----------------------------------------------------------------------------
# Built once: the hot path of a turn executes them with parameters only.

_TOUCH = (
    update(SessionRow).where(SessionRow.id == bindparam("sid")).values(updated_at=bindparam("now"))
)
_INSERT_MESSAGE = insert(MessageRow)
_EXISTS = select(SessionRow.id).where(SessionRow.id == bindparam("sid"))
_MESSAGE_COLUMNS = (
    MessageRow.id,
    MessageRow.role,
    MessageRow.content,
    MessageRow.tool_calls,
    MessageRow.tool_result,
    MessageRow.created_at,
)
_ALL_MESSAGES = (
    select(*_MESSAGE_COLUMNS)
    .where(MessageRow.session_id == bindparam("sid"), MessageRow.id > bindparam("after"))
    .order_by(MessageRow.id)
)
_SENDERS = (
    select(MessageRow.sender)
    .where(MessageRow.session_id == bindparam("sid"))
    .order_by(MessageRow.id)
)
_NEWEST_MESSAGES = (
    select(*_MESSAGE_COLUMNS)
    .where(MessageRow.session_id == bindparam("sid"), MessageRow.id > bindparam("after"))
    .order_by(MessageRow.id.desc())
    .limit(bindparam("limit"))
)
_OPEN_SESSION: dict[str, Any] = {}


def _open_session(conn: Connection) -> Any:
    """The upsert that begins a turn: create the session, or mark it updated; a session
    without a title takes the one given."""
    statement = _OPEN_SESSION.get(conn.dialect.name)
    if statement is None:
        new = upsert(conn, SessionRow).values(
            id=bindparam("sid"),
            title=bindparam("title"),
            created_at=bindparam("now"),
            updated_at=bindparam("now"),
        )
        statement = new.on_conflict_do_update(
            index_elements=[SessionRow.id],
            set_={
                "updated_at": new.excluded.updated_at,
                "title": func.coalesce(SessionRow.title, new.excluded.title),
            },
        )
        _OPEN_SESSION[conn.dialect.name] = statement
    return statement


def _create_session(conn: Connection, sid: str, now: datetime) -> bool:
    """Create the untitled session ``sid`` unless it exists; whether it was created."""
    created = conn.execute(
        upsert(conn, SessionRow)
        .values(id=sid, title=None, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=[SessionRow.id])
    )
    return bool(created.rowcount)


def _delete_session(conn: Connection, sid: str) -> bool:
    """Delete session ``sid`` with its messages, chat bindings, decisions and people;
    whether it existed."""
    # Explicit rather than relying on ON DELETE CASCADE, which SQLite honours only on
    # connections with foreign keys enabled (a database may be opened by other tools).
    vectors = MessageEmbeddingRow.message_id.in_(
        select(MessageRow.id).where(MessageRow.session_id == sid)
    )
    conn.execute(delete(MessageEmbeddingRow).where(vectors))
    for table in (MessageRow, ChannelSessionRow, ToolDecisionRow, SessionPersonRow, SummaryRow):
        conn.execute(delete(table).where(table.session_id == sid))
    return conn.execute(delete(SessionRow).where(SessionRow.id == sid)).rowcount > 0


def delete_said(conn: Connection, person: str) -> int:
    """Delete the messages ``person`` wrote, with their vectors (FTS5 rows go by trigger,
    PostgreSQL's stored tsvector with the row); how many."""
    conn.execute(_DELETE_VECTORS_OF_SENDER, {"sender": person})
    return int(conn.execute(delete(MessageRow).where(MessageRow.sender == person)).rowcount)


_DELETE_VECTORS_OF_SENDER = text(
    "DELETE FROM message_embeddings WHERE message_id IN "
    "(SELECT id FROM messages WHERE sender = :sender)"
)


def _require_session(conn: Connection, sid: str, action: str) -> None:
    if conn.scalar(_EXISTS, {"sid": sid}) is None:
        raise SessionNotFoundError(f"{action} session {sid!r}: no such session")


def _history(conn: Connection, sid: str, limit: int | None, after: int = 0) -> list[Message]:
    """The messages of ``sid`` (the newest ``limit``) whose id is above ``after``."""
    if limit is None:
        rows = conn.execute(_ALL_MESSAGES, {"sid": sid, "after": after})
        return well_formed([_to_message(sid, row) for row in rows])
    tail = conn.execute(_NEWEST_MESSAGES, {"sid": sid, "limit": limit, "after": after}).all()
    return well_formed(recent_window([_to_message(sid, row) for row in reversed(tail)]))


def _turn_history(conn: Connection, sid: str, limit: int | None) -> list[Message]:
    """What a turn of ``sid`` is asked with: the newest summary (if compacted) standing for
    what it covers, and the (newest ``limit``) messages after it."""
    summary = latest_summary(conn, sid)
    if summary is None:
        return _history(conn, sid, limit)
    return [summary[1], *_history(conn, sid, limit, summary[0])]


def _message_row(sid: str, message: object, index: int) -> dict[str, Any]:
    if not isinstance(message, Message):
        raise MemoryStoreError(f"message {index} is a {type(message).__name__}, not a Message")
    check_text(message.content, f"content of message {index}")
    tool_calls = [call.model_dump(mode="json") for call in message.tool_calls]
    # Files are stored by name and path; their inline data is for the turn they came in.
    without_data = {"attachments": {"__all__": {"data"}}}
    tool_result = (
        None
        if message.tool_result is None
        else message.tool_result.model_dump(mode="json", exclude=without_data)
    )
    return {
        "session_id": sid,
        "role": message.role,
        "content": message.content,
        "tool_calls": tool_calls or None,
        "tool_result": tool_result,
        "created_at": message.created_at,
    }


def _to_message(sid: str, row: Row[Any]) -> Message:
    try:
        return Message.model_validate(
            {
                "role": row.role,
                "content": row.content,
                "tool_calls": row.tool_calls or [],
                "tool_result": row.tool_result,
                "created_at": row.created_at,
            }
        )
    except ValidationError as exc:
        raise MemoryStoreError(
            f"stored message {row.id} of session {sid!r} is not a valid message: {exc}"
        ) from exc


def _session_query() -> Select[str, str | None, datetime, datetime, int]:
    message_count = (
        select(func.count(MessageRow.id))
        .where(MessageRow.session_id == SessionRow.id)
        .correlate(SessionRow)
        .scalar_subquery()
    )
    return select(
        SessionRow.id,
        SessionRow.title,
        SessionRow.created_at,
        SessionRow.updated_at,
        message_count.label("message_count"),
    )


def _session_info(row: Row[str, str | None, datetime, datetime, int]) -> SessionInfo:
    sid, title, created_at, updated_at, message_count = row
    return SessionInfo(
        id=sid,
        title=title,
        created_at=created_at,
        updated_at=updated_at,
        message_count=int(message_count),
    )
