"""Without a Docker engine: refused by default; with the subprocess opt-in, the approval
prompt says the call would run UNSANDBOXED on the host before anything runs."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openpista.config import Settings
from openpista.gateway.approvals import ApprovalBroker
from openpista.gateway.gateway import Gateway
from openpista.models import ApprovalRequest
from openpista.plugins import PluginHost
from openpista.runtime import Runtime
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import emulator_config
from openpista_testing.emulator import LlmEmulator

OpenRemote = Callable[[dict[str, Any]], Awaitable[LoopbackAdapter]]


@pytest.fixture
async def remote_chat(tmp_path: Path, llm_emulator: LlmEmulator) -> AsyncIterator[OpenRemote]:
    """``await remote_chat(docker_table)``: a gateway with the docker plugin, serving a
    remote channel (the default policy asks), on an engine address where none answers."""
    opened: list[tuple[Gateway, Runtime]] = []

    async def start(table: dict[str, Any]) -> LoopbackAdapter:
        (tmp_path / "workspace").mkdir(exist_ok=True)
        config = tomllib.loads(emulator_config(llm_emulator, tmp_path))
        config["tools"] = {"docker": {"docker_host": f"unix://{tmp_path}/none.sock", **table}}
        settings = Settings(**config)
        runtime = await Runtime.open(
            settings, PluginHost.load(environ={"OPENPISTA_LOAD_PLUGINS": "docker"})
        )
        adapter = LoopbackAdapter("remote:")
        broker = ApprovalBroker.from_settings(runtime.memory, settings.policy)
        gateway = Gateway(runtime, [adapter], approvals=broker)
        opened.append((gateway, runtime))
        await gateway.start()
        return adapter

    yield start
    for gateway, runtime in opened:
        await gateway.stop(deadline=0)
        await runtime.close()


async def approval(adapter: LoopbackAdapter) -> ApprovalRequest:
    return (await adapter.prompt("1", wait=20)).request


async def test_the_opt_in_fallback_is_announced_in_the_approval_prompt(
    remote_chat: OpenRemote, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    marker = tmp_path / "ran-on-the-host"
    llm_emulator.reply_tool_calls([("container_run", {"command": f"touch {marker}"})])
    llm_emulator.reply(lambda body: body["messages"][-1]["content"])
    adapter = await remote_chat({"fallback": "subprocess"})
    await adapter.say("1", "run it in the sandbox")
    request = await approval(adapter)
    [warning] = request.warnings
    assert warning.startswith(f"no Docker engine answers at unix://{tmp_path}/none.sock")
    assert "if approved, this runs UNSANDBOXED on the host" in warning
    assert "UNSANDBOXED on the host" in request.prompt()
    assert not marker.exists()
    await adapter.say("1", "/approve")
    await adapter.answer("1")
    answer = await adapter.answer("1")
    assert "WITHOUT the Docker sandbox" in answer.text
    assert marker.exists()


async def test_by_default_nothing_runs_without_the_engine(
    remote_chat: OpenRemote, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    marker = tmp_path / "ran-on-the-host"
    llm_emulator.reply_tool_calls([("container_run", {"command": f"touch {marker}"})])
    llm_emulator.reply(lambda body: body["messages"][-1]["content"])
    adapter = await remote_chat({})
    await adapter.say("1", "run it in the sandbox")
    request = await approval(adapter)
    assert request.warnings == []
    await adapter.say("1", "/approve")
    await adapter.answer("1")
    answer = await adapter.answer("1")
    assert 'the task did not run ([tools.docker] fallback = "refuse")' in answer.text
    assert not marker.exists()
