"""Mobile channel load: QUIC round trips per second and latency, 1 and 100 connections.

Run with ``.venv/bin/python benchmarks/bench_mobile.py`` (``nox --no-venv -s bench`` runs it too).
A real aioquic server serves the mobile channel inside a real gateway (SQLite memory, an
instant LLM); each client opens its own pinned QUIC connection, then sends ``--messages``
small messages one after another, each timed from send to the final answer. The same
exchange over the web channel's WebSocket runs next when openpista-web is installed.
Figures are printed, never asserted.

``--hostile`` (default: 13 and 64 connections) measures the daemon side's RSS while that many
connections that never authenticate each try to park unfinished 8 MiB frames on several
streams: the server runs in a child process whose VmRSS is sampled before, at the peak,
and after ``auth_timeout`` closed them; once with the shipped limits and once with the
limits opened wide (what the channel did before it had them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from channel_load import LoadRun, Talk, instant_gateway, print_figures, talk_together

TOKEN = "bench-token-0123456789abcdef"


async def _round(clients: int, messages: int, db: Path) -> LoadRun:
    from openpista_mobile.adapter import MobileAdapter
    from openpista_mobile.client import MobileClient
    from openpista_mobile.settings import MobileSettings

    devices = {f"bench-{n:05d}": TOKEN for n in range(clients)}
    adapter = MobileAdapter(
        MobileSettings.from_table(
            {"host": "127.0.0.1", "port": 0, "tokens": devices, "max_streams": 1000}
        )
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
            run = asyncio.run(_round(clients, messages, Path(tmp) / "m.db"))
        label = f"mobile, {clients} QUIC connection(s)"
        print_figures(label, run, messages)


HOSTILE_SERVER = """
import asyncio, json, sys
from openpista_testing.adapters import QueueContext
from openpista_mobile.adapter import MobileAdapter
from openpista_mobile.settings import MobileSettings

async def main(options):
    adapter = MobileAdapter(MobileSettings.from_table(options))
    await adapter.start(QueueContext())
    print(adapter.port, adapter.fingerprint, flush=True)
    await asyncio.Event().wait()

asyncio.run(main(json.loads(sys.argv[1])))
"""
WIDE_OPEN = {
    "auth_timeout": 300,
    "max_unauthenticated_connections": 10_000,
    "max_unauthenticated_bytes": 8 * 1024 * 1024,
}


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _park_frames(port: int, fingerprint: str, streams: int, seconds: float) -> Any:
    """One unauthenticated connection that sends unfinished 8 MiB frames for ``seconds``."""
    from openpista_mobile.client import MobileClient
    from openpista_mobile.protocol import HEADER

    client = await MobileClient.connect(
        f"quic://127.0.0.1:{port}", fingerprint=fingerprint, early_data=False
    )
    protocol: Any = client._protocol
    chunk = b"x" * 65536
    opened = [protocol.open_stream()[0] for _ in range(streams)]
    for stream_id in opened:
        protocol._quic.send_stream_data(stream_id, HEADER.pack(8 * 1024 * 1024 - 1))
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline and not client.closed and sent < 8 * 1024 * 1024 - 1:
        for stream_id in opened:
            with contextlib.suppress(AssertionError, ValueError):  # stopped by the server
                protocol._quic.send_stream_data(stream_id, chunk)
        sent += len(chunk)
        protocol.transmit()
        await asyncio.sleep(0.05)
    return client


async def _hostile_round(connections: int, options: dict[str, Any], home: str) -> list[float]:
    import json

    env = {**os.environ, "OPENPISTA_HOME": home}
    table = {"host": "127.0.0.1", "port": 0, "tokens": {"phone": TOKEN}, **options}
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOSTILE_SERVER,
        json.dumps(table),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        assert server.stdout is not None
        port, fingerprint = (await server.stdout.readline()).decode().split()
        before = _rss_mib(server.pid)
        peak = before
        tasks = [
            asyncio.create_task(_park_frames(int(port), fingerprint, 4, 5.0))
            for _ in range(connections)
        ]
        while not all(task.done() for task in tasks):
            peak = max(peak, _rss_mib(server.pid))
            await asyncio.sleep(0.2)
        clients = [task.result() for task in tasks if not task.exception()]
        for _ in range(int(options.get("auth_timeout", 10) * 5) + 10):
            peak = max(peak, _rss_mib(server.pid))
            if all(client.closed for client in clients):
                break
            await asyncio.sleep(0.2)
        for client in clients:
            await client.close()
        await asyncio.sleep(1)
        return [before, peak, _rss_mib(server.pid)]
    finally:
        server.kill()
        await server.wait()


def bench_hostile(connection_counts: tuple[int, ...]) -> None:
    for connections in connection_counts:
        for label, options in (("limits", {}), ("wide open", WIDE_OPEN)):
            if label == "wide open":
                options = {**options, "auth_timeout": 12}  # end the round in finite time
            with tempfile.TemporaryDirectory() as home:
                before, peak, after = asyncio.run(_hostile_round(connections, options, home))
            print(
                f"mobile, {connections:3d} unauthenticated connections ({label:9s}): "
                f"daemon RSS {before:6.1f} MiB before, {peak:6.1f} peak, {after:6.1f} after"
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
    parser.add_argument(
        "--hostile",
        type=int,
        nargs="*",
        default=[13, 64],
        help="unauthenticated connections parking unfinished frames (none: skip)",
    )
    args = parser.parse_known_args()[0]
    bench_mobile(tuple(args.clients), args.messages)
    bench_web_for_comparison(tuple(args.clients), args.messages)
    bench_hostile(tuple(args.hostile))


if __name__ == "__main__":
    main()
