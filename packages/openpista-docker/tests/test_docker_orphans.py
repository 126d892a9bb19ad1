"""Orphan clean-up on daemon start, through the plugin's ``daemon_started`` hook."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from openpista.config import Settings
from openpista_docker import plugin
from openpista_docker.sandbox import OWNER_LABEL, TASK_LABEL
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
    try:
        await plugin.daemon_started(config=config, services={})
        left = sorted(c.name for c in client.containers.list(all=True))
        assert left == ["not-openpista", "other-host", "other-live-openpista"]
    finally:
        await plugin.runtime_closing(config=config)
        for container in client.containers.list(all=True):
            container.remove(force=True)


async def test_daemon_start_without_docker_only_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = Settings(tools={"docker": {"docker_host": f"unix://{tmp_path}/none.sock"}})
    try:
        with caplog.at_level(logging.INFO):
            await plugin.daemon_started(config=config, services={})
    finally:
        await plugin.runtime_closing(config=config)
    assert "orphan clean-up skipped: no Docker engine answers" in caplog.text
