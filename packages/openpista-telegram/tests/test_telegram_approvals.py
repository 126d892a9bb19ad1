"""Approval buttons against the Bot API emulator and the real gateway: a press counts whatever
happens to its pop-up answer, and the buttons go on every way a request ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from openpista.buttons import ANSWERED
from openpista.config import PolicySettings
from openpista_telegram.adapter import TelegramAdapter
from openpista_telegram.testing import SentMessage, TelegramEmulator, User
from openpista_testing.emulator import LlmEmulator
from openpista_testing.polling import eventually

Serve = Callable[..., Awaitable[TelegramAdapter]]
TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"


async def ask(
    serve: Serve,
    telegram: TelegramEmulator,
    llm_emulator: LlmEmulator,
    user: User,
    approval_timeout: float = 30,
) -> tuple[SentMessage, str]:
    """Have the agent ask to run a command; returns the prompt and its request id."""
    llm_emulator.reply_tool_calls([("system_run", {"command": "echo approved-run"})])
    llm_emulator.reply(lambda body: "tool said: " + body["messages"][-1]["content"])
    await serve(policy=PolicySettings(remote="ask", approval_timeout=approval_timeout))
    telegram.send_text(user.id, "run it", user=user)
    [prompt] = await telegram.wait_for_sent(1, chat_id=user.id)
    assert prompt.reply_markup is not None
    approve = prompt.reply_markup["inline_keyboard"][0][0]["callback_data"]
    return prompt, approve.removeprefix("approve:")


def buttons_removed(telegram: TelegramEmulator, prompt: SentMessage) -> list[dict[str, Any]]:
    return [e for e in telegram.edits if e["message_id"] == str(prompt.message_id)]


async def test_a_press_counts_even_when_its_answer_fails(
    serve: Serve,
    telegram: TelegramEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    prompt, request_id = await ask(serve, telegram, llm_emulator, alice)
    caplog.set_level(logging.INFO)
    telegram.fail_next(400, TOO_OLD, method="answerCallbackQuery")  # a press handled late
    telegram.press_button(alice.id, prompt.message_id, f"approve:{request_id}", user=alice)
    sent = await telegram.wait_for_sent(3, chat_id=alice.id)
    assert any(m.text.startswith(f"✅ approved system.run ({request_id})") for m in sent[1:])
    assert any(m.text.startswith("tool said:") and "approved-run" in m.text for m in sent[1:])
    assert len(buttons_removed(telegram, prompt)) == 1
    failures = await eventually(
        lambda: [r for r in caplog.records if "button press" in r.getMessage()]
    )
    assert [r.levelno for r in failures] == [logging.WARNING]
    assert "query is too old" in failures[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records), "a traceback was logged"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_typed_approve_removes_the_buttons_and_a_late_press_says_so(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    prompt, request_id = await ask(serve, telegram, llm_emulator, alice)
    telegram.send_text(alice.id, f"/approve {request_id}", user=alice)
    sent = await telegram.wait_for_sent(3, chat_id=alice.id)
    assert any(m.text.startswith("✅ approved system.run") for m in sent[1:])
    assert any(m.text.startswith("tool said:") and "approved-run" in m.text for m in sent[1:])
    [edit] = await eventually(lambda: buttons_removed(telegram, prompt))
    assert not edit.get("reply_markup")
    telegram.press_button(alice.id, prompt.message_id, f"deny:{request_id}", user=alice)
    await eventually(lambda: telegram.callback_answers)
    assert [a.get("text") for a in telegram.callback_answers] == [ANSWERED]
    await asyncio.sleep(0.3)
    assert len(telegram.texts(alice.id)) == 3  # the late press decided nothing
    assert len(llm_emulator.requests) == 2


async def test_typed_deny_removes_the_buttons(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    prompt, request_id = await ask(serve, telegram, llm_emulator, alice)
    telegram.send_text(alice.id, "/deny", user=alice)  # the only request: no id needed
    sent = await telegram.wait_for_sent(3, chat_id=alice.id)
    assert any(m.text.startswith(f"🚫 denied system.run ({request_id})") for m in sent[1:])
    await eventually(lambda: buttons_removed(telegram, prompt))


async def test_a_timed_out_request_loses_its_buttons(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    prompt, request_id = await ask(serve, telegram, llm_emulator, alice, approval_timeout=1)
    await eventually(lambda: buttons_removed(telegram, prompt))
    answer = (await telegram.wait_for_sent(2, chat_id=alice.id))[1]
    assert "nobody approved" in answer.text
    telegram.press_button(alice.id, prompt.message_id, f"approve:{request_id}", user=alice)
    await eventually(lambda: telegram.callback_answers)
    assert [a.get("text") for a in telegram.callback_answers] == [ANSWERED]
    await asyncio.sleep(0.3)
    assert len(telegram.texts(alice.id)) == 2  # the late press decided nothing
    assert len(llm_emulator.requests) == 2
    assert len(buttons_removed(telegram, prompt)) == 1


async def test_a_press_in_another_chat_cannot_approve(
    serve: Serve, telegram: TelegramEmulator, llm_emulator: LlmEmulator, alice: User, bob: User
) -> None:
    prompt, request_id = await ask(serve, telegram, llm_emulator, alice)
    telegram.send_text(bob.id, "/start", user=bob)
    [greeting] = await telegram.wait_for_sent(1, chat_id=bob.id)
    telegram.press_button(bob.id, greeting.message_id, f"approve:{request_id}", user=bob)
    await eventually(lambda: telegram.callback_answers)
    assert [a.get("text") for a in telegram.callback_answers] == [ANSWERED]
    await asyncio.sleep(0.3)
    assert len(llm_emulator.requests) == 1  # the command did not run: still waiting
    assert buttons_removed(telegram, prompt) == []  # the real prompt keeps its buttons
