"""Fixtures of openpista-docker's tests: a real Docker engine started for the session.

``dockerd`` (Debian ``docker.io``) runs with the host-safe flags and a busybox image made
with ``docker import`` (``busybox-static``); see ../debian-packages. When it cannot start the
tests fail with dockerd's own message: they are never skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from openpista.models import ToolCall, ToolResult
from openpista.tools.registry import ToolRegistry
from openpista_docker.sandbox import DockerSandbox
from openpista_docker.settings import DockerSettings
from openpista_docker.testing import PrivateDockerd, docker_engine_with_base_image
from openpista_docker.tool import make_container_run_tool


@pytest.fixture(scope="session")
def engine_and_image() -> Iterator[tuple[PrivateDockerd, str]]:
    """The session's Docker engine and the tag of its busybox image."""
    with docker_engine_with_base_image() as found:
        yield found


@pytest.fixture(scope="session")
def engine(engine_and_image: tuple[PrivateDockerd, str]) -> PrivateDockerd:
    return engine_and_image[0]


@pytest.fixture(scope="session")
def image(engine_and_image: tuple[PrivateDockerd, str]) -> str:
    return engine_and_image[1]


@pytest.fixture(autouse=True)
def openpista_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test keeps openpista's state (task directories) in its own home."""
    home = tmp_path / "home"
    monkeypatch.setenv("OPENPISTA_HOME", str(home))
    return home


@pytest.fixture
def client(engine: PrivateDockerd) -> Iterator[docker.DockerClient]:
    """A client of the session's engine, for looking at what the sandbox left."""
    found = engine.client()
    try:
        yield found
    finally:
        found.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace the container's unprivileged user may read (pytest's dirs are 0700)."""
    folder = tmp_path / "workspace"
    folder.mkdir()
    folder.chmod(0o755)
    (folder / "notes.txt").write_text("buy oat milk\n")
    (folder / "notes.txt").chmod(0o644)
    return folder


@pytest.fixture
async def make_sandbox(
    engine: PrivateDockerd, image: str, workspace: Path, tmp_path: Path
) -> AsyncIterator[Callable[..., DockerSandbox]]:
    """``make_sandbox(**options)``: a sandbox on the session's engine, storing its workers'
    reports in the test's database (as ``openpista run --no-daemon`` does), closed
    afterwards."""
    made: list[DockerSandbox] = []
    database = f"sqlite+aiosqlite:///{tmp_path}/reports.db"

    def make(**options: Any) -> DockerSandbox:
        values = {"docker_host": engine.host, "image": image, "pull": False, **options}
        settings = DockerSettings.model_validate(values)
        sandbox = DockerSandbox(settings, workspace, database_url=database)
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        await sandbox.close()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., DockerSandbox]) -> DockerSandbox:
    """A sandbox with the default limits and the busybox image."""
    return make_sandbox()


Call = Callable[..., Awaitable[ToolResult]]


@pytest.fixture
def call() -> Call:
    """``await call(sandbox, **arguments)``: ``container.run`` through a registry, as the
    agent calls it."""

    async def dispatch(sandbox: DockerSandbox, **arguments: Any) -> ToolResult:
        registry = ToolRegistry([make_container_run_tool(sandbox.settings, lambda: sandbox)])
        return await registry.dispatch(ToolCall(id="c1", name="container.run", arguments=arguments))

    return dispatch
