"""Embedding new messages in the background, and backfilling the ones stored before.

:class:`EmbeddingIndexer` is told (:meth:`~EmbeddingIndexer.notify`) when messages were
stored; a background task then embeds every message that has no vector by the model yet, in
batches, off the turn's path. A failure (the provider down, a bad answer) is logged and
never reaches the turn; the messages stay pending and are tried again at the next
notification or by ``openpista sessions embed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from functools import partial

from openpista.memory.checks import MemoryStoreError
from openpista.memory.embeddings import (
    DEFAULT_MIN_SIMILARITY,
    Embedder,
    count_pending,
    normalized,
    pending_messages,
    store_vectors,
)
from openpista.memory.engine import Database

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called after each batch with (messages embedded so far, messages pending at the start)."""


class EmbeddingIndexer:
    """Keeps the vectors of a store's messages up to date with ``embedder``."""

    def __init__(
        self,
        database: Database,
        embedder: Embedder,
        batch: int = 32,
        min_similarity: float = DEFAULT_MIN_SIMILARITY,
    ) -> None:
        self.embedder = embedder
        self.batch = batch
        self.min_similarity = min_similarity
        self._db = database
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._requested = self._completed = 0
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def notify(self) -> None:
        """Messages were stored: embed them soon, in the background."""
        self._requested += 1
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def settled(self) -> None:
        """Wait until the background task has handled every notification given so far."""
        target = self._requested
        async with self._changed:
            await self._changed.wait_for(lambda: self._completed >= target)

    async def pending(self) -> int:
        """How many messages have no vector by the model yet."""
        model = self.embedder.model
        return await self._db.run(
            lambda conn: count_pending(conn, model), "counting messages to embed", write=False
        )

    async def index(self, progress: Progress | None = None) -> int:
        """Embed every message that has no vector by the model yet; returns how many were
        stored. Errors of the embedder or the database propagate.

        On PostgreSQL each batch is claimed while it is embedded (see
        :func:`~openpista.memory.embeddings.pending_messages`): replicas, or a ``sessions
        embed`` next to the daemon, sharing the database embed each message once."""
        async with self._lock:
            total = await self.pending() if progress is not None else 0
            done = after = 0
            while (batch := await self._batch(after)) is not None:
                done += batch[1]
                after = batch[0]
                if progress is not None:
                    progress(done, max(total, done))
            return done

    async def _batch(self, after: int) -> tuple[int, int] | None:
        """Embed and store the next batch of pending messages after id ``after``: the last
        id of the batch and how many vectors were stored (``None``: none left)."""
        model = self.embedder.model
        async with self._db.held("embedding messages") as held:
            claimed = self._db.dialect == "postgresql"
            batch = await held.run(
                partial(
                    pending_messages, model=model, after=after, batch=self.batch, claim=claimed
                ),
                write=False,  # a locking read on PostgreSQL (where write is not used)
            )
            if not batch:
                return None
            vectors = await self.embedder.embed([content for _, content in batch])
            if len(vectors) != len(batch):
                raise MemoryStoreError(
                    f"the embedding model returned {len(vectors)} vectors for {len(batch)} texts"
                )
            pairs = _usable([mid for mid, _ in batch], vectors)
            stored = await held.run(partial(store_vectors, model=model, vectors=pairs), write=True)
        return batch[-1][0], stored

    async def close(self) -> None:
        """Stop the background task (a batch being embedded is abandoned)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            target = self._requested
            try:
                await self.index()
            except Exception as exc:  # never the turn's problem: log, retry on the next one
                if not self._failing:
                    log.warning("❌ embedding messages failed (retried later): %s", exc)
                self._failing = True
            else:
                self._failing = False
            async with self._changed:
                self._completed = target
                self._changed.notify_all()


def _usable(ids: list[int], vectors: list[list[float]]) -> list[tuple[int, list[float]]]:
    """The messages' normalised vectors, leaving out (with a warning) those that are not
    vectors: such a message stays pending, and one bad answer does not hold up the rest."""
    usable, refused = [], []
    for message_id, vector in zip(ids, vectors, strict=True):
        try:
            usable.append((message_id, normalized(vector)))
        except MemoryStoreError as exc:
            refused.append(str(exc))
    if refused:
        log.warning("❌ %d message(s) got no usable vector: %s", len(refused), refused[0])
    return usable
