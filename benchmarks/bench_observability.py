"""Overhead of usage accounting, budgets and Prometheus metrics per message (printed only).

One chat sends messages one after another through a real gateway with an instant LLM and
SQLite memory, four ways: no meter (the loop alone), the usage meter (one usage row per
response), the meter with both budgets set (two spend queries before each request), and
all of that with Prometheus metrics on and scraped meanwhile, then with OpenTelemetry
spans too (batched to an exporter that drops them). The median and p95 per
message, and each against the first, are printed; the issue's target is < 5 % at p50 for
metrics (+ tracing) over usage accounting.

    .venv/bin/python benchmarks/bench_observability.py [--messages 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

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


async def measure(mode: str, db: Path, messages: int) -> tuple[list[float], float]:
    """Seconds per message of ``messages`` sequential turns of one chat in ``mode``, and
    the process's CPU seconds (every thread: SQLite's, the scrapes') per message."""
    settings = Settings(database={"url": f"sqlite+aiosqlite:///{db}"})  # type: ignore[arg-type]
    if "budgets" in mode:
        settings.budget = BudgetSettings(daily_usd=1e6, per_session_usd=1e6)
    if "metrics" in mode:
        settings.metrics = MetricsSettings(enabled=True, port=0)
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    if "tracing" in mode:  # the SDK's work per span; the exporter's network is not measured
        runtime.recorder.tracing = Tracing(_discarding_provider())
    meter = None if mode == "no meter" else runtime.meter
    agent = Agent(InstantProvider(), runtime.toolbox.tools, runtime.memory, meter=meter)
    chat = LoopbackAdapter("bench:")
    gateway = Gateway(runtime, [chat], agent=agent)
    await gateway.start()
    server = serve_metrics(runtime.recorder, settings.metrics)
    scraping = asyncio.create_task(_scrape(server.url)) if server is not None else None
    latencies = []
    cpu = 0.0
    try:
        for i in range(messages + 20):
            started, used = time.perf_counter(), time.process_time()
            await chat.say("1", f"hello {i}")
            await chat.answer("1")
            if i >= 20:  # the first ones warm caches up (the price map is read once)
                latencies.append(time.perf_counter() - started)
                cpu += time.process_time() - used
    finally:
        if scraping is not None:
            scraping.cancel()
        if server is not None:
            server.stop()
        await gateway.stop(deadline=0)
        await runtime.close()
    return latencies, cpu / messages


def _discarding_provider() -> TracerProvider:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    class Discarding(InMemorySpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discarding()))
    return provider


async def _scrape(url: str) -> None:
    async with httpx.AsyncClient() as client:
        while True:
            await client.get(url)
            await asyncio.sleep(0.5)


async def main(messages: int, rounds: int) -> None:
    # The modes take turns, ``rounds`` times, so that a busy machine slows each alike.
    runs: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpus: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="openpista-bench-obs-") as tmp:
        for r in range(rounds):
            for n, mode in enumerate(MODES):
                latencies, cpu = await measure(mode, Path(tmp) / f"{r}-{n}.db", messages)
                runs[mode] += latencies
                cpus[mode].append(cpu)
    baseline = statistics.median(runs[MODES[0]])
    base_cpu = statistics.median(cpus[MODES[0]])
    for mode, latencies in runs.items():
        p50 = statistics.median(latencies)
        p95 = statistics.quantiles(latencies, n=20)[-1]
        cpu = statistics.median(cpus[mode])
        print(
            f"{mode:<36} p50 {p50 * 1000:7.3f} ms ({100 * (p50 / baseline - 1):+6.1f} %)   "
            f"p95 {p95 * 1000:7.3f} ms   CPU {cpu * 1000:6.3f} ms/message "
            f"({100 * (cpu / base_cpu - 1):+6.1f} %)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200, help="per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.messages, arguments.rounds))
