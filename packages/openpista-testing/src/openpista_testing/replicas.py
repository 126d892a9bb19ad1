"""``openpista start`` replicas of one cluster on one PostgreSQL, for end-to-end tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from openpista_testing.cli import Cli
from openpista_testing.daemon import Daemon
from openpista_testing.emulator import LlmEmulator


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

    def start(self, name: str, extra: str = "", heartbeat: float = 0.2) -> Replica:
        """Start replica ``name`` (``extra``: more config text) and wait until it serves."""
        cli = Cli.isolated(self.root / name, self.emulator)
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
