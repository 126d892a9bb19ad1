"""Orphan clean-up on daemon start, through the plugin's ``daemon_started`` hook."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from openpista.config import Settings
from openpista.plugin_context import PluginContext
from openpista_docker import plugin
from openpista_docker.sandbox import OWNER_LABEL, TASK_LABEL, DockerSandbox, TaskSpec
from openpista_docker.testing import PrivateDockerd


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of another process that is alive (another openpista, as far as labels go)."""
    process = subprocess.Popen(["sleep", "60"])
    yield process.pid
    process.kill()
    process.wait()


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def labelled(client: docker.DockerClient, image: str, name: str, owner: str) -> None:
    client.containers.create(
        image, ["sleep", "60"], name=name, labels={TASK_LABEL: name, OWNER_LABEL: owner}
    ).start()


async def test_daemon_start_removes_only_the_orphans(
    engine: PrivateDockerd, image: str, client: docker.DockerClient, live_pid: int, tmp_path: Path
) -> None:
    host = socket.gethostname()
    labelled(client, image, "crashed", f"{dead_pid()}@{host}")
    labelled(client, image, "ours-but-not-running", f"{os.getpid()}@{host}")
    labelled(client, image, "other-live-openpista", f"{live_pid}@{host}")
    labelled(client, image, "other-host", "1@elsewhere")
    client.containers.create(image, ["true"], name="not-openpista")
    config = Settings(
        agent={"workspace": tmp_path},
        tools={"docker": {"docker_host": engine.host, "image": image}},
    )
    context = PluginContext(config)
    try:
        await plugin.daemon_started(context=context)
        left = sorted(c.name for c in client.containers.list(all=True))
        assert left == ["not-openpista", "other-host", "other-live-openpista"]
    finally:
        await context.close()
        for container in client.containers.list(all=True):
            container.remove(force=True)


async def test_daemon_start_without_docker_only_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = Settings(tools={"docker": {"docker_host": f"unix://{tmp_path}/none.sock"}})
    context = PluginContext(config)
    try:
        with caplog.at_level(logging.INFO):
            await plugin.daemon_started(context=context)
    finally:
        await context.close()
    assert "orphan clean-up skipped: no Docker engine answers" in caplog.text


def leftover(parent: Path, name: str) -> Path:
    """A directory as a crashed run leaves it: a file inside, like a task's ``out``."""
    folder = parent / name
    (folder / "out").mkdir(parents=True)
    (folder / "out" / "result.txt").write_text("half-written")
    return folder


async def test_start_removes_the_task_directories_a_crashed_run_left(
    tmp_path: Path, openpista_home: Path, live_pid: int
) -> None:
    tasks = openpista_home / "docker" / "tasks"
    temp = Path(tempfile.gettempdir())
    crashed = dead_pid()
    stale = [
        leftover(tasks, f"task-{crashed}-abc_1"),
        leftover(temp, f"openpista-docker-{crashed}-xyz_2"),
    ]
    kept = [
        leftover(tasks, f"task-{live_pid}-abc_3"),
        leftover(temp, f"openpista-docker-{live_pid}-xyz_4"),
        leftover(tasks, f"unrelated-{crashed}-abc"),
        leftover(temp, f"openpista-out-{crashed}-abc"),
    ]
    (temp / f"openpista-docker-{crashed}-lnk_5").symlink_to(tmp_path)
    kept.append(temp / f"openpista-docker-{crashed}-lnk_5")
    config = Settings(
        agent={"workspace": tmp_path},
        tools={"docker": {"docker_host": f"unix://{tmp_path}/none.sock"}},
    )
    context = PluginContext(config)
    try:
        await plugin.daemon_started(context=context)
        assert [path.exists() for path in stale] == [False, False]
        assert all(path.exists() for path in kept)
        assert (tmp_path / "home").exists()
    finally:
        await context.close()
        for path in [*stale, *kept]:
            if path.is_symlink():
                path.unlink()
            else:
                shutil.rmtree(path, ignore_errors=True)


async def test_a_task_removes_its_directory_and_the_next_run_sweeps_older_ones(
    make_sandbox: Callable[..., DockerSandbox], openpista_home: Path
) -> None:
    tasks = openpista_home / "docker" / "tasks"
    crashed = leftover(tasks, f"task-{dead_pid()}-abc_1")
    sandbox = make_sandbox()
    spec = TaskSpec(argv=["sh", "-c", "echo x > /out/x.txt"], limits=sandbox.settings.limits())
    result = await sandbox.run(spec, "session-1")
    assert [f.name for f in result.files] == ["x.txt"]
    assert not crashed.exists()
    assert list(tasks.iterdir()) == []
    assert not (await sandbox.endpoint()).directory.name.startswith("task-")
