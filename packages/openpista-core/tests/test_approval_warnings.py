"""Tools add warnings to their approval requests (``Tool.approval_warning``), shown before
anything runs; a check that fails is a warning too."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from openpista.gateway.approvals import ApprovalBroker
from openpista.gateway.gateway import Gateway
from openpista.models import ApprovalRequest, ToolCall
from openpista.plugins import PluginHost
from openpista.runtime import Runtime
from openpista.tools.registry import ToolRegistry, tool
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator


def touching(marker: Path) -> Any:
    @tool("test.touch")
    async def touch() -> str:
        """Create the marker file."""
        await asyncio.to_thread(marker.touch)
        return "touched"

    return touch


async def test_the_approval_request_carries_the_tools_warning_before_it_runs(
    tmp_path: Path, llm_emulator: LlmEmulator
) -> None:
    marker = tmp_path / "ran"
    asked: list[dict[str, Any]] = []

    async def warn(arguments: dict[str, Any]) -> str | None:
        asked.append(arguments)
        return "this would run UNSANDBOXED on the host"

    (tmp_path / "workspace").mkdir()
    settings = emulator_settings(llm_emulator, tmp_path)
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    runtime.toolbox.tools.register(replace(touching(marker), approval_warning=warn))
    llm_emulator.reply_tool_calls([("test_touch", {})])
    llm_emulator.reply(lambda body: body["messages"][-1]["content"])
    adapter = LoopbackAdapter("remote:")
    broker = ApprovalBroker.from_settings(runtime.memory, settings.policy)
    gateway = Gateway(runtime, [adapter], approvals=broker)
    await gateway.start()
    try:
        await adapter.say("1", "touch it")
        request = (await adapter.prompt("1")).request
        assert request.warnings == ["this would run UNSANDBOXED on the host"]
        assert "\n⚠️ this would run UNSANDBOXED on the host\nReply /approve" in request.prompt()
        assert asked == [{}]
        assert not marker.exists()
        await adapter.say("1", "/deny")
        await adapter.answer("1")
        answer = await adapter.answer("1")
        assert "the user denied test.touch" in answer.text
        assert not marker.exists()
    finally:
        await gateway.stop(deadline=0)
        await runtime.close()


async def test_a_failing_check_is_itself_a_warning_and_tools_without_one_add_none(
    tmp_path: Path,
) -> None:
    async def broken(arguments: dict[str, Any]) -> str | None:
        raise ConnectionError("engine socket vanished")

    async def quiet(arguments: dict[str, Any]) -> str | None:
        return None

    registry = ToolRegistry(
        [
            replace(touching(tmp_path / "a"), approval_warning=broken),
            replace(touching(tmp_path / "b"), name="test.quiet", approval_warning=quiet),
            replace(touching(tmp_path / "c"), name="test.plain"),
        ]
    )
    assert await registry.approval_warnings(ToolCall(id="1", name="test.touch")) == [
        "test.touch could not check how it would run: ConnectionError: engine socket vanished"
    ]
    assert await registry.approval_warnings(ToolCall(id="2", name="test.quiet")) == []
    assert await registry.approval_warnings(ToolCall(id="3", name="test.plain")) == []
    assert await registry.approval_warnings(ToolCall(id="4", name="missing")) == []
    assert ApprovalRequest(id="x", tool="t").prompt().count("⚠️") == 0
