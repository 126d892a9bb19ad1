"""Answers whose attachments name host files: nothing but the outbox file reaches WhatsApp."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from openpista.config import PolicySettings
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways
from openpista_testing.hostile import ALLOWED, HOSTILE_NAMES, attachment_tool
from openpista_whatsapp.adapter import WhatsAppAdapter
from openpista_whatsapp.settings import load_whatsapp_config
from openpista_whatsapp.testing import WhatsAppEmulator, signed_post, text_payload

NUMBER = "111111"
USER = "4915550001"


async def test_hostile_attachment_paths_never_reach_the_chat(
    tmp_path: Path,
    llm_emulator: LlmEmulator,
    whatsapp_table: Callable[..., dict[str, Any]],
    gateways: Gateways,
    graph: WhatsAppEmulator,
) -> None:
    table = whatsapp_table(allowed_numbers=[USER])
    adapter = WhatsAppAdapter(load_whatsapp_config(table))
    settings = emulator_settings(llm_emulator, tmp_path)
    settings.policy = PolicySettings(remote="allow")
    gateway = await gateways.start(settings, adapter)
    hostile = attachment_tool(tmp_path)
    gateway.runtime.toolbox.tools.register(hostile.tool)
    llm_emulator.reply_tool_calls([(hostile.wire_name, {})])
    llm_emulator.reply_text("here are your files")
    body, headers = signed_post(
        text_payload(NUMBER, USER, "send me the files"), table["app_secret"]
    )
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"http://127.0.0.1:{adapter.port}/webhook", content=body, headers=headers
        )
    assert answer.status_code == 200
    sent = await graph.wait_for_sent(2)
    texts = [s.body["text"]["body"] for s in sent if s.body.get("type") == "text"]
    assert texts[0].startswith("here are your files")
    for name in HOSTILE_NAMES:
        assert f"attachment {name!r} was not sent" in texts[0]
    assert [media.data for media in graph.media.values()] == [ALLOWED]
    for secret in hostile.secrets:
        assert all(secret.decode() not in str(s.body) for s in graph.sent)
