"""One task, one fresh container: create, credential, run, collect, destroy, revoke.

:class:`DockerSandbox` talks to the Docker Engine through the ``docker`` SDK (never the
``docker`` CLI). Every task gets a new container, labelled ``openpista.task=<id>`` and
``openpista.owner=<pid>@<host>``, limited as :class:`~openpista_docker.settings.SandboxLimits`
says, with the task's credential from :func:`openpista.workers.worker_hub` in its environment.
The container is removed and the credential revoked when the task ends, whatever the outcome.
When no engine answers, the task is refused (``fallback = "refuse"``, the default) or runs
as a host subprocess (``fallback = "subprocess"``, with a warning in the result and in the
approval prompt, see :meth:`DockerSandbox.unsandboxed_warning`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import mimetypes
import os
import re
import shutil
import socket
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from openpista.config import home_dir
from openpista.models import Attachment
from openpista.tools import ProcessResult, StreamCapture, ToolError, run_process, tool_environment
from openpista.worker_service import WorkerReports, own_reports
from openpista.workers import WorkerHub, WorkerReport, worker_hub
from openpista_docker.endpoint import CONTAINER_DIR, WorkerEndpoint
from openpista_docker.layout import OUT_DIR, WORKSPACE_DIR
from openpista_docker.settings import DockerSettings, SandboxLimits

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

log = logging.getLogger(__name__)

TASK_LABEL = "openpista.task"
OWNER_LABEL = "openpista.owner"
_LOG_MAX_SIZE = "20m"
_REPORT_GRACE = 60.0
"""Seconds a credential outlives the time limit (it is revoked at the end anyway)."""
UNSANDBOXED = (
    "The task ran WITHOUT the Docker sandbox, as a plain subprocess on the host (no "
    'isolation, no CPU/memory/network limits; set [tools.docker] fallback = "refuse" to '
    "refuse instead)"
)


class DockerUnavailable(Exception):
    """No Docker engine answers at the configured address."""


@dataclass(frozen=True)
class Mount:
    """A host path shown inside the container."""

    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class TaskSpec:
    """What to run: ``argv`` in the container, ``host_argv`` when it falls back to the host."""

    argv: list[str]
    limits: SandboxLimits
    workdir: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    host_argv: list[str] | None = None
    host_cwd: Path | None = None
    host_env: dict[str, str] = field(default_factory=dict)
    stdin: bytes | None = None
    """Given to the command on its standard input (then end of file); ``None``: no input."""


@dataclass(frozen=True)
class OutputFile:
    """A file the task left in ``/out``; ``attachment`` is ``None`` when only listed."""

    name: str
    size: int
    attachment: Attachment | None = None


@dataclass
class TaskResult:
    """How a task ended: its process result, files, worker report and warnings."""

    task_id: str
    mode: Literal["docker", "subprocess"]
    process: ProcessResult
    oom_killed: bool = False
    files: list[OutputFile] = field(default_factory=list)
    files_omitted: int = 0
    report: WorkerReport | None = None
    warnings: list[str] = field(default_factory=list)


def owner_label() -> str:
    """This process, as written in the ``openpista.owner`` label."""
    return f"{os.getpid()}@{socket.gethostname()}"


class DockerSandbox:
    """Runs tasks in fresh containers of one Docker engine (shared by tool and skill runner)."""

    def __init__(
        self,
        settings: DockerSettings,
        workspace: Path,
        hub: WorkerHub | None = None,
        state_dir: Path | None = None,
        env_passthrough: Iterable[str] = (),
        database_url: str | None = None,
    ) -> None:
        """``state_dir`` (default ``home_dir()/docker``) holds the tasks' ``/out`` directories;
        ``env_passthrough`` names what a host fallback run gets besides the safe variables of
        :func:`~openpista.tools.process.tool_environment` (``[tools] env_passthrough``);
        ``database_url`` is where worker reports are stored when no service of the process
        (the daemon's, the TUI's) does (:func:`~openpista.worker_service.own_reports`)."""
        self.settings = settings
        self.database_url = database_url
        self._reports: WorkerReports | None = None
        self.env_passthrough = tuple(env_passthrough)
        self.workspace = workspace
        self.hub = hub or worker_hub()
        self.tasks_dir = (state_dir or home_dir() / "docker") / "tasks"
        self._swept = False
        self._client: docker.DockerClient | None = None
        self._endpoint: WorkerEndpoint | None = None
        self._endpoint_lock: asyncio.Lock | None = None
        self._running: set[str] = set()

    # -- the engine ---------------------------------------------------------------------

    def _connect(self) -> docker.DockerClient:
        import docker
        import requests

        if self._client is not None:
            return self._client
        where = self.settings.docker_host or os.environ.get("DOCKER_HOST") or "the default socket"
        try:
            if self.settings.docker_host:
                client = docker.DockerClient(base_url=self.settings.docker_host, timeout=60)
            else:
                client = docker.from_env(timeout=60)
            client.ping()
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            raise DockerUnavailable(f"no Docker engine answers at {where}: {exc}") from None
        self._client = client
        return client

    async def unsandboxed_warning(self) -> str | None:
        """What an approval prompt must say when a task would run UNSANDBOXED on the host
        (no engine answers and ``fallback = "subprocess"``); ``None`` otherwise."""
        if self.settings.fallback != "subprocess":
            return None
        try:
            await asyncio.to_thread(self._connect)
        except DockerUnavailable as exc:
            return (
                f"{exc}: if approved, this runs UNSANDBOXED on the host, as a plain subprocess "
                f"of openpista (user id {os.getuid()}, its files, its network; "
                '[tools.docker] fallback = "subprocess")'
            )
        return None

    async def endpoint(self) -> WorkerEndpoint:
        """The worker endpoint, started on first use."""
        if self._endpoint_lock is None:
            self._endpoint_lock = asyncio.Lock()
        async with self._endpoint_lock:
            if self._reports is None and self.database_url:
                self._reports = await own_reports(self.hub, self.database_url)
            if self._endpoint is None or not self._endpoint.running:
                endpoint = WorkerEndpoint(self.hub, self.settings.max_report_bytes)
                _LIVE_DIRS.add(endpoint.directory)
                await endpoint.start()
                self._endpoint = endpoint
            return self._endpoint

    async def close(self) -> None:
        """Stop the endpoint, close its own report service and the engine connection."""
        if self._endpoint is not None:
            await self._endpoint.stop()
            _LIVE_DIRS.discard(self._endpoint.directory)
            self._endpoint = None
        if self._reports is not None:
            await self._reports.close()
            self._reports = None
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- one task ----------------------------------------------------------------------

    async def run(self, spec: TaskSpec, session_id: str, channel_id: str = "") -> TaskResult:
        """Run ``spec`` as one task of ``session_id``; raises :class:`ToolError` when it
        cannot run (image missing, daemon absent with ``fallback = "refuse"``)."""
        if not self._swept:
            self._swept = True
            await asyncio.to_thread(self.remove_stale_dirs)
        out_dir = self._make_out_dir()
        grant = self.hub.open_task(
            session_id,
            channel_id,
            ttl=spec.limits.timeout + _REPORT_GRACE,
            output_dir=out_dir,
            max_file_bytes=self.settings.max_attachment_bytes,
        )
        self._running.add(grant.task_id)
        try:
            try:
                client = await asyncio.to_thread(self._connect)
            except DockerUnavailable as exc:
                if self.settings.fallback == "refuse":
                    raise ToolError(
                        f'{exc}; the task did not run ([tools.docker] fallback = "refuse")'
                    ) from None
                warning = f"WARNING: {exc}. {UNSANDBOXED}"
                log.warning("%s", warning)
                result = await self._run_subprocess(spec, grant.task_id, grant.token, out_dir)
                result.warnings.insert(0, warning)
            else:
                result = await self._run_container(
                    client, spec, grant.task_id, grant.token, out_dir
                )
            result.report = await self._report(grant.task_id)
            return result
        finally:
            self.hub.revoke(grant.task_id)
            self._running.discard(grant.task_id)
            _remove_out_dir(out_dir)

    async def _report(self, task_id: str) -> WorkerReport | None:
        """The report the worker sent while its task ran, if any (the task is still open)."""
        try:
            return await self.hub.wait(task_id, timeout=0)
        except TimeoutError:
            return None

    def _worker_env(self, task_id: str, token: str, socket_path: str, out: str) -> dict[str, str]:
        return {
            "OPENPISTA_TASK_ID": task_id,
            "OPENPISTA_TASK_TOKEN": token,
            "OPENPISTA_REPORT_SOCKET": socket_path,
            "OPENPISTA_OUT": out,
        }

    async def _run_container(
        self, client: docker.DockerClient, spec: TaskSpec, task_id: str, token: str, out_dir: Path
    ) -> TaskResult:
        import docker
        import requests

        endpoint = await self.endpoint()
        try:
            options = self._create_options(spec, task_id, token, endpoint, out_dir)
            container = await asyncio.to_thread(self._create, client, spec.limits, options)
            try:
                await asyncio.to_thread(_start, container, spec.stdin)
                status = await asyncio.to_thread(self._wait, container, spec.limits.timeout)
                return await asyncio.to_thread(self._collect, container, task_id, status)
            finally:
                await asyncio.shield(asyncio.to_thread(self._remove, container))
        except (docker.errors.DockerException, requests.RequestException) as exc:
            # The engine may be gone: connect afresh (or fall back) on the next task.
            self._client = None
            explanation = getattr(exc, "explanation", None) or exc
            raise ToolError(f"the Docker engine failed to run the task: {explanation}") from None

    def _create_options(
        self, spec: TaskSpec, task_id: str, token: str, endpoint: WorkerEndpoint, out_dir: Path
    ) -> dict[str, Any]:
        from docker.types import Mount as DockerMount

        limits = spec.limits
        mounts = [
            DockerMount(OUT_DIR, str(out_dir), type="bind"),
            DockerMount(CONTAINER_DIR, str(endpoint.directory), type="bind", read_only=True),
        ]
        if limits.workspace != "none" and self.workspace.is_dir():
            mounts.append(
                DockerMount(
                    WORKSPACE_DIR,
                    str(self.workspace.resolve()),
                    type="bind",
                    read_only=limits.workspace == "ro",
                )
            )
        for extra in spec.mounts:
            mounts.append(
                DockerMount(extra.target, str(extra.source), type="bind", read_only=extra.read_only)
            )
        socket_path = f"{CONTAINER_DIR}/{endpoint.socket_path.name}"
        env = {"HOME": "/tmp", **spec.env, **self._worker_env(task_id, token, socket_path, OUT_DIR)}  # noqa: S108  inside the container: its own tmpfs
        memory = f"{limits.memory_mb}m"
        return {
            "command": spec.argv,
            "user": limits.user,
            "working_dir": spec.workdir
            or (WORKSPACE_DIR if limits.workspace != "none" else "/tmp"),  # noqa: S108  inside the container: its own tmpfs
            "environment": env,
            "labels": {TASK_LABEL: task_id, OWNER_LABEL: owner_label()},
            "network_mode": limits.network,
            "mem_limit": memory,
            "memswap_limit": memory,
            "nano_cpus": int(limits.cpus * 1e9),
            "pids_limit": limits.pids_limit,
            "read_only": limits.read_only_root,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "tmpfs": {"/tmp": f"rw,size={limits.tmpfs_mb}m"},  # noqa: S108  inside the container: its own tmpfs
            "mounts": mounts,
            "stop_signal": "SIGKILL",
            # Standard input only for a task that has some; the SDK adds StdinOnce, so it
            # is closed when the writer detaches.
            "stdin_open": spec.stdin is not None,
            # Bounded logs: a task printing without end must not fill the engine's disk.
            "log_config": {"type": "json-file", "config": {"max-size": _LOG_MAX_SIZE}},
        }

    def _create(
        self, client: docker.DockerClient, limits: SandboxLimits, options: dict[str, Any]
    ) -> Container:
        import docker

        try:
            return client.containers.create(limits.image, **options)
        except docker.errors.ImageNotFound:
            if not self.settings.pull:
                raise ToolError(
                    f"image {limits.image} is not on the Docker engine and [tools.docker] "
                    "pull = false; build or import it first (see docs/sandbox.md)"
                ) from None
        except docker.errors.APIError as exc:
            raise ToolError(f"cannot create the container: {exc.explanation or exc}") from None
        try:
            client.images.pull(limits.image)
        except docker.errors.DockerException as exc:
            raise ToolError(
                f"image {limits.image} is not on the Docker engine and cannot be pulled "
                f"({exc}); build or import it first (see docs/sandbox.md)"
            ) from None
        return client.containers.create(limits.image, **options)

    def _wait(self, container: Container, timeout: float) -> int | None:
        """The exit code, or ``None`` when the time limit killed the container."""
        import docker
        import requests

        try:
            return int(container.wait(timeout=timeout)["StatusCode"])
        except requests.RequestException:
            pass
        with contextlib.suppress(docker.errors.APIError):
            container.kill()
        with contextlib.suppress(docker.errors.APIError, requests.RequestException):
            container.wait(timeout=30)
        return None

    def _collect(self, container: Container, task_id: str, status: int | None) -> TaskResult:
        max_chars = self.settings.max_output_chars
        out, err = StreamCapture(max_chars), StreamCapture(max_chars)
        for capture, which in ((out, "stdout"), (err, "stderr")):
            for chunk in container.logs(
                stdout=which == "stdout", stderr=which == "stderr", stream=True
            ):
                capture.feed(chunk)
        container.reload()
        state = container.attrs.get("State", {})
        process = ProcessResult(
            exit_code=status if status is not None else state.get("ExitCode"),
            stdout=out.result(),
            stderr=err.result(),
            timed_out=status is None,
        )
        files = self._files_from_archive(container)
        return TaskResult(
            task_id=task_id,
            mode="docker",
            process=process,
            oom_killed=bool(state.get("OOMKilled")),
            files=files.files,
            files_omitted=files.omitted,
        )

    def _files_from_archive(self, container: Container) -> _FileCollector:
        import docker

        collector = _FileCollector(self.settings.max_files, self.settings.max_attachment_bytes)
        try:
            chunks, _ = container.get_archive(f"{OUT_DIR}/.")
        except docker.errors.NotFound:
            return collector
        with tarfile.open(fileobj=_ChunkReader(iter(chunks)), mode="r|") as tar:
            for member in tar:
                if member.isfile():
                    name = member.name.removeprefix("./")
                    collector.add(name, member.size, partial(_read_member, tar, member))
        return collector

    def _remove(self, container: Container) -> None:
        import docker
        import requests

        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.APIError, requests.RequestException) as exc:
            log.warning("could not remove container %s: %s", container.short_id, exc)

    # -- without Docker ------------------------------------------------------------------

    async def _run_subprocess(
        self, spec: TaskSpec, task_id: str, token: str, out_dir: Path
    ) -> TaskResult:
        endpoint = await self.endpoint()
        env = {
            **tool_environment(self.env_passthrough),
            **spec.env,
            **spec.host_env,
            **self._worker_env(task_id, token, str(endpoint.socket_path), str(out_dir)),
        }
        if self.hub.report_url:  # the daemon's [workers] endpoint: reachable from the host
            env["OPENPISTA_REPORT_URL"] = self.hub.report_url
        cwd = spec.host_cwd or (self.workspace if self.workspace.is_dir() else None)
        try:
            process = await run_process(
                spec.host_argv or spec.argv,
                stdin=spec.stdin,
                cwd=cwd,
                env=env,
                timeout=spec.limits.timeout,
                max_chars=self.settings.max_output_chars,
            )
        except OSError as exc:
            raise ToolError(f"cannot start the task: {exc.strerror or exc}") from None
        collector = await asyncio.to_thread(self._files_from_dir, out_dir)
        return TaskResult(
            task_id=task_id,
            mode="subprocess",
            process=process,
            files=collector.files,
            files_omitted=collector.omitted,
        )

    def _files_from_dir(self, out_dir: Path) -> _FileCollector:
        collector = _FileCollector(self.settings.max_files, self.settings.max_attachment_bytes)
        for path in sorted(p for p in out_dir.rglob("*") if p.is_file() and not p.is_symlink()):
            collector.add(str(path.relative_to(out_dir)), path.stat().st_size, path.read_bytes)
        return collector

    def _make_out_dir(self) -> Path:
        """A fresh host directory for ``/out``, writable by the worker's (other) user, inside
        a private (0700) ``task-<pid>-*`` directory of :attr:`tasks_dir`."""
        self.tasks_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix=f"task-{os.getpid()}-", dir=self.tasks_dir))
        _LIVE_DIRS.add(private)
        out_dir = private / "out"
        out_dir.mkdir()
        out_dir.chmod(0o777)
        return out_dir

    # -- leaks -------------------------------------------------------------------------

    def remove_stale_dirs(self) -> list[Path]:
        """Remove the task directories (in :attr:`tasks_dir`) and endpoint directories (in
        the system's temporary directory) that a crashed openpista left behind; their paths.

        Only directories with our names (``task-<pid>-*``, ``openpista-docker-<pid>-*``),
        owned by this user, whose process is gone or is this one without using them.
        """
        removed = []
        for parent in (self.tasks_dir, Path(tempfile.gettempdir())):
            try:
                entries = list(parent.iterdir())
            except OSError:
                continue
            for path in entries:
                pid = stale_dir_owner(path)
                if pid is None or path in _LIVE_DIRS:
                    continue
                if pid != os.getpid() and _alive(pid):
                    continue
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
                log.warning("removed a directory a crashed openpista left behind: %s", path)
        return removed

    async def remove_orphans(self) -> list[str]:
        """Remove containers left by a crashed openpista on this host; their names.

        A labelled container is kept when it belongs to a running task of this process,
        to another live openpista process, or to another host.
        """
        try:
            client = await asyncio.to_thread(self._connect)
        except DockerUnavailable as exc:
            log.info("orphan clean-up skipped: %s", exc)
            return []
        return await asyncio.to_thread(self._remove_orphans, client)

    def _remove_orphans(self, client: docker.DockerClient) -> list[str]:
        removed = []
        host = socket.gethostname()
        for container in client.containers.list(all=True, filters={"label": TASK_LABEL}):
            labels = container.labels or {}
            pid_text, _, owner_host = labels.get(OWNER_LABEL, "").partition("@")
            if owner_host and owner_host != host:
                continue
            pid = int(pid_text) if pid_text.isdigit() else 0
            if pid == os.getpid():
                if labels.get(TASK_LABEL) in self._running:
                    continue
            elif pid and _alive(pid):
                continue
            self._remove(container)
            removed.append(container.name or container.short_id)
            log.warning(
                "removed orphan container %s (task %s)", container.name, labels.get(TASK_LABEL)
            )
        return removed


def _start(container: Container, stdin: bytes | None) -> None:
    """Start ``container``; with ``stdin``, attached to its input, which is then closed."""
    if stdin is None:
        container.start()
        return
    attached = container.attach_socket(params={"stdin": 1, "stream": 1})
    # The SDK hands back the hijacked connection's socket.SocketIO (read-only) on unix
    # sockets, a socket elsewhere: write to the socket beneath.
    found: Any = getattr(attached, "_sock", attached)
    raw: socket.socket = found
    try:
        container.start()
        raw.sendall(stdin)
        raw.shutdown(socket.SHUT_WR)
    finally:
        attached.close()
        if raw is not attached:
            raw.close()


def _remove_out_dir(out_dir: Path) -> None:
    _LIVE_DIRS.discard(out_dir.parent)
    shutil.rmtree(out_dir.parent, ignore_errors=True)


def stale_dir_owner(path: Path) -> int | None:
    """The pid in the name of one of our task or endpoint directories, or ``None`` when
    ``path`` is not one (another name, a symlink, another user's)."""
    match = _OUR_DIR.fullmatch(path.name)
    if match is None:
        return None
    try:
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        return None
    return int(match.group(1))


_OUR_DIR = re.compile(r"(?:task|openpista-docker)-([0-9]+)-[A-Za-z0-9_]+")
_LIVE_DIRS: set[Path] = set()
"""Task and endpoint directories in use by this process (kept by :meth:`remove_stale_dirs`)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _FileCollector:
    """Lists the first ``max_files`` files, attached while they fit in ``max_bytes``."""

    def __init__(self, max_files: int, max_bytes: int) -> None:
        self.max_files = max_files
        self.budget = max_bytes
        self.files: list[OutputFile] = []
        self.omitted = 0

    def add(self, name: str, size: int, read: Callable[[], bytes]) -> None:
        if len(self.files) >= self.max_files:
            self.omitted += 1
            return
        attachment = None
        if size <= self.budget:
            self.budget -= size
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            data = base64.b64encode(read()).decode()
            attachment = Attachment(name=name, mime_type=mime, data=data)
        self.files.append(OutputFile(name, size, attachment))


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    return handle.read() if handle is not None else b""


class _ChunkReader(io.RawIOBase):
    """A readable file over the byte chunks the SDK streams (``get_archive``)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size
