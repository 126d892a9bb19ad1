"""Answers whose attachments name host files: nothing but the outbox file reaches the browser."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from openpista.gateway.gateway import Gateway
from openpista.plugins import PluginHost
from openpista.runtime import Runtime
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.hostile import ALLOWED, HOSTILE_NAMES, attachment_tool
from openpista_web.testing import greeted

Serve = Callable[..., Awaitable[Any]]


async def test_hostile_attachment_paths_never_reach_the_browser(
    serve_web: Serve, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    (tmp_path / "workspace").mkdir()
    runtime = await Runtime.open(
        emulator_settings(llm_emulator, tmp_path), PluginHost.load(entry_points=False)
    )
    hostile = attachment_tool(tmp_path)
    runtime.toolbox.tools.register(hostile.tool)
    gateway = Gateway(runtime, [])
    try:
        await gateway.start()
        served = await serve_web(ctx=gateway)
        gateway.adapters.append(served.adapter)
        llm_emulator.reply_tool_calls([(hostile.wire_name, {})])
        llm_emulator.reply_text("here are your files")
        frames: list[str] = []
        async with served.connect() as ws:
            await greeted(ws)
            await ws.send('{"type": "message", "text": "send me the files"}')
            while True:
                frames.append(str(await ws.recv()))
                frame = json.loads(frames[-1])
                if frame["type"] == "response" and frame["response"]["kind"] == "answer":
                    final = frame["response"]
                    break
    finally:
        await gateway.stop(deadline=0)
        await runtime.close()
    [chart] = final["attachments"]
    assert base64.b64decode(chart["data"]) == ALLOWED
    for name in HOSTILE_NAMES:
        assert f"attachment {name!r} was not sent" in final["text"]
    received = b"".join(
        base64.b64decode(item["data"])
        for text in frames
        for item in _attachments(json.loads(text))
        if item.get("data")
    )
    for secret in hostile.secrets:
        assert secret not in received
        assert secret.decode() not in "".join(frames)


def _attachments(frame: dict[str, Any]) -> list[dict[str, Any]]:
    response = frame.get("response") or {}
    result = response.get("result") or {}
    return [*response.get("attachments", []), *result.get("attachments", [])]
