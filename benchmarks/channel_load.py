"""What the channel load benchmarks share: a real gateway answering with an instant LLM,
clients that open their connections first and then all talk at once, figures printed: the
throughput against its target, and the CPU one message costs split by part of openpista.

Not a benchmark itself (nox runs ``run.py`` and ``bench_*.py``); ``run.py``, ``bench_web.py`` and
``bench_mobile.py`` import it from this folder.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

from openpista_testing.providers import InstantProvider


def machine() -> str:
    """The conditions of a figure: the load average (1 min) against the core count. Other
    work on the machine (tests, other benchmarks) slows every figure down."""
    return f"[load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores]"


Talk = Callable[[str], Awaitable[None]]
"""Sends one message and returns when its final answer has arrived."""

TARGET = 100
"""Messages per second a channel should reach on a 2-core machine against an instant LLM."""

# Which part of the process a sampled stack belongs to: the first rule whose marker is in a
# frame's file name wins, frames taken from the innermost out (SQLAlchemy called by the
# store is the store; pydantic called by the gateway is the gateway). The benchmark's own
# clients run in this process too: a stack that passes through them is theirs. h11 is no
# marker: uvicorn (channel) and httpcore (provider) both parse HTTP with it, the caller decides.
CLIENT_MARKERS = (
    "/benchmarks/",
    "/openpista_web/testing.py",
    "/websockets/asyncio/",  # the server side is uvicorn's, on websockets.legacy
    "/openpista_mobile/client.py",
    "/aioquic/asyncio/client.py",
)
PARTS = (
    ("store", ("/openpista/memory/", "/sqlalchemy/", "/aiosqlite/", "/sqlite3/", "/asyncpg/")),
    ("provider", ("/openpista/providers/", "/openpista_testing/providers.py")),
    (
        "channel",
        (
            "/openpista_web/",
            "/openpista_mobile/",
            "/uvicorn/",
            "/starlette/",
            "/websockets/",
            "/httptools/",
            "/aioquic/",
            "/openpista/serving.py",
            "/openpista_testing/adapters.py",  # the loopback channel of run.py
        ),
    ),
    ("gateway", ("/openpista/",)),
)
IDLE = ("selectors.py",)
LOOP_RUNNERS = ("_run", "_run_once")  # Handle._run runs callbacks, the loop runs those
SAMPLE_EVERY = 0.001


def _part(frame: FrameType | None) -> str:
    stack: list[str] = []
    # Up to the event loop (the frames below it, the benchmark's main, ran everything). The
    # SQLAlchemy code run in a greenlet has a stack of its own, without the loop.
    while frame is not None and not _is_loop(frame):
        stack.append(frame.f_code.co_filename)
        frame = frame.f_back
    if not stack:
        return "event loop"
    if stack[0].endswith(IDLE):
        return "idle"
    if any(marker in name for name in stack for marker in CLIENT_MARKERS):
        return "clients"
    for name in stack:
        for part, markers in PARTS:
            if any(marker in name for marker in markers):
                return part
    return "event loop"


def _is_loop(frame: FrameType) -> bool:
    code = frame.f_code
    return code.co_name in LOOP_RUNNERS and "/asyncio/" in code.co_filename


@dataclass
class CpuProfile:
    """The CPU the process spent while the clients talked, and where: every millisecond of
    process CPU (``ITIMER_PROF``) the stack of the event loop's thread is sampled and
    classified by :func:`_part`. A sample that finds the loop waiting for events is CPU of
    another thread, the SQLite driver's: store."""

    total: float = 0.0
    samples: Counter[str] = field(default_factory=Counter)

    def parts(self) -> dict[str, float]:
        """CPU seconds per part."""
        counts = Counter(self.samples)
        counts["store"] += counts.pop("idle", 0)
        taken = sum(counts.values())
        return {part: self.total * n / taken for part, n in counts.items() if taken}


@contextmanager
def profiled() -> Iterator[CpuProfile]:
    """Measure the process's CPU and sample where it goes for the duration of the block;
    to be entered in the main thread, which runs the event loop."""
    profile = CpuProfile()

    def sample(_signal: int, frame: FrameType | None) -> None:
        profile.samples[_part(frame)] += 1

    previous = signal.signal(signal.SIGPROF, sample)
    started = time.process_time()
    signal.setitimer(signal.ITIMER_PROF, SAMPLE_EVERY, SAMPLE_EVERY)
    try:
        yield profile
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        profile.total = time.process_time() - started
        signal.signal(signal.SIGPROF, previous)


class LoadRun(NamedTuple):
    """What :func:`talk_together` measured."""

    elapsed: float
    latencies: list[float]
    cpu: CpuProfile


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
) -> LoadRun:
    """Open every connection, then let each send ``messages`` messages one after another,
    all connections at once. Returns the seconds that took, every message's latency and
    the CPU spent meanwhile."""
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
    with profiled() as cpu:
        started = time.perf_counter()
        ready.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return LoadRun(elapsed, latencies, cpu)


def print_figures(label: str, run: LoadRun, messages: int, llm: str = "instant LLM") -> None:
    """Two lines: messages per second against :data:`TARGET`, median and 99th percentile
    latency, and the machine's load beside them; then the CPU of one message, in total and
    by part (the benchmark's own clients included, since they run in the same process)."""
    latencies = sorted(run.latencies)
    count = len(latencies)
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(count - 1, int(count * 0.99))] * 1000
    print(
        f"{label:<38} {count / run.elapsed:8.0f} msg/s (target >= {TARGET})"
        f"   p50 {p50:8.1f} ms   p99 {p99:8.1f} ms"
        f"   ({messages} message{'' if messages == 1 else 's'} each, {llm}, SQLite)"
        f" {machine()}"
    )
    parts = sorted(run.cpu.parts().items(), key=lambda item: -item[1])
    split = ", ".join(f"{part} {seconds / count * 1000:.2f}" for part, seconds in parts)
    split = split or "too short to sample"
    print(
        f"{'':<38} CPU {run.cpu.total / count * 1000:6.2f} ms/msg"
        f" (target <= {1000 / TARGET:.0f} on one core): {split}"
    )
