"""A throw-away PostgreSQL server for tests: real binaries, a temporary cluster, loopback only.

Usage::

    with PostgresServer() as server:
        url = server.url                      # postgresql+asyncpg://openpista@127.0.0.1:PORT/openpista
        other = server.create_database("t1")  # a second, empty database

The server binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/*/bin``)
or whatever ``pg_config --bindir`` names. PostgreSQL refuses to run as root, so when the
tests run as root the cluster is created and run as the ``postgres`` system user (or the user
named by ``OPENPISTA_PG_USER``). Everything lives in one temporary directory that is removed,
with the server killed if need be, when the context exits.

If the test process itself is killed (a CI timeout, SIGKILL), nothing in it can clean up. On
Linux the kernel then stops the server (parent-death signal, when started from the main
thread), and the next :meth:`PostgresServer.start` removes directories left by dead owners.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from openpista.gateway.daemon import pid_alive
from openpista_testing.ports import free_port
from openpista_testing.processes import log_tail, stop_process

__all__ = ["PostgresNotAvailableError", "PostgresServer", "PostgresStartError", "find_bindir"]

_INSTALL_HINT = (
    "the test command installs the Debian package `postgresql` "
    "(apt-get install postgresql) for the PostgreSQL tests"
)
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_TMP_PREFIX = "openpista-pg-"
_OWNER_FILE = "owner.pid"


class PostgresNotAvailableError(RuntimeError):
    """The PostgreSQL server binaries (or a non-root user to run them) are missing."""


class PostgresStartError(RuntimeError):
    """The server did not start; the message includes its log."""


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres``.

    ``$OPENPISTA_PG_BINDIR`` if set, else the newest ``/usr/lib/postgresql/*/bin``, else
    ``pg_config --bindir``.
    """
    candidates: list[Path] = []
    if override := os.environ.get("OPENPISTA_PG_BINDIR"):
        candidates.append(Path(override))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates.extend(Path(p) for p in sorted(versions, key=_version_key, reverse=True))
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "postgres", "pg_ctl")):
            return bindir
    searched = ", ".join(str(c) for c in candidates) or "/usr/lib/postgresql/*/bin, pg_config"
    raise PostgresNotAvailableError(
        f"PostgreSQL server binaries (initdb, postgres) not found (looked in: {searched}); "
        + _INSTALL_HINT
    )


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory, serving 127.0.0.1 on a free port.

    ``startup_timeout`` bounds how long :meth:`start` waits for the server to accept
    connections. Use as a context manager; :meth:`stop` is also safe to call directly.
    """

    superuser = "openpista"
    database = "openpista"

    def __init__(self, *, startup_timeout: float = 60.0) -> None:
        self.startup_timeout = startup_timeout
        self.port = 0
        self._bindir: Path | None = None
        self._tmp: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as: pwd.struct_passwd | None = None

    # -- public -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """SQLAlchemy async URL of the default database."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """SQLAlchemy async URL of ``database`` on this server."""
        if not self.port:
            raise RuntimeError("the PostgreSQL server is not running")
        return f"postgresql+asyncpg://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` (lowercase identifier) and return its URL."""
        if not _DATABASE_NAME.match(name):
            raise ValueError(f"database name {name!r} must be a lowercase SQL identifier")
        self._client("createdb", name)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting its clients."""
        if not _DATABASE_NAME.match(name):
            raise ValueError(f"database name {name!r} must be a lowercase SQL identifier")
        self._client("dropdb", "--if-exists", "--force", name)

    def start(self) -> None:
        """Create the cluster and start the server; returns once it accepts connections."""
        if self._process is not None:
            raise RuntimeError("the PostgreSQL server is already running")
        try:
            self._bindir = find_bindir()
            self._run_as = _server_user()
            _remove_abandoned_clusters()
            self._tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX))
            (self._tmp / _OWNER_FILE).write_text(str(os.getpid()))
            if self._run_as is not None:
                os.chown(self._tmp, self._run_as.pw_uid, self._run_as.pw_gid)
            self._initdb()
            # A port picked as free may be taken before the server binds it; try again then.
            for attempt in range(3):
                self.port = free_port()
                if self._launch(last_attempt=attempt == 2):
                    break
            self._client("createdb", self.database)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (fast shutdown, then SIGKILL) and delete its directory."""
        process, self._process = self._process, None
        if process is not None:
            # SIGINT is PostgreSQL's "fast" shutdown: disconnect clients, then exit.
            stop_process(process, signal.SIGINT, wait=15)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self.port = 0

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------

    @property
    def _data_dir(self) -> Path:
        assert self._tmp is not None
        return self._tmp / "data"

    @property
    def _log_path(self) -> Path:
        assert self._tmp is not None
        return self._tmp / "server.log"

    def _tool(self, name: str) -> str:
        assert self._bindir is not None
        return str(self._bindir / name)

    def _as_server_user(self) -> dict[str, Any]:
        """Popen arguments that drop root privileges to the server user."""
        if self._run_as is None:
            return {}
        return {
            "user": self._run_as.pw_uid,
            "group": self._run_as.pw_gid,
            "extra_groups": [],
            "env": {**os.environ, "HOME": str(self._tmp), "USER": self._run_as.pw_name},
        }

    def _initdb(self) -> None:
        result = subprocess.run(
            [
                self._tool("initdb"),
                "--pgdata",
                str(self._data_dir),
                "--username",
                self.superuser,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self._tmp,
            check=False,
            **self._as_server_user(),
        )
        if result.returncode != 0:
            raise PostgresStartError(
                f"initdb failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
            )

    def _launch(self, *, last_attempt: bool) -> bool:
        assert self._tmp is not None
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    self._tool("postgres"),
                    "-D",
                    str(self._data_dir),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-k",
                    str(self._tmp),
                    # A throw-away cluster: durability settings only cost time here.
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._tmp,
                # Own process group: a Ctrl-C aimed at pytest does not reach the server
                # before stop() shuts it down in order.
                start_new_session=True,
                preexec_fn=_die_with_parent(),
                **self._as_server_user(),
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            returncode = self._process.poll()
            if returncode is not None:
                log_text = self._read_log()
                self._process = None
                port_taken = "could not bind" in log_text or "already in use" in log_text
                if port_taken and not last_attempt:
                    return False
                raise PostgresStartError(
                    f"postgres exited with code {returncode} during startup; "
                    f"server log:\n{log_text}"
                )
            if self._ready():
                return True
            time.sleep(0.1)
        log_text = self._read_log()
        raise PostgresStartError(
            f"postgres did not accept connections on 127.0.0.1:{self.port} within "
            f"{self.startup_timeout:g}s; server log:\n{log_text}"
        )

    def _ready(self) -> bool:
        result = subprocess.run(
            [
                self._tool("pg_isready"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--username",
                self.superuser,
                "--dbname",
                "postgres",
                "--timeout",
                "2",
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        return result.returncode == 0

    def _client(self, tool: str, *args: str) -> None:
        if self._process is None:
            raise RuntimeError("the PostgreSQL server is not running")
        result = subprocess.run(
            [
                self._tool(tool),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--username",
                self.superuser,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {result.stderr.strip()}")

    def _read_log(self) -> str:
        return log_tail(self._log_path)


def _server_user() -> pwd.struct_passwd | None:
    """The account to run the server as: ``None`` (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("OPENPISTA_PG_USER", "postgres")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresNotAvailableError(
            f"PostgreSQL refuses to run as root and there is no {name!r} user to run it as; "
            + _INSTALL_HINT
            + " (which creates the postgres user), or set OPENPISTA_PG_USER"
        ) from None


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to stop the server if this process dies, else ``None``.

    Only from the main thread: the signal fires when the *thread* that started the child
    ends, which for a worker thread may be long before the tests are done.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def request() -> None:
        # Runs in the child after it dropped privileges (a uid change would clear it).
        # SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its backends along.
        prctl(pr_set_pdeathsig, signal.SIGQUIT)

    return request


def _remove_abandoned_clusters() -> None:
    """Stop and delete clusters whose owning test process is gone."""
    for owner_file in Path(tempfile.gettempdir()).glob(f"{_TMP_PREFIX}*/{_OWNER_FILE}"):
        directory = owner_file.parent
        try:
            owner = int(owner_file.read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(owner):
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            postmaster = int((directory / "data" / "postmaster.pid").read_text().split()[0])
            # The pid may have been reused: only signal a postgres serving this directory.
            cmdline = Path(f"/proc/{postmaster}/cmdline").read_bytes()
            if str(directory / "data").encode() in cmdline:
                os.kill(postmaster, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)
