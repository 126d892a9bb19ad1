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
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from channel_load import Talk, instant_gateway, print_figures, talk_together

TOKEN = "bench-token-0123456789abcdef"


async def _round(clients: int, messages: int, db: Path) -> tuple[float, list[float]]:
    from openpista_mobile.adapter import MobileAdapter
    from openpista_mobile.client import MobileClient
    from openpista_mobile.settings import parse_settings

    devices = {f"bench-{n:05d}": TOKEN for n in range(clients)}
    adapter = MobileAdapter(
        parse_settings({"host": "127.0.0.1", "port": 0, "tokens": devices, "max_streams": 1000})
    )

    @asynccontextmanager
    async def connection(device: str) -> AsyncIterator[Talk]:
        async with await MobileClient.connect(
            f"quic://127.0.0.1:{adapter.port}",
            TOKEN,
            device,
            fingerprint=adapter.fingerprint,
            early_data=False,
            tickets=db.parent / "tickets",
        ) as client:
            await client.check()

            async def talk(text: str) -> None:
                await client.answer(text)

            yield talk

    async with instant_gateway(db, adapter):
        return await talk_together([connection(device) for device in devices], messages)


def bench_mobile(client_counts: tuple[int, ...], messages: int) -> None:
    for clients in client_counts:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["OPENPISTA_HOME"] = tmp  # the self-signed certificate goes here
            elapsed, latencies = asyncio.run(_round(clients, messages, Path(tmp) / "m.db"))
        label = f"mobile, {clients} QUIC connection(s)"
        print_figures(label, elapsed, latencies, messages)


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
