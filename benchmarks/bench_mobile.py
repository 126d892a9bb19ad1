"""Mobile channel load: QUIC round trips per second and latency, 1 and 100 connections.

Run with ``.venv/bin/python benchmarks/bench_mobile.py`` (``nox --no-venv -s bench`` runs it too).
A real aioquic server serves the mobile channel inside a real gateway (SQLite memory, an
instant LLM); each client opens its own pinned QUIC connection, then sends ``--messages``
small messages one after another, each timed from send to the final answer. The same
exchange over the web channel's WebSocket runs next when openpista-web is installed.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from run import InstantProvider  # the instant LLM of the gateway benchmark (same folder)

TOKEN = "bench-token-0123456789abcdef"


async def _round(clients: int, messages: int, db: Path) -> tuple[float, list[float]]:
    from openpista.agent import Agent
    from openpista.config import Settings
    from openpista.gateway.gateway import Gateway
    from openpista.plugins import PluginHost
    from openpista.runtime import Runtime
    from openpista_mobile.adapter import MobileAdapter
    from openpista_mobile.client import MobileClient
    from openpista_mobile.settings import parse_settings

    settings = Settings(database={"url": f"sqlite+aiosqlite:///{db}"})  # type: ignore[arg-type]
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    agent = Agent(InstantProvider(rounds=0), runtime.toolbox.tools, runtime.memory)  # type: ignore[arg-type]
    devices = {f"bench-{n:05d}": TOKEN for n in range(clients)}
    adapter = MobileAdapter(
        parse_settings({"host": "127.0.0.1", "port": 0, "tokens": devices, "max_streams": 1000})
    )
    gateway = Gateway(runtime, [adapter], agent=agent)
    await gateway.start()
    latencies: list[float] = []
    ready = asyncio.Event()

    async def client(device: str, opened: asyncio.Queue[None]) -> None:
        async with await MobileClient.connect(
            f"quic://127.0.0.1:{adapter.port}",
            TOKEN,
            device,
            fingerprint=adapter.fingerprint,
            early_data=False,
            tickets=db.parent / "tickets",
        ) as connection:
            await connection.check()
            await opened.put(None)
            await ready.wait()
            for i in range(messages):
                started = time.perf_counter()
                await connection.answer(f"hello {i}")
                latencies.append(time.perf_counter() - started)

    try:
        opened: asyncio.Queue[None] = asyncio.Queue()
        tasks = [asyncio.create_task(client(device, opened)) for device in devices]
        for _ in devices:  # every connection is open before the clock starts
            await asyncio.wait_for(opened.get(), 120)
        started = time.perf_counter()
        ready.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    finally:
        await gateway.stop(deadline=0)
        await runtime.close()
    return elapsed, latencies


def bench_mobile(client_counts: tuple[int, ...], messages: int) -> None:
    for clients in client_counts:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["OPENPISTA_HOME"] = tmp  # the self-signed certificate goes here
            elapsed, latencies = asyncio.run(_round(clients, messages, Path(tmp) / "m.db"))
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        label = f"mobile, {clients} QUIC connection(s)"
        print(
            f"{label:<38} {len(latencies) / elapsed:8.0f} msg/s   p50 {p50:8.1f} ms"
            f"   p99 {p99:8.1f} ms   ({messages} messages each, instant LLM, SQLite)"
        )


def bench_web_for_comparison(client_counts: tuple[int, ...], messages: int) -> None:
    try:
        from bench_web import bench_web

        import openpista_web  # noqa: F401
    except ImportError:
        print("web: not installed (pip install openpista[web] to compare with WebSocket)")
        return
    bench_web(client_counts, messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-c", "--clients", type=int, nargs="+", default=[1, 100], help="concurrent connections"
    )
    parser.add_argument("-m", "--messages", type=int, default=20, help="messages per client")
    args = parser.parse_args()
    bench_mobile(tuple(args.clients), args.messages)
    bench_web_for_comparison(tuple(args.clients), args.messages)


if __name__ == "__main__":
    main()
