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
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from channel_load import LoadRun, Talk, instant_gateway, print_figures, talk_together

TOKEN = "bench-token"


async def web_round(clients: int, messages: int, db: Path, home: Path) -> LoadRun:
    """``clients`` WebSocket clients of a real web channel and gateway (instant LLM), each
    sending ``messages`` messages one after another (also bench_attach.py's per-message
    overhead)."""
    from openpista_web.adapter import WebAdapter
    from openpista_web.settings import WebSettings
    from openpista_web.testing import greeted, next_frame, open_socket

    web = WebSettings.from_table({"port": 0}, environ={})
    adapter = WebAdapter(web, TOKEN, upload_dir=home / "uploads")

    @asynccontextmanager
    async def connection(n: int) -> AsyncIterator[Talk]:
        async with open_socket(adapter.port, f"bench-client-{n:05d}", TOKEN) as ws:
            await greeted(ws, wait=300)

            async def talk(text: str) -> None:
                await ws.send(json.dumps({"type": "message", "text": text}))
                while True:
                    response = (await next_frame(ws, "response", wait=600))["response"]
                    if response["kind"] == "answer":
                        return

            yield talk

    async with instant_gateway(db, adapter):
        return await talk_together([connection(n) for n in range(clients)], messages)


def bench_web(client_counts: tuple[int, ...], messages: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    for clients in client_counts:
        with tempfile.TemporaryDirectory() as tmp:
            run = asyncio.run(web_round(clients, messages, Path(tmp) / "web.db", Path(tmp)))
        print_figures(f"web, {clients} WebSocket clients", run, messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-c", "--clients", type=int, nargs="+", default=[100, 1000], help="concurrent clients"
    )
    parser.add_argument("-m", "--messages", type=int, default=5, help="messages per client")
    args = parser.parse_known_args()[0]
    bench_web(tuple(args.clients), args.messages)


if __name__ == "__main__":
    main()
