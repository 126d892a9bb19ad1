"""Web channel load: N concurrent WebSocket clients chatting with an instant LLM.

Run with ``.venv/bin/python benchmarks/bench_web.py`` (``nox --no-venv -s bench`` runs it too).
A real uvicorn on 127.0.0.1 serves the web channel inside a real gateway (SQLite memory);
each client opens its own connection (token handshake), then sends ``--messages`` messages
one after another, each timed from send to the final answer. Figures are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

from run import InstantProvider  # the instant LLM of the gateway benchmark (same folder)

TOKEN = "bench-token"


async def _round(clients: int, messages: int, db: Path, home: Path) -> tuple[float, list[float]]:
    from openpista.agent import Agent
    from openpista.config import Settings
    from openpista.gateway.gateway import Gateway
    from openpista.plugins import PluginHost
    from openpista.runtime import Runtime
    from openpista_web.adapter import WebAdapter
    from openpista_web.settings import WebSettings
    from openpista_web.testing import greeted, next_frame, open_socket

    settings = Settings(database={"url": f"sqlite+aiosqlite:///{db}"})  # type: ignore[arg-type]
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    agent = Agent(InstantProvider(rounds=0), runtime.toolbox.tools, runtime.memory)  # type: ignore[arg-type]
    web = WebSettings.from_table({"port": 0}, environ={})
    adapter = WebAdapter(web, TOKEN, upload_dir=home / "uploads")
    gateway = Gateway(runtime, [adapter], agent=agent)
    adapter.gateway = gateway
    await gateway.start()
    ready = asyncio.Event()
    latencies: list[float] = []

    async def client(n: int, opened: asyncio.Queue[None]) -> None:
        async with open_socket(adapter.port, f"bench-client-{n:05d}", TOKEN) as ws:
            await greeted(ws, wait=300)
            await opened.put(None)
            await ready.wait()
            for i in range(messages):
                started = time.perf_counter()
                await ws.send(json.dumps({"type": "message", "text": f"hello {i}"}))
                while True:
                    response = (await next_frame(ws, "response", wait=600))["response"]
                    if not response["delta"]:
                        break
                latencies.append(time.perf_counter() - started)

    try:
        opened: asyncio.Queue[None] = asyncio.Queue()
        tasks = [asyncio.create_task(client(n, opened)) for n in range(clients)]
        for _ in range(clients):  # every connection is open before the clock starts
            await asyncio.wait_for(opened.get(), 120)
        started = time.perf_counter()
        ready.set()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    finally:
        await gateway.stop(deadline=0)
        await runtime.close()
    return elapsed, latencies


def bench_web(client_counts: tuple[int, ...], messages: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    for clients in client_counts:
        with tempfile.TemporaryDirectory() as tmp:
            elapsed, latencies = asyncio.run(
                _round(clients, messages, Path(tmp) / "web.db", Path(tmp))
            )
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        label = f"web, {clients} WebSocket clients"
        print(
            f"{label:<38} {len(latencies) / elapsed:8.0f} msg/s   p50 {p50:8.1f} ms"
            f"   p99 {p99:8.1f} ms   ({messages} messages each, instant LLM, SQLite)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-c", "--clients", type=int, nargs="+", default=[100, 1000], help="concurrent clients"
    )
    parser.add_argument("-m", "--messages", type=int, default=5, help="messages per client")
    args = parser.parse_args()
    bench_web(tuple(args.clients), args.messages)


if __name__ == "__main__":
    main()
