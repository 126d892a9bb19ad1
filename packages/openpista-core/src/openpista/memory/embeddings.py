"""Stored embedding vectors of messages, and the nearest ones to a query (revision ``0009``).

One vector per message (``message_embeddings``), made by the model named in
``[memory.embeddings]``; a vector of another model counts as missing (it is made again).
Vectors are stored L2-normalised, so cosine similarity is their dot product. SQLite keeps a
vector as a BLOB of little-endian float32, PostgreSQL as ``real[]``.

The nearest messages are found by a plain-Python cosine scan over the newest
:data:`MAX_SCANNED_VECTORS` vectors in the search's scope (the same scope SQL as full-text
search, so a person's search never reads another person's vectors): exact, bounded, and
the same on both databases (:data:`VECTOR_BACKEND`).
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Sequence
from operator import mul
from typing import Any, Protocol

from sqlalchemy import (
    Connection,
    Dialect,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    func,
    select,
    text,
)
from sqlalchemy.types import REAL, TypeDecorator

from openpista.memory.checks import MemoryStoreError
from openpista.memory.engine import upsert
from openpista.memory.search import SearchScope, scope_filter
from openpista.memory.tables import Base, Mapped, MessageId, MessageRow, mapped_column

MAX_SCANNED_VECTORS = 5_000
"""Most vectors one search compares with the query (the newest ones in its scope)."""
MAX_EMBEDDED_CHARACTERS = 8_000
"""How much of a message's text is embedded (its start)."""
MAX_DIMENSIONS = 8_192
"""Longest vector accepted from a model."""
MODEL_MAX_LENGTH = 255
DEFAULT_MIN_SIMILARITY = 0.25
"""Cosine similarity a message needs to be a vector hit (``[memory.embeddings]``)."""
VECTOR_BACKEND = "python cosine scan"
"""How the nearest vectors are found (``openpista doctor`` shows it)."""


class Embedder(Protocol):
    """Makes embedding vectors: ``model`` names it (stored with each vector)."""

    model: str

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...


class StoredVector(TypeDecorator[list[float]]):
    """A vector: BLOB of little-endian float32 on SQLite, ``real[]`` on PostgreSQL."""

    impl = LargeBinary()
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql  # not on SQLite's cold path

            return dialect.type_descriptor(postgresql.ARRAY(REAL()))
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value: list[float] | None, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        packed = array("f", value)
        if sys.byteorder == "big":
            packed.byteswap()
        return packed.tobytes()

    def process_result_value(self, value: Any, dialect: Dialect) -> list[float] | None:
        return None if value is None else list(_floats(value))


class MessageEmbeddingRow(Base):
    """The embedding of one message by ``model``."""

    __tablename__ = "message_embeddings"

    message_id: Mapped[int] = mapped_column(
        MessageId, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    model: Mapped[str] = mapped_column(String(MODEL_MAX_LENGTH), nullable=False)
    vector: Mapped[list[float]] = mapped_column(StoredVector(), nullable=False)

    __table_args__ = (Index("ix_message_embeddings_model", "model"),)


def normalized(vector: object) -> list[float]:
    """``vector`` scaled to length 1; raises :class:`MemoryStoreError` for anything but a
    non-empty list of finite numbers, not all zero, of at most :data:`MAX_DIMENSIONS`."""
    if not isinstance(vector, list) or not 0 < len(vector) <= MAX_DIMENSIONS:
        raise MemoryStoreError(f"the embedding model returned no usable vector ({_kind(vector)})")
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in vector):
        raise MemoryStoreError("the embedding model returned a vector with non-numbers")
    length = math.sqrt(math.fsum(float(x) * float(x) for x in vector))
    if not math.isfinite(length) or length == 0:
        raise MemoryStoreError("the embedding model returned a zero or non-finite vector")
    return [float(x) / length for x in vector]


def pending_messages(
    conn: Connection, model: str, after: int, batch: int, *, claim: bool = False
) -> list[tuple[int, str]]:
    """Up to ``batch`` messages after id ``after`` (oldest first) with text but no vector by
    ``model``: their ids and the start of their text. With ``claim`` (PostgreSQL) they are
    locked until the transaction ends, skipping those locked by another (``FOR NO KEY UPDATE
    SKIP LOCKED``), and those another transaction gave a vector meanwhile are left out."""
    start = func.substr(MessageRow.content, 1, MAX_EMBEDDED_CHARACTERS)
    e = MessageEmbeddingRow
    while True:
        query = (
            _unembedded(model, [MessageRow.id, start])
            .where(MessageRow.id > after)
            .order_by(MessageRow.id)
            .limit(batch)
        )
        if claim:
            query = query.with_for_update(of=MessageRow, skip_locked=True, key_share=True)
        rows = [(int(row[0]), str(row[1])) for row in conn.execute(query).all()]
        if not claim or not rows:
            return rows
        # Locked now: a second look (a later snapshot) sees the vectors stored by a
        # transaction that held a row until after this query began.
        ids = [mid for mid, _ in rows]
        done = set(
            conn.scalars(select(e.message_id).where(e.message_id.in_(ids), e.model == model))
        )
        if fresh := [row for row in rows if row[0] not in done]:
            return fresh
        after = rows[-1][0]


def count_pending(conn: Connection, model: str) -> int:
    """How many messages with text have no vector by ``model``."""
    return int(conn.scalar(_unembedded(model, [func.count()])) or 0)


def _unembedded(model: str, columns: list[Any]) -> Any:
    e = MessageEmbeddingRow
    return (
        select(*columns)
        .select_from(MessageRow)
        .outerjoin(e.__table__, e.message_id == MessageRow.id)
        .where(MessageRow.content != "", (e.message_id.is_(None)) | (e.model != model))
    )


def store_vectors(conn: Connection, model: str, vectors: Sequence[tuple[int, list[float]]]) -> int:
    """Store (replace) the vectors of messages still there; returns how many were stored."""
    ids = [message_id for message_id, _ in vectors]
    present = set(conn.scalars(select(MessageRow.id).where(MessageRow.id.in_(ids))))
    rows = [
        {"message_id": mid, "model": model, "vector": normalized(vector)}
        for mid, vector in vectors
        if mid in present
    ]
    if rows:
        statement = upsert(conn, MessageEmbeddingRow)
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["message_id"],
                set_={"model": statement.excluded.model, "vector": statement.excluded.vector},
            ),
            rows,
        )
    return len(rows)


def count_vectors(conn: Connection, model: str) -> int:
    """How many messages have a vector by ``model``."""
    e = MessageEmbeddingRow
    return int(conn.scalar(select(func.count()).select_from(e).where(e.model == model)) or 0)


def nearest_messages(
    conn: Connection,
    model: str,
    query: list[float],
    scope: SearchScope,
    limit: int,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
) -> list[tuple[int, float]]:
    """The ``limit`` messages within ``scope`` whose vectors by ``model`` are most similar to
    ``query`` (normalised), at least ``min_similarity``: their ids and cosine similarity,
    most similar first."""
    where, params = scope_filter(scope)
    params |= {"model": model, "scanned": MAX_SCANNED_VECTORS}
    statement = text(
        "SELECT e.message_id, e.vector FROM message_embeddings AS e "  # noqa: S608  only constant SQL fragments; values are bound parameters
        "JOIN messages AS m ON m.id = e.message_id "
        f"WHERE e.model = :model{where} ORDER BY e.message_id DESC LIMIT :scanned"
    )
    scored = []
    for message_id, stored in conn.execute(statement, params):
        vector = _floats(stored)
        if len(vector) == len(query):
            similarity = math.fsum(map(mul, query, vector))
            if similarity >= min_similarity:
                scored.append((int(message_id), similarity))
    scored.sort(key=lambda hit: (-hit[1], -hit[0]))
    return scored[:limit]


def _floats(stored: Any) -> Sequence[float]:
    """A stored vector as numbers: SQLite's BLOB of little-endian float32 (read in C, the
    scan's hot path), PostgreSQL's ``real[]`` as the driver returns it."""
    if isinstance(stored, list):  # asyncpg's real[]: Python floats already
        return stored
    if not isinstance(stored, bytes | memoryview):
        return [float(x) for x in stored]
    numbers = array("f")
    numbers.frombytes(bytes(stored)[: len(stored) // 4 * 4])
    if sys.byteorder == "big":
        numbers.byteswap()
    return numbers


def _kind(value: object) -> str:
    if isinstance(value, list):
        return f"{len(value)} numbers"
    return type(value).__name__
