"""Full-text search over a large memory (printed only, never asserted).

Fills a fresh database with ``--messages`` messages (100 000 by default) in ``--sessions``
sessions of as many people, words drawn from a Zipf-like vocabulary so that some words are
in most messages and others in a few, then times ``--queries`` searches of each kind: a
common word, a rare word, two words, and a rare word scoped to one person. The median and
p95 per search are printed, with the time the fill took (the triggers keep the index).

``--semantic`` then embeds every message (real litellm against the LLM emulator's hashed
bag-of-words ``/v1/embeddings``, see docs/memory.md "Semantic search"), printing how long
the backfill took, and times hybrid searches (the query embedded over HTTP, the vector scan,
reciprocal rank fusion with the full-text hits).

    .venv/bin/python benchmarks/bench_memory_search.py [--messages 100000] [--queries 200]
    .venv/bin/python benchmarks/bench_memory_search.py --semantic
    .venv/bin/python benchmarks/bench_memory_search.py --url postgresql+asyncpg://me@127.0.0.1/db

``--url`` names an empty database to fill (default: a SQLite file in a temporary directory).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from openpista.memory import MemoryStore, SearchScope, Speaker
from openpista.models import Message

VOCABULARY = [f"w{i:05d}" for i in range(20_000)]
WEIGHTS = [1 / (rank + 1) for rank in range(len(VOCABULARY))]
BATCH = 500


def text(rng: random.Random) -> str:
    """A message of 8 to 40 words."""
    return " ".join(rng.choices(VOCABULARY, WEIGHTS, k=rng.randint(8, 40)))


async def fill(store: MemoryStore, messages: int, sessions: int, rng: random.Random) -> float:
    """Store ``messages`` messages round-robin in ``sessions`` sessions; seconds taken."""
    started = time.perf_counter()
    per_session = max(1, messages // sessions)
    for number in range(sessions):
        session = f"s{number}"
        speaker = Speaker.of(f"bench:{number}", str(number))
        first = Message(role="user", content=text(rng))
        await store.start_turn(session, first, speaker=speaker)
        rest = [
            Message(role="assistant" if i % 2 else "user", content=text(rng))
            for i in range(per_session - 1)
        ]
        for start in range(0, len(rest), BATCH):
            await store.append_messages(session, rest[start : start + BATCH])
    return time.perf_counter() - started


async def timed(queries: int, search: Callable[[int], Awaitable[object]]) -> list[float]:
    latencies = []
    for i in range(queries):
        started = time.perf_counter()
        await search(i)
        latencies.append(time.perf_counter() - started)
    return latencies


def report(name: str, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    print(f"{name:<28} p50 {statistics.median(ordered) * 1000:8.2f} ms   p95 {p95 * 1000:8.2f} ms")


async def semantic(store: MemoryStore, sessions: int, queries: int, home: Path) -> None:
    """Embed every message through the emulator, then time hybrid searches."""
    from openpista.plugins import PluginHost
    from openpista.providers.embedder import enable_semantic_search
    from openpista.runtime import build_providers
    from openpista_testing.cli import emulator_settings
    from openpista_testing.emulator import LlmEmulator

    with LlmEmulator() as emulator:
        settings = emulator_settings(emulator, home).model_copy(deep=True)
        settings.memory.embeddings.model = "hash-embed"
        settings.memory.embeddings.batch = 256
        problem = enable_semantic_search(store, settings, build_providers(PluginHost.load()))
        indexer = store.embeddings
        if problem is not None or indexer is None:
            raise SystemExit(problem)
        started = time.perf_counter()
        count = await indexer.index()
        print(f"embedded {count} messages in {time.perf_counter() - started:.1f} s")
        common, rare = VOCABULARY[:20], VOCABULARY[5_000:15_000]
        kinds: dict[str, Callable[[int], Awaitable[object]]] = {
            "hybrid, common word": lambda i: store.search(common[i % len(common)]),
            "hybrid, two words": lambda i: store.search(f"{common[i % 20]} {rare[i % len(rare)]}"),
            "hybrid, one person": lambda i: store.search(
                rare[i * 37 % len(rare)], SearchScope(person=f"bench:{i % sessions}")
            ),
        }
        for name, search in kinds.items():
            await timed(5, search)
            report(name, await timed(queries, search))


async def main(
    url: str, messages: int, sessions: int, queries: int, embed: bool, home: Path
) -> None:
    rng = random.Random(23)
    async with await MemoryStore.open(url) as store:
        seconds = await fill(store, messages, sessions, rng)
        print(f"filled {messages} messages in {sessions} sessions in {seconds:.1f} s")
        common = VOCABULARY[:20]
        rare = VOCABULARY[5_000:15_000]
        kinds: dict[str, Callable[[int], Awaitable[object]]] = {
            "common word": lambda i: store.search(common[i % len(common)]),
            "rare word": lambda i: store.search(rare[i * 37 % len(rare)]),
            "two words": lambda i: store.search(f"{common[i % 20]} {rare[i % len(rare)]}"),
            "rare word, one person": lambda i: store.search(
                rare[i * 37 % len(rare)], SearchScope(person=f"bench:{i % sessions}")
            ),
        }
        for name, search in kinds.items():
            await timed(5, search)  # warm up caches
            report(name, await timed(queries, search))
        if embed:
            await semantic(store, sessions, queries, home)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an empty database (default: a temporary SQLite file)")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--semantic", action="store_true", help="also time hybrid search")
    args = parser.parse_known_args()[0]
    with tempfile.TemporaryDirectory() as tmp:
        target = args.url or f"sqlite:///{Path(tmp) / 'memory.db'}"
        run = main(target, args.messages, args.sessions, args.queries, args.semantic, Path(tmp))
        asyncio.run(run)
