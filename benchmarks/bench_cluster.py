"""Throughput of 1, 2 and 3 gateway replicas on one PostgreSQL (printed only, never asserted).

Starts a throw-away PostgreSQL server and the LLM emulator, then for each replica count a
fresh database and that many ``openpista start`` daemons with ``[cluster] enabled``.
``--sessions`` sessions send ``--messages`` messages each, one after the other, message k of
session s to replica (s + k) mod n through its control socket, so that a session's messages
are handed over between replicas (stored, run by the replica leasing the session, answered
through the replica holding the connection). Prints the messages answered per second for
each count, with the CPU time (user + sys) the replicas used, in two modes
(docs/scale-out.md):

* ``instant``: the emulator answers at once and each replica may run 256 turns at a time
  (the default ``[gateway] max_concurrent_turns``): the figure is the hand-over's cost, since
  on one machine the replicas share its cores;
* ``latency``: the emulator waits ``--latency`` seconds before its first token (a real
  model) and each replica runs at most ``--turns`` turns at a time (what a replica is sized
  to): the turns wait for the model, not the CPU, so more replicas answer more.

    .venv/bin/python benchmarks/bench_cluster.py [--mode instant,latency] [--sessions 60]
        [--messages 5] [--replicas 1,2,3] [--latency 0.5] [--turns 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from channel_load import machine

from openpista.control.client import ControlClient
from openpista_testing.cli import Cli
from openpista_testing.daemon import Daemon
from openpista_testing.emulator import LlmEmulator, TextReply
from openpista_testing.postgres import PostgresServer

DEFAULT_TURNS = 256
"""``[gateway] max_concurrent_turns``'s default: the instant mode's limit."""


@dataclass(frozen=True)
class Mode:
    name: str
    latency: float
    """Seconds the emulator waits before answering."""
    turns: int
    """Each replica's ``[gateway] max_concurrent_turns``."""


def start_replica(home: Path, emulator: LlmEmulator, url: str, name: str, turns: int) -> Daemon:
    cli = Cli.isolated(home, emulator)
    config = cli.config.read_text()
    sqlite = config.split('url = "', 1)[1].split('"', 1)[0]
    cli.write_config(
        config.replace(sqlite, url)
        + f"\n[gateway]\nmax_concurrent_turns = {turns}\n"
        + f'\n[cluster]\nenabled = true\nreplica_id = "{name}"\n'
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench(mode: Mode, replicas: int, sessions: int, messages: int, server: PostgresServer) -> None:
    name = f"bench_cluster_{mode.name}_{replicas}_{int(time.time())}"
    url = server.create_database(name)
    daemons: list[Daemon] = []
    try:
        with LlmEmulator() as emulator, tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            emulator.default_reply = TextReply("OK", delay=mode.latency)
            homes = [Path(tmp) / f"gw{i}" for i in range(replicas)]
            for i, home in enumerate(homes):
                daemons.append(start_replica(home, emulator, url, f"gw{i}", mode.turns))
            sockets = [home / ".openpista" / "control.sock" for home in homes]
            used = [cpu_seconds(d.process.pid) for d in daemons]
            began = time.perf_counter()
            with ThreadPoolExecutor(sessions) as pool:
                answered = sum(pool.map(lambda s: talk(sockets, s, messages), range(sessions)))
            seconds = time.perf_counter() - began
            cpu = sum(cpu_seconds(d.process.pid) for d in daemons) - sum(used)
    finally:
        for daemon in daemons:
            daemon.stop()
        server.drop_database(name)
    total = sessions * messages
    print(
        f"{mode.name:7} {replicas} replica(s): {answered}/{total} answered in {seconds:6.2f} s, "
        f"{answered / seconds:6.1f} msg/s, replicas' CPU {1000 * cpu / total:5.1f} ms/msg   "
        f"{machine()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="instant,latency", help="instant, latency or both")
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--replicas", default="1,2,3", help="comma-separated replica counts")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds to first token")
    parser.add_argument("--turns", type=int, default=3, help="max_concurrent_turns (latency)")
    args, _ = parser.parse_known_args()
    modes = {
        "instant": Mode("instant", 0.0, DEFAULT_TURNS),
        "latency": Mode("latency", args.latency, args.turns),
    }
    chosen = [modes[name] for name in args.mode.split(",")]
    counts = [int(n) for n in args.replicas.split(",")]
    print(
        f"{args.sessions} sessions x {args.messages} messages, message k of session s to "
        f"replica (s + k) mod n; latency mode: {args.latency} s to the first token, "
        f"max_concurrent_turns = {args.turns}; instant: no wait, {DEFAULT_TURNS}"
    )
    with PostgresServer() as server:
        for mode in chosen:
            for count in counts:
                bench(mode, count, args.sessions, args.messages, server)


if __name__ == "__main__":
    main()
