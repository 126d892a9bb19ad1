"""``openpista start`` replicas of one cluster on one PostgreSQL, for end-to-end tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openpista_testing.cli import Cli
from openpista_testing.daemon import Daemon
from openpista_testing.emulator import LlmEmulator, Reply, ReplyFunction, TextReply, ToolCallsReply
from openpista_testing.postgres import PostgresServer


@dataclass
class Replica:
    """One running replica: its CLI (home, config) and its daemon."""

    cli: Cli
    daemon: Daemon

    @property
    def control_socket(self) -> Path:
        """The daemon's control socket (``openpista run`` connects there)."""
        return self.cli.home / ".openpista" / "control.sock"


@dataclass
class ClusterReplicas:
    """Replicas answered by ``emulator`` on ``database_url``, each in ``root / NAME``;
    :meth:`close` kills those still running."""

    root: Path
    emulator: LlmEmulator
    database_url: str
    started: list[Replica] = field(default_factory=list)

    def start(
        self, name: str, extra: str = "", heartbeat: float = 0.2, plugins: str = ""
    ) -> Replica:
        """Start replica ``name`` (``extra``: more config text; ``plugins``: those it loads,
        comma-separated) and wait until it serves."""
        cli = Cli.isolated(self.root / name, self.emulator)
        cli.env["OPENPISTA_LOAD_PLUGINS"] = plugins
        config = cli.config.read_text()
        sqlite = config.split('url = "', 1)[1].split('"', 1)[0]
        cli.write_config(
            config.replace(sqlite, self.database_url)
            + f'\n[cluster]\nenabled = true\nreplica_id = "{name}"\n'
            + f"heartbeat = {heartbeat}\n{extra}"
        )
        replica = Replica(cli, Daemon(cli, "-v"))
        self.started.append(replica)
        replica.daemon.wait_for(f"replica {name} joined the cluster")
        replica.daemon.wait_for("openpista serves:")
        return replica

    def close(self) -> None:
        """Kill every replica started."""
        for replica in self.started:
            replica.daemon.kill()


@contextlib.contextmanager
def fresh_cluster(
    postgres: PostgresServer, root: Path, emulator: LlmEmulator, prefix: str
) -> Iterator[ClusterReplicas]:
    """Replicas (in ``root``) on a new database of ``postgres`` named after ``prefix`` and
    ``root``; on exit they are killed and the database dropped."""
    name = f"{prefix}_{root.name}".lower().replace("-", "_")
    replicas = ClusterReplicas(root, emulator, postgres.create_database(name))
    try:
        yield replicas
    finally:
        replicas.close()
        postgres.drop_database(name)


@contextlib.contextmanager
def gates(root: Path, names: tuple[str, ...] = ("first", "second")) -> Iterator[Path]:
    """A fresh ``root/gate`` directory for :func:`gated_turns`; on exit every gate of
    ``names`` is opened, so the tools of a failed test end too."""
    directory = root / "gate"
    directory.mkdir()
    try:
        yield directory
    finally:
        for name in names:
            (directory / f"{name}.go").touch()


def gated_turns(gate: Path, answers: dict[str, str]) -> ReplyFunction:
    """LLM replies for turns that wait: the user message ``... NAME`` (its first line's last
    word) first runs a tool that touches ``gate/NAME.started`` and waits for
    ``gate/NAME.go``, then is answered with ``answers[NAME]`` (default ``NAME done``),
    streamed three letters at a time."""

    def reply(body: dict[str, Any]) -> Reply | str:
        asked = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        text = asked if isinstance(asked, str) else " ".join(p.get("text", "") for p in asked)
        words = (text.splitlines() or [""])[0].split()  # the files are named on lines after
        name = words[-1] if words else "turn"
        if body["messages"][-1]["role"] == "user":
            go = gate / f"{name}.go"
            wait = f"for i in $(seq 1200); do [ -f {go} ] && exit 0; sleep 0.05; done; exit 1"
            command = f"touch {gate / name}.started; {wait}"
            return ToolCallsReply([("system_run", {"command": command})])
        return TextReply(answers.get(name, f"{name} done"), chunk_size=3)

    return reply
