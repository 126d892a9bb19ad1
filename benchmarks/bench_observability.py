"""Overhead of usage accounting, budgets, Prometheus metrics and traces per message.

Chats of 20 messages each send messages through a real gateway with an instant LLM and its own
SQLite memory, five modes side by side: no meter (the loop alone), the usage meter (one
usage row per response), the meter with both budgets set (two spend queries before each
request), that with Prometheus metrics on, then with OpenTelemetry spans too (batched, as
in production, to an exporter that drops them: the SDK's work per span, not a network). The modes
take turns message by message, in a rotating order, so a busy machine slows each alike.

For each round and mode the median wall time and the median CPU time (the process's, every
thread) of one message are taken; a mode's overhead is the median over rounds of its
round's figure against the reference mode's in the same round. The issue's target: metrics
(+ tracing) add < 5 % at p50 over usage accounting with budgets. The machine's load average
is printed with the figures (2 shared cores make wall times noisy; CPU time much less so).
Last, one more round per metrics mode times the recorder's and the spans' calls where they
are made: their CPU per message against the reference's, a figure the load hardly moves.

    .venv/bin/python benchmarks/bench_observability.py [--messages 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from openpista.agent import Agent
from openpista.config import BudgetSettings, MetricsSettings, Settings
from openpista.gateway.gateway import Gateway
from openpista.observability.metrics_server import serve_metrics
from openpista.observability.tracing import Tracing
from openpista.plugins import PluginHost
from openpista.runtime import Runtime
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.providers import InstantProvider

MODES = (
    "no meter",
    "usage meter",
    "meter + budgets",
    "meter + budgets + metrics",
    "meter + budgets + metrics + tracing",
)
REFERENCE = "meter + budgets"
"""What the target compares metrics and tracing against."""
TARGET = 0.05
WARM_UP = 20
SESSION = 20
"""Messages per chat: a new chat then, so the history each turn loads stays alike."""


class Chat:
    """One mode's runtime, chat and scraped metrics endpoint."""

    def __init__(self, mode: str, runtime: Runtime, chat: LoopbackAdapter, url: str | None) -> None:
        self.mode, self.runtime, self.chat, self.url = mode, runtime, chat, url

    async def message(self, who: str, text: str) -> tuple[float, float]:
        """Wall and CPU seconds of one message of chat ``who``, in to answer out."""
        started, used = time.perf_counter(), time.process_time()
        await self.chat.say(who, text)
        await self.chat.answer(who)
        return time.perf_counter() - started, time.process_time() - used


async def open_chat(mode: str, db: Path, stack: AsyncExitStack) -> Chat:
    settings = Settings(database={"url": f"sqlite+aiosqlite:///{db}"})  # type: ignore[arg-type]
    if "budgets" in mode:
        settings.budget = BudgetSettings(daily_usd=1e6, per_session_usd=1e6)
    if "metrics" in mode:
        settings.metrics = MetricsSettings(enabled=True, port=0)
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    stack.push_async_callback(runtime.close)
    if "tracing" in mode:  # the SDK's work per span; the exporter's network is not measured
        runtime.recorder.tracing = Tracing(_discarding_provider())
    meter = None if mode == "no meter" else runtime.meter
    agent = Agent(InstantProvider(), runtime.toolbox.tools, runtime.memory, meter=meter)
    chat = LoopbackAdapter("bench:")
    gateway = Gateway(runtime, [chat], agent=agent)
    await gateway.start()
    stack.push_async_callback(gateway.stop, 0)
    server = serve_metrics(runtime.recorder, settings.metrics)
    if server is not None:
        stack.callback(server.stop)
    return Chat(mode, runtime, chat, server.url if server is not None else None)


def _discarding_provider() -> TracerProvider:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    class Discarding(InMemorySpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discarding()))  # as tracing_for does
    return provider


async def run(
    messages: int, rounds: int
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, float]]:
    """Per mode, ``(median wall, median CPU)`` seconds per message of each round; and per
    mode with metrics, the CPU seconds per message of its recorder and spans alone."""
    figures: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="openpista-bench-obs-") as tmp:
        async with AsyncExitStack() as stack, httpx.AsyncClient() as client:
            chats = [await open_chat(m, Path(tmp) / f"{n}.db", stack) for n, m in enumerate(MODES)]
            for i in range(WARM_UP):  # caches warm up (the price map is read once)
                for chat in chats:
                    await chat.message("warm-up", f"warm up {i}")
            for r in range(rounds):
                walls: dict[str, list[float]] = {mode: [] for mode in MODES}
                cpus: dict[str, list[float]] = {mode: [] for mode in MODES}
                for i in range(messages):
                    shift = i % len(chats)  # each mode takes each place in the order alike
                    for chat in chats[shift:] + chats[:shift]:
                        wall, cpu = await chat.message(f"{r}-{i // SESSION}", f"hello {i}")
                        walls[chat.mode].append(wall)
                        cpus[chat.mode].append(cpu)
                for chat in chats:  # scraped between rounds: label sets stay realistic
                    if chat.url is not None:
                        (await client.get(chat.url)).raise_for_status()
                for mode in MODES:
                    figures[mode].append(
                        (statistics.median(walls[mode]), statistics.median(cpus[mode]))
                    )
            direct = {chat.mode: await attributed(chat, messages) for chat in chats[3:]}
    return figures, direct


async def attributed(chat: Chat, messages: int) -> float:
    """CPU seconds per message spent inside the recorder's and the tracing's calls (each
    timed where it is made: what metrics and spans cost, apart from the machine's noise)."""
    recorder, spent = chat.runtime.recorder, [0.0]

    def timed(call: Callable[..., Any]) -> Callable[..., Any]:
        def measured(*args: Any, **kwargs: Any) -> Any:
            began = time.process_time()
            try:
                return call(*args, **kwargs)
            finally:
                spent[0] += time.process_time() - began

        return measured

    for name in ("turn", "llm_call", "tokens", "tool_call", "error"):
        setattr(recorder, name, timed(getattr(recorder, name)))
    opened = recorder.tracing.span

    @contextlib.contextmanager
    def span(name: str, attributes: Any = None) -> Iterator[Any]:
        began = time.process_time()
        context = opened(name, attributes)
        handle = context.__enter__()
        spent[0] += time.process_time() - began
        try:
            yield handle
        finally:
            began = time.process_time()
            context.__exit__(None, None, None)
            spent[0] += time.process_time() - began

    recorder.tracing.span = span  # type: ignore[method-assign]
    for i in range(messages):
        await chat.message(f"attributed-{i // SESSION}", f"hello {i}")
    return spent[0] / messages


def overhead(figures: dict[str, list[tuple[float, float]]], mode: str, of: str, k: int) -> float:
    """The median over rounds of ``mode``'s figure ``k`` (0 wall, 1 CPU) against ``of``'s."""
    pairs = zip(figures[mode], figures[of], strict=True)
    return statistics.median(a[k] / b[k] - 1 for a, b in pairs)


def main(messages: int, rounds: int) -> None:
    load = os.getloadavg()
    figures, direct = asyncio.run(run(messages, rounds))
    after = os.getloadavg()
    print(
        f"{messages} messages x {rounds} rounds per mode; {os.cpu_count()} CPUs; load average "
        f"{load[0]:.2f} before, {after[0]:.2f} after (1 min)"
    )
    for mode in MODES:
        wall = statistics.median(f[0] for f in figures[mode])
        cpu = statistics.median(f[1] for f in figures[mode])
        more_wall = overhead(figures, mode, MODES[0], 0)
        more_cpu = overhead(figures, mode, MODES[0], 1)
        print(
            f"{mode:<36} p50 {wall * 1000:6.3f} ms ({100 * more_wall:+5.1f} %)   "
            f"CPU {cpu * 1000:6.3f} ms/message ({100 * more_cpu:+5.1f} %)   vs no meter"
        )
    for mode in MODES[3:]:
        wall, cpu = overhead(figures, mode, REFERENCE, 0), overhead(figures, mode, REFERENCE, 1)
        verdict = "within" if max(wall, cpu) < TARGET else "OVER"
        print(
            f"{mode.removeprefix(REFERENCE + ' + ')} over {REFERENCE}: p50 {100 * wall:+.1f} %, "
            f"CPU {100 * cpu:+.1f} % ({verdict} the < {100 * TARGET:g} % target)"
        )
    reference = statistics.median(f[1] for f in figures[REFERENCE])
    for mode, seconds in direct.items():
        print(
            f"{mode.removeprefix(REFERENCE + ' + ')}, timed inside its calls: "
            f"{seconds * 1e6:.0f} us CPU/message = {100 * seconds / reference:.1f} % of "
            f"{REFERENCE}'s CPU per message"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200, help="per mode and round")
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_known_args()[0]
    main(arguments.messages, arguments.rounds)
