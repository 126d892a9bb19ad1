"""What the channel load benchmarks share: a real gateway answering with an instant LLM,
clients that open their connections first and then all talk at once, figures printed.

Not a benchmark itself (nox runs ``run.py`` and ``bench_*.py``); ``bench_web.py`` and
``bench_mobile.py`` import it from this folder.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from run import machine

from openpista.testing.providers import InstantProvider

Talk = Callable[[str], Awaitable[None]]
"""Sends one message and returns when its final answer has arrived."""


@asynccontextmanager
async def instant_gateway(db: Path, adapter: Any) -> AsyncIterator[Any]:
    """A started gateway serving ``adapter`` with an instant LLM and SQLite memory at ``db``."""
    from openpista.agent import Agent
    from openpista.config import Settings
    from openpista.gateway.gateway import Gateway
    from openpista.plugins import PluginHost
    from openpista.runtime import Runtime

    settings = Settings(database={"url": f"sqlite+aiosqlite:///{db}"})  # type: ignore[arg-type]
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    agent = Agent(InstantProvider(rounds=0), runtime.toolbox.tools, runtime.memory)
    gateway = Gateway(runtime, [adapter], agent=agent)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop(deadline=0)
        await runtime.close()


async def talk_together(
    connections: Sequence[AbstractAsyncContextManager[Talk]], messages: int
) -> tuple[float, list[float]]:
    """Open every connection, then let each send ``messages`` messages one after another,
    all connections at once. Returns the seconds that took and every message's latency."""
    opened: asyncio.Queue[None] = asyncio.Queue()
    ready = asyncio.Event()
    latencies: list[float] = []

    async def client(connection: AbstractAsyncContextManager[Talk]) -> None:
        async with connection as talk:
            await opened.put(None)
            await ready.wait()
            for i in range(messages):
                started = time.perf_counter()
                await talk(f"hello {i}")
                latencies.append(time.perf_counter() - started)

    tasks = [asyncio.create_task(client(c)) for c in connections]
    for _ in connections:  # every connection is open before the clock starts
        await asyncio.wait_for(opened.get(), 120)
    started = time.perf_counter()
    ready.set()
    await asyncio.gather(*tasks)
    return time.perf_counter() - started, latencies


TARGET = 100
"""Messages per second a channel should reach on a 2-core machine against an instant LLM."""


def print_figures(label: str, elapsed: float, latencies: list[float], messages: int) -> None:
    """One line: messages per second against :data:`TARGET`, median and 99th percentile
    latency, and the machine's load beside them."""
    latencies = sorted(latencies)
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    print(
        f"{label:<38} {len(latencies) / elapsed:8.0f} msg/s (target >= {TARGET})"
        f"   p50 {p50:8.1f} ms   p99 {p99:8.1f} ms"
        f"   ({messages} messages each, instant LLM, SQLite) {machine()}"
    )
