"""Answers whose attachments name host files: nothing but the outbox file reaches the device."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openpista.config import PolicySettings, Settings
from openpista.files import turn_output_dir
from openpista.models import Answer, ToolProgress
from openpista_mobile.adapter import MobileAdapter
from openpista_mobile.client import MobileClient
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways
from openpista_testing.hostile import HOSTILE_NAMES, attachment_tool

Connect = Callable[..., Awaitable[MobileClient]]


@pytest.fixture(autouse=True)
def tools_run_unasked(settings: Settings) -> None:
    settings.policy = PolicySettings(remote="allow")


async def test_hostile_attachment_paths_never_reach_the_device(
    connect: Connect,
    mobile: MobileAdapter,
    gateways: Gateways,
    llm_emulator: LlmEmulator,
    tmp_path: Path,
) -> None:
    hostile = attachment_tool(tmp_path)
    gateways.opened[-1].runtime.toolbox.tools.register(hostile.tool)
    llm_emulator.reply_tool_calls([(hostile.wire_name, {})])
    llm_emulator.reply_text("here are your files")
    client = await connect()
    responses = [r async for r in client.ask("send me the files")]
    final = responses[-1]
    assert isinstance(final, Answer)
    outbox = turn_output_dir(final.session_id)
    assert [(a.name, a.path) for a in final.attachments] == [
        ("chart.png", str(outbox / "chart.png"))
    ]
    for name in HOSTILE_NAMES:
        assert f"attachment {name!r} was not sent" in final.text
    received: list[Any] = [
        *final.attachments,
        *(
            item
            for response in responses
            if isinstance(response, ToolProgress) and response.result is not None
            for item in response.result.attachments
        ),
    ]
    assert {item.path for item in received} == {str(outbox / "chart.png")}
    assert all(item.url is None for item in received)
    for secret in hostile.secrets:
        assert all(secret.decode() not in response.model_dump_json() for response in responses)
