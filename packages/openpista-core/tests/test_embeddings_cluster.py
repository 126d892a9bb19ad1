"""Semantic-search vectors made once for replicas sharing one real PostgreSQL database: two
stores on it (two replicas' memory) embed its pending messages through the real litellm
client against the LLM emulator's ``/v1/embeddings``, which counts what it was asked."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from openpista.memory import MemoryStore
from openpista.memory.embeddings import Embedder
from openpista.models import Message
from openpista.plugins import PluginHost
from openpista.providers.embedder import build_embedder
from openpista.runtime import build_providers
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator

pytestmark = pytest.mark.postgres

TEXTS = [f"message number {n} about topic {n * 7 % 5}" for n in range(6)]


class Held:
    """An embedder whose first call waits until :attr:`go` is set (its batch stays claimed)."""

    def __init__(self, inner: Embedder) -> None:
        self.model = inner.model
        self.inner = inner
        self.embedding = asyncio.Event()
        self.go = asyncio.Event()

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if not self.embedding.is_set():
            self.embedding.set()
            await self.go.wait()
        return await self.inner.embed(texts)


def embedder(emulator: LlmEmulator, tmp_path: Path) -> Embedder:
    settings = emulator_settings(emulator, tmp_path)
    settings.memory.embeddings.model = "hash-embed"
    built = build_embedder(settings, build_providers(PluginHost.load(entry_points=False)))
    assert built is not None
    return built


def embedded(emulator: LlmEmulator) -> Counter[str]:
    """How many times the emulator was asked to embed each text."""
    asked = Counter[str]()
    for request in emulator.requests:
        if request.path.endswith("/embeddings"):
            asked.update(request.json["input"])
    return asked


async def test_two_replicas_embed_each_pending_message_once(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    with LlmEmulator() as emulator:
        first = await MemoryStore.open(fresh_postgres_url)
        second = await MemoryStore.open(fresh_postgres_url)
        try:
            await first.start_turn("s", Message(role="user", content=TEXTS[0]))
            await first.append_messages(
                "s", [Message(role="assistant", content=t) for t in TEXTS[1:]]
            )
            held = Held(embedder(emulator, tmp_path))
            slow = first.enable_embeddings(held, batch=2)
            other = second.enable_embeddings(embedder(emulator, tmp_path), batch=2)
            running = asyncio.create_task(slow.index())
            await asyncio.wait_for(held.embedding.wait(), 60)  # its first batch is claimed
            # The other replica skips that batch (no wait for its lock) and embeds the rest.
            assert await asyncio.wait_for(other.index(), 60) == 4
            held.go.set()
            assert await asyncio.wait_for(running, 60) == 2
            assert embedded(emulator) == Counter(TEXTS)  # each once, none left out
            assert await other.pending() == 0  # every message has its vector
        finally:
            await first.close()
            await second.close()


async def test_replicas_indexing_in_the_background_at_once_embed_each_message_once(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    with LlmEmulator() as emulator:
        stores = [await MemoryStore.open(fresh_postgres_url) for _ in range(2)]
        try:
            indexers = [s.enable_embeddings(embedder(emulator, tmp_path), batch=3) for s in stores]
            for n in range(20):  # each stores messages and wakes its own indexer, as a turn does
                store = stores[n % 2]
                await store.start_turn(f"s{n}", Message(role="user", content=f"question {n}"))
                await store.append_messages(
                    f"s{n}", [Message(role="assistant", content=f"answer {n}")]
                )
            await asyncio.wait_for(asyncio.gather(*(i.settled() for i in indexers)), 60)
            for indexer in indexers:  # a last pass each: nothing is left, nothing done twice
                await indexer.index()
            expected = [f"{kind} {n}" for n in range(20) for kind in ("question", "answer")]
            assert embedded(emulator) == Counter(expected)
        finally:
            for store in stores:
                await store.close()
