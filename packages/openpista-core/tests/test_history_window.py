"""A turn reads and sends a bounded window of a long session's history ([agent] history_window),
never splitting a tool call from its result. Real SQLite, the real provider client against the
emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openpista.memory import MemoryStore, MemoryStoreError, SessionNotFoundError
from openpista.models import Message, ToolCall, ToolResult
from openpista.plugins import PluginHost
from openpista.runtime import Runtime
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.memory import new_session


def one_exchange(n: int) -> list[Message]:
    """Five messages: a question, two tool calls with their results, an answer."""
    calls = [ToolCall(id=f"call-{n}-{i}", name="system.run") for i in range(2)]
    return [
        Message(role="user", content=f"question {n}"),
        Message(role="assistant", tool_calls=calls),
        *(
            Message(
                role="tool", tool_result=ToolResult(call_id=c.id, name=c.name, output=f"out {n}")
            )
            for c in calls
        ),
        Message(role="assistant", content=f"answer {n}"),
    ]


async def store_long_session(memory: MemoryStore, session: str, exchanges: int) -> None:
    await new_session(memory, session)
    messages = [m for n in range(exchanges) for m in one_exchange(n)]
    await memory.append_messages(session, messages)


def assert_pairs_intact(messages: list[dict[str, Any]]) -> None:
    """Every tool result follows the assistant message that made its call."""
    asked: set[str] = set()
    for message in messages:
        if message["role"] == "assistant":
            asked = {call["id"] for call in message.get("tool_calls") or []}
        elif message["role"] == "tool":
            assert message["tool_call_id"] in asked, message
        else:
            asked = set()


async def test_a_turn_sends_only_the_window_of_3000_messages(
    tmp_path: Path, llm_emulator: LlmEmulator
) -> None:
    # 203 = 40 exchanges and 3 messages: a plain tail would begin with an orphan tool result.
    settings = emulator_settings(llm_emulator, tmp_path, "history_window = 203")
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    try:
        await store_long_session(runtime.memory, "long", 600)  # 3,000 messages
        llm_emulator.reply_text("short answer")
        response = await runtime.agent().run_turn("long", "and now?")
        assert response.text == "short answer"
        [request] = llm_emulator.requests
        sent = request.json["messages"]
        assert sent[0]["role"] == "system"
        assert "openpista" in sent[0]["content"]
        # The 40 newest exchanges (200 messages), from their question on, then the new text.
        assert len(sent) == 1 + 200 + 1
        assert sent[1] == {"role": "user", "content": "question 560"}
        assert sent[-2]["content"] == "answer 599"
        assert sent[-1]["content"] == "and now?"
        assert_pairs_intact(sent[1:])
        assert len(await runtime.memory.load_messages("long")) == 3002  # nothing is lost
    finally:
        await runtime.close()


async def test_the_default_window_is_200_messages(
    tmp_path: Path, llm_emulator: LlmEmulator
) -> None:
    settings = emulator_settings(llm_emulator, tmp_path)
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    try:
        await store_long_session(runtime.memory, "long", 600)
        llm_emulator.reply_text("ok")
        await runtime.agent().run_turn("long", "next")
        sent = llm_emulator.requests[0].json["messages"]
        assert len(sent) == 1 + 200 + 1
        assert_pairs_intact(sent[1:])
    finally:
        await runtime.close()


async def test_load_messages_with_a_limit_reads_the_tail_from_a_user_message(
    store: MemoryStore,
) -> None:
    await store_long_session(store, "s", 10)
    recent = await store.load_messages("s", limit=7)  # a tool result, an answer, one exchange
    assert [m.role for m in recent] == ["user", "assistant", "tool", "tool", "assistant"]
    assert recent[0].content == "question 9"
    assert len(await store.load_messages("s", limit=1000)) == 50


async def test_a_window_without_a_question_drops_only_leading_tool_results(
    store: MemoryStore,
) -> None:
    await new_session(store, "s")
    await store.append_messages("s", one_exchange(0)[1:])  # no user message at all
    recent = await store.load_messages("s", limit=3)
    assert [m.role for m in recent] == ["assistant"]  # the two orphan results are left out


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
async def test_a_bad_history_limit_is_refused(store: MemoryStore, limit: Any) -> None:
    await new_session(store, "s")
    with pytest.raises(MemoryStoreError, match="positive integer"):
        await store.load_messages("s", limit=limit)


async def test_a_limited_load_of_a_missing_session(store: MemoryStore) -> None:
    with pytest.raises(SessionNotFoundError):
        await store.load_messages("nobody", limit=10)
