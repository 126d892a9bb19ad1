"""Answers whose attachments name host files: nothing but the outbox file reaches Telegram."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from openpista_telegram.adapter import TelegramAdapter
from openpista_telegram.testing import TelegramEmulator, User
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways
from openpista_testing.hostile import ALLOWED, HOSTILE_NAMES, attachment_tool

Serve = Callable[..., Awaitable[TelegramAdapter]]


async def test_hostile_attachment_paths_never_reach_the_chat(
    serve: Serve,
    gateways: Gateways,
    telegram: TelegramEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    tmp_path: Path,
) -> None:
    await serve()
    hostile = attachment_tool(tmp_path)
    gateways.opened[-1].runtime.toolbox.tools.register(hostile.tool)
    llm_emulator.reply_tool_calls([(hostile.wire_name, {})])
    llm_emulator.reply_text("here are your files")
    telegram.send_text(alice.id, "send me the files", user=alice)
    sent = await telegram.wait_for_sent(2, chat_id=alice.id)
    assert [m.method for m in sent] == ["sendMessage", "sendPhoto"]
    assert sent[1].file == ALLOWED
    assert sent[0].text.startswith("here are your files")
    for name in HOSTILE_NAMES:
        assert f"attachment {name!r} was not sent" in sent[0].text
    for message in telegram.sent:
        for secret in hostile.secrets:
            assert secret not in (message.file or b"")
            assert secret.decode() not in message.text
