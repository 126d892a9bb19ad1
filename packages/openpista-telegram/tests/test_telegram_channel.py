"""The Telegram channel end to end in one process: real aiogram against the Bot API
emulator, the real gateway, litellm against the LLM emulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from openpista.testing.emulator import LlmEmulator
from openpista.testing.telegram_emulator import TelegramEmulator, User
from openpista_telegram.adapter import TelegramAdapter

Serve = Callable[..., Awaitable[TelegramAdapter]]


async def eventually(check: Callable[[], Any], wait: float = 20.0) -> Any:
    deadline = time.monotonic() + wait
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition never became true")
        await asyncio.sleep(0.02)


async def test_private_chat_round_trip(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("hello Alice", delay=0.5)
    await serve()
    telegram.send_text(alice.id, "hi there", user=alice)
    [reply] = await telegram.wait_for_sent(1, chat_id=alice.id)
    assert reply.method == "sendMessage"
    assert reply.text == "hello Alice"
    assert "parse_mode" not in reply.params  # plain text: model output cannot break a send
    assert (alice.id, "typing") in telegram.actions
    assert llm_emulator.requests[0].json["messages"][-1]["content"] == "hi there"
