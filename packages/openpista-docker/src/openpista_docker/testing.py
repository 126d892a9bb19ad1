"""A private Docker engine for tests and benchmarks: ``dockerd`` plus a busybox base image.

The engine runs with the flags that leave the host alone (``--bridge=none --iptables=false
--ip-forward=false``), keeps its data, exec state and socket under one temporary directory,
and is stopped (and its directory removed) by :meth:`PrivateDockerd.stop`. Images cannot be
pulled here, so :func:`import_busybox_image` builds one with ``docker import`` from a rootfs
tarball made of Debian's ``busybox-static`` and its applet links::

    with PrivateDockerd.start() as engine:
        image = import_busybox_image(engine.client())
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from openpista_testing.processes import log_tail, stop_process

if TYPE_CHECKING:
    import docker

BUSYBOX = Path("/bin/busybox")
BASE_IMAGE = "openpista-test-busybox:latest"
PYTHON_IMAGE = "openpista-test-python:latest"
_START_SECONDS = 30.0
_STOP_SECONDS = 20.0
_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
_GROUP = b"root:x:0:\nnogroup:x:65534:\n"


class DockerdError(RuntimeError):
    """The private engine could not start; the message says why and what to install."""


class PrivateDockerd:
    """A ``dockerd`` process of our own, reachable at :attr:`host` (``unix://...``)."""

    def __init__(self, root: Path, process: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.process = process
        self.socket = root / "docker.sock"

    @property
    def host(self) -> str:
        """The ``docker_host`` URL of this engine."""
        return f"unix://{self.socket}"

    @classmethod
    def start(cls) -> PrivateDockerd:
        """Start an engine in a fresh temporary directory and wait until it answers."""
        binary = shutil.which("dockerd") or (
            "/usr/sbin/dockerd" if os.path.exists("/usr/sbin/dockerd") else None
        )
        if binary is None:
            raise DockerdError("dockerd is not installed (Debian package docker.io)")
        # A short path: unix socket paths are limited to 108 bytes.
        root = Path(tempfile.mkdtemp(prefix="opd-", dir="/tmp"))
        log = (root / "dockerd.log").open("wb")
        argv = [
            binary,
            "--bridge=none",
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'dockerd.pid'}",
            f"--host=unix://{root / 'docker.sock'}",
            "--log-level=warn",
        ]
        try:
            process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        except OSError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise DockerdError(f"cannot run {binary}: {exc}") from None
        finally:
            log.close()
        engine = cls(root, process)
        try:
            engine._wait_ready()
        except BaseException:
            engine.stop()
            raise
        return engine

    def _wait_ready(self) -> None:
        import docker

        deadline = time.monotonic() + _START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DockerdError(
                    f"dockerd exited with code {self.process.returncode} at start "
                    f"(it needs root and cgroups):\n{self.log_tail()}"
                )
            if self.socket.exists():
                with contextlib.suppress(docker.errors.DockerException):
                    client = docker.DockerClient(base_url=self.host, timeout=5)
                    try:
                        if client.ping():
                            return
                    finally:
                        client.close()
            time.sleep(0.05)
        raise DockerdError(
            f"dockerd did not answer within {_START_SECONDS:g} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        """The last lines dockerd logged."""
        return log_tail(self.root / "dockerd.log", lines)

    def client(self) -> docker.DockerClient:
        """A docker SDK client of this engine (close it when done)."""
        import docker

        return docker.DockerClient(base_url=self.host, timeout=60)

    def stop(self) -> None:
        """Remove every container, stop the engine and delete its directory."""
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                client = self.client()
                try:
                    for container in client.containers.list(all=True):
                        container.remove(force=True)
                finally:
                    client.close()
        # Killed as a group if need be: its containerd and shims go with it.
        stop_process(self.process, signal.SIGTERM, wait=_STOP_SECONDS)
        # Mounts dockerd left behind (it was killed) would make rmtree fail half way.
        _unmount_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivateDockerd:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _unmount_under(root: Path) -> None:
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    points = [line.split()[1] for line in mounts if len(line.split()) > 1]
    for point in sorted((p for p in points if p.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def busybox_rootfs(with_python: bool = False) -> bytes:
    """A tarball of a minimal root file system: busybox, its applet links, passwd, /tmp;
    ``with_python`` adds the host's Debian ``python3`` (binary, libraries, standard library)."""
    if not BUSYBOX.is_file():
        raise DockerdError(f"{BUSYBOX} is missing (Debian package busybox-static)")
    listing = subprocess.run(
        [str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, mode in _DIRECTORIES:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(str(BUSYBOX), "bin/busybox")
        for applet in listing:
            if applet == "bin/busybox":
                continue
            info = tarfile.TarInfo(applet)
            info.type, info.linkname = tarfile.SYMTYPE, "/bin/busybox"
            tar.addfile(info)
        for name, data in (("etc/passwd", _PASSWD), ("etc/group", _GROUP)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        if with_python:
            _add_python(tar)
    return buffer.getvalue()


_PYTHON = Path("/usr/bin/python3.11")
_PYTHON_SKIPPED = frozenset(
    {"test", "idlelib", "tkinter", "ensurepip", "lib2to3", "dist-packages", "site-packages"}
)


def _add_python(tar: tarfile.TarFile) -> None:
    if not _PYTHON.is_file():
        raise DockerdError(f"{_PYTHON} is missing (Debian package python3.11-minimal)")
    libraries = subprocess.run(["ldd", str(_PYTHON)], capture_output=True, text=True, check=True)
    for line in libraries.stdout.splitlines():
        path = line.split("=>")[-1].split("(")[0].strip()
        if path.startswith("/"):
            tar.add(os.path.realpath(path), path.lstrip("/"))
    tar.add(str(_PYTHON), "usr/bin/python3")
    stdlib = _PYTHON.parent.parent / "lib" / "python3.11"

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = set(Path(info.name).parts)
        return None if parts & _PYTHON_SKIPPED or "__pycache__" in parts else info

    tar.add(str(stdlib), str(stdlib).lstrip("/"), filter=keep)


_DIRECTORIES = (
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("etc", 0o755),
    ("tmp", 0o1777),
    ("root", 0o700),
)


def import_busybox_image(
    client: docker.DockerClient, tag: str = BASE_IMAGE, with_python: bool = False
) -> str:
    """``docker import`` the busybox rootfs (see :func:`busybox_rootfs`) as ``tag``."""
    repository, _, version = tag.partition(":")
    client.api.import_image_from_data(
        busybox_rootfs(with_python), repository=repository, tag=version or None
    )
    return tag


@contextlib.contextmanager
def docker_engine_with_base_image() -> Iterator[tuple[PrivateDockerd, str]]:
    """A private engine holding the busybox base image; stopped on exit, even on failure."""
    engine = PrivateDockerd.start()
    try:
        client = engine.client()
        try:
            image = import_busybox_image(client)
        finally:
            client.close()
        yield engine, image
    finally:
        engine.stop()
