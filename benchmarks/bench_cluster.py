"""Throughput of 1, 2 and 3 gateway replicas on one PostgreSQL (printed only, never asserted).

Starts a throw-away PostgreSQL server and the LLM emulator (an instant "OK"), then for each
replica count a fresh database and that many ``openpista start`` daemons with ``[cluster]
enabled``. ``--sessions`` sessions send ``--messages`` messages each, one after the other,
message k of session s to replica (s + k) mod n through its control socket, so that a
session's messages are handed over between replicas (stored, run by the replica leasing the
session, answered through the replica holding the connection). Prints the messages answered
per second for each count (docs/scale-out.md).

    .venv/bin/python benchmarks/bench_cluster.py [--sessions 30] [--messages 5] [--replicas 1,2,3]

On a 2-core machine the replicas share the cores with PostgreSQL and the clients: the figure
shows the cost of the leases more than the gain of more machines.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from channel_load import machine

from openpista.control.client import ControlClient
from openpista_testing.cli import Cli
from openpista_testing.daemon import Daemon
from openpista_testing.emulator import LlmEmulator
from openpista_testing.postgres import PostgresServer


def start_replica(home: Path, emulator: LlmEmulator, url: str, name: str) -> Daemon:
    cli = Cli.isolated(home, emulator)
    config = cli.config.read_text()
    sqlite = config.split('url = "', 1)[1].split('"', 1)[0]
    cli.write_config(
        config.replace(sqlite, url) + f'\n[cluster]\nenabled = true\nreplica_id = "{name}"\n'
    )
    daemon = Daemon(cli)
    daemon.wait_for("openpista is ready")
    return daemon


def talk(sockets: list[Path], session: int, messages: int) -> int:
    """Send the session's messages in turn; returns how many got an answer."""
    answered = 0
    for k in range(messages):
        client = ControlClient.connect(sockets[(session + k) % len(sockets)])
        if client is None:
            raise SystemExit("a replica's control socket is gone")
        try:
            client.send({"type": "run", "text": f"message {k}", "session": f"s{session}"})
            while True:
                frame = client.receive()
                message = frame.get("message") or {}
                if frame["type"] == "outbound" and message.get("kind") == "answer":
                    answered += not message.get("is_error")
                    break
                if frame["type"] in ("error", "cancelled"):
                    break
        finally:
            client.close()
    return answered


def bench(replicas: int, sessions: int, messages: int, server: PostgresServer) -> None:
    name = f"bench_cluster_{replicas}_{int(time.time())}"
    url = server.create_database(name)
    daemons: list[Daemon] = []
    try:
        with LlmEmulator() as emulator, tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            homes = [Path(tmp) / f"gw{i}" for i in range(replicas)]
            for i, home in enumerate(homes):
                daemons.append(start_replica(home, emulator, url, f"gw{i}"))
            sockets = [home / ".openpista" / "control.sock" for home in homes]
            began = time.perf_counter()
            with ThreadPoolExecutor(sessions) as pool:
                answered = sum(pool.map(lambda s: talk(sockets, s, messages), range(sessions)))
            seconds = time.perf_counter() - began
    finally:
        for daemon in daemons:
            daemon.stop()
        server.drop_database(name)
    total = sessions * messages
    print(
        f"{replicas} replica(s): {answered}/{total} answered in {seconds:6.2f} s, "
        f"{answered / seconds:7.1f} msg/s   {machine()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--replicas", default="1,2,3", help="comma-separated replica counts")
    args, _ = parser.parse_known_args()
    with PostgresServer() as server:
        for count in (int(n) for n in args.replicas.split(",")):
            bench(count, args.sessions, args.messages, server)


if __name__ == "__main__":
    main()
