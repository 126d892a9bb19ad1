"""End to end: the installed ``openpista`` runs a skill naming an ``image:`` in a container."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import pytest

from openpista_docker.sandbox import TASK_LABEL
from openpista_docker.testing import PrivateDockerd
from openpista_testing.cli import Cli
from openpista_testing.emulator import LlmEmulator

pytestmark = pytest.mark.e2e

SKILL = """---
description: Shout a text back, from inside a container.
image: {image}
memory_mb: 64
parameters:
  properties:
    text: {{type: string}}
  required: [text]
---
Use it to shout.
"""
RUN_SH = """echo "$1" | tr a-z A-Z
echo "user $(id -u) in $(pwd), skill at $OPENPISTA_SKILL_DIR"
touch /workspace/x 2>/dev/null || echo "workspace read-only"
"""


def last_tool_output(body: dict[str, Any]) -> str:
    return "The tool said: " + [m["content"] for m in body["messages"] if m["role"] == "tool"][-1]


@pytest.fixture
def docker_cli(
    tmp_path: Path, llm_emulator: LlmEmulator, engine: PrivateDockerd, image: str
) -> Cli:
    """The installed CLI loading only this plugin, on the session's engine, with a skill."""
    cli = Cli.isolated(tmp_path / "home", llm_emulator)
    cli.env["OPENPISTA_LOAD_PLUGINS"] = "docker"
    cli.write_config(
        cli.config.read_text()
        + f'\n[tools.docker]\ndocker_host = "{engine.host}"\nimage = "{image}"\npull = false\n'
    )
    folder = cli.home / "workspace" / "shout"
    folder.mkdir()
    (folder / "SKILL.md").write_text(SKILL.format(image=image))
    (folder / "run.sh").write_text(RUN_SH)
    return cli


def test_the_agent_runs_an_image_skill_in_a_container(
    docker_cli: Cli, llm_emulator: LlmEmulator, client: docker.DockerClient
) -> None:
    llm_emulator.reply_tool_calls([("skill_shout", {"text": "hello"})])
    llm_emulator.reply(last_tool_output)

    done = docker_cli("run", "-e", "shout hello")

    assert done.returncode == 0, done.stderr
    assert '{"TEXT": "HELLO"}' in done.stdout
    assert "user 65534 in /skill, skill at /skill" in done.stdout
    assert "workspace read-only" in done.stdout
    tools = [tool["function"]["name"] for tool in llm_emulator.requests[0].json["tools"]]
    assert "skill_shout" in tools
    assert "container_run" in tools
    assert client.containers.list(all=True, filters={"label": TASK_LABEL}) == []


def test_the_agent_calls_container_run(docker_cli: Cli, llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_tool_calls([("container_run", {"command": "echo 6x7=$((6*7))"})])
    llm_emulator.reply(last_tool_output)

    done = docker_cli("run", "-e", "compute 6x7 in a sandbox")

    assert done.returncode == 0, done.stderr
    assert "The tool said: exit code: 0\n--- stdout ---\n6x7=42" in done.stdout


def test_a_skill_over_its_memory_limit_is_a_clear_error(
    docker_cli: Cli, llm_emulator: LlmEmulator
) -> None:
    (docker_cli.home / "workspace" / "shout" / "run.sh").write_text(
        "dd if=/dev/zero of=/dev/null bs=512M count=1\n"
    )
    llm_emulator.reply_tool_calls([("skill_shout", {"text": "x"})])
    llm_emulator.reply(last_tool_output)

    done = docker_cli("run", "-e", "shout")

    assert done.returncode == 0, done.stderr
    assert "the container ran out of memory (limit 64 MB) and was killed" in done.stdout
