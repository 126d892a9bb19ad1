"""Hybrid search: full-text and vector results fused by reciprocal rank fusion.

Each list is ranked on its own (BM25 or ``ts_rank_cd``; cosine similarity), both within the
same :class:`~openpista.memory.search.SearchScope`; a message's fused score is the sum over
the lists it appears in of ``1 / (RRF_K + rank)`` (rank from 1). A message found only by
its vector gets the start of its text as snippet.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Connection, func, select

from openpista.memory.embeddings import nearest_messages
from openpista.memory.search import (
    SNIPPET_WORDS,
    SearchHit,
    SearchScope,
    one_line,
    search_messages,
)
from openpista.memory.tables import MessageRow

RRF_K = 60
"""The rank offset of reciprocal rank fusion (the usual 60: damps the top ranks' weight)."""
MIN_CANDIDATES = 50
"""Each list contributes at least this many candidates, however few hits are asked for."""
_SNIPPET_CHARACTERS = 400


def fuse(rankings: list[list[int]], limit: int) -> list[tuple[int, float]]:
    """The ``limit`` best ids of ``rankings`` (each best first) by reciprocal rank fusion,
    with their fused scores; ties go to the newer (higher) id."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], -pair[0]))[:limit]


def hybrid_search(
    conn: Connection,
    terms: list[str],
    model: str,
    query: list[float],
    scope: SearchScope,
    limit: int,
    min_similarity: float,
) -> list[SearchHit]:
    """The ``limit`` messages within ``scope`` ranked by fusing the full-text hits of
    ``terms`` with the messages whose ``model`` vectors are nearest to ``query``."""
    depth = max(limit, MIN_CANDIDATES)
    texts = {hit.message_id: hit for hit in search_messages(conn, terms, scope, depth)}
    near = [mid for mid, _ in nearest_messages(conn, model, query, scope, depth, min_similarity)]
    fused = fuse([list(texts), near], limit)
    missing = [mid for mid, _ in fused if mid not in texts]
    if missing:
        texts |= _lead_hits(conn, missing)
    return [replace(texts[mid], score=score) for mid, score in fused if mid in texts]


def _lead_hits(conn: Connection, ids: list[int]) -> dict[int, SearchHit]:
    """Hits for messages found by their vector only: the start of their text as snippet."""
    m = MessageRow
    rows = conn.execute(
        select(
            m.id, m.session_id, m.role, m.created_at, func.substr(m.content, 1, _SNIPPET_CHARACTERS)
        ).where(m.id.in_(ids))
    ).all()
    hits = {}
    for row in rows:
        words = one_line(str(row[4])).split(" ")
        snippet = " ".join(words[:SNIPPET_WORDS]) + (" …" if len(words) > SNIPPET_WORDS else "")
        hits[int(row.id)] = SearchHit(
            session_id=row.session_id,
            message_id=int(row.id),
            role=row.role,
            snippet=snippet,
            created_at=row.created_at,
            score=0.0,
        )
    return hits
