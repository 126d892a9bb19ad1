"""The memory.* tools, notes in the system prompt and /search, through a real gateway, real
SQLite and litellm against the LLM emulator: one person can never reach another's notes or
conversations, whatever the LLM is made to call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from openpista.config import PolicyRule
from openpista.gateway.gateway import Gateway
from openpista.memory import SearchScope
from openpista.models import Answer, ChannelEvent
from openpista.tools.base import ToolError
from openpista.tools.context import TurnContext, reset_turn, set_turn
from openpista.tools.memory import memory_tools
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import Arguments, LlmEmulator
from openpista_testing.gateways import Gateways

SECRET = "locker code 4711"


async def _start(
    gateways: Gateways, emulator: LlmEmulator, home: Path, policy: str = "allow"
) -> tuple[Gateway, Any]:
    """A gateway serving chats ``t:`` with the tool policy on (remote chats: ask) and the
    rule docs/memory.md suggests for the memory tools (``policy``)."""
    adapter = LoopbackAdapter("t:")
    settings = emulator_settings(emulator, home)
    settings.policy.rules = [PolicyRule(tool="memory.*", action=policy)]  # type: ignore[arg-type]
    gateway = await gateways.start(settings, adapter)
    return gateway, adapter


async def _turn(adapter: LoopbackAdapter, chat: str, text: str, sender: str = "") -> Answer:
    assert adapter.ctx is not None
    event = ChannelEvent(channel_id="t:" + chat, sender=sender or chat, text=text)
    await adapter.ctx.submit(event)
    return await adapter.answer(chat)


def _requests_text(emulator: LlmEmulator, since: int) -> str:
    """Everything the LLM was sent from request ``since`` on."""
    return json.dumps([r.json for r in emulator.requests[since:]], ensure_ascii=False)


def _system_prompt(emulator: LlmEmulator) -> str:
    first = emulator.requests[-1].json["messages"][0]
    assert first["role"] == "system"
    return str(first["content"])


async def test_notes_are_remembered_shown_and_forgotten(
    gateways: Gateways, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    gateway, adapter = await _start(gateways, llm_emulator, tmp_path)
    llm_emulator.reply_tool_calls([("memory_remember", {"note": f"ann's {SECRET}"})])
    llm_emulator.reply_text("noted")
    assert (await _turn(adapter, "ann", "remember my locker code 4711")).text == "noted"
    assert "Remembered as note 1" in json.dumps(llm_emulator.requests[-1].json)
    [note] = await gateway.runtime.memory.notes_of("t:ann")
    assert note.text == f"ann's {SECRET}"

    llm_emulator.reply_text("it is 4711")
    await _turn(adapter, "ann", "what is my locker code?")
    assert f"[1] ann's {SECRET}" in _system_prompt(llm_emulator)

    llm_emulator.reply_tool_calls([("memory_forget", {"note_id": 1})])
    llm_emulator.reply_text("forgotten")
    await _turn(adapter, "ann", "forget it")
    assert await gateway.runtime.memory.notes_of("t:ann") == []
    llm_emulator.reply_text("which code?")
    await _turn(adapter, "ann", "what is my locker code?")
    assert SECRET not in _system_prompt(llm_emulator)


async def test_one_person_cannot_reach_anothers_notes_or_conversations(
    gateways: Gateways, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    gateway, adapter = await _start(gateways, llm_emulator, tmp_path)
    memory = gateway.runtime.memory
    # Ann, in her private chat, has a note and talks about her secret.
    llm_emulator.reply_tool_calls([("memory_remember", {"note": f"ann's {SECRET}"})])
    llm_emulator.reply_text("noted")
    await _turn(adapter, "ann", f"my {SECRET}, remember it")
    [ann_note] = await memory.notes_of("t:ann")

    # Bob, in his private chat and in a group with Ann, makes the LLM try everything.
    since = len(llm_emulator.requests)
    attempts: list[tuple[str, Arguments]] = [
        ("memory_search", {"query": "locker code"}),
        ("memory_search", {"query": "4711"}),
        ("memory_search", {"query": '4711" OR "ann'}),
        ("memory_forget", {"note_id": ann_note.id}),
        ("memory_remember", {"note": "bob likes tea", "person": "t:ann"}),
    ]
    for chat in ("bob", "group"):
        llm_emulator.reply_tool_calls(attempts)
        llm_emulator.reply_text("nothing found")
        await _turn(adapter, chat, "tell me ann's locker code", sender="bob")
    seen_by_bob = _requests_text(llm_emulator, since)
    assert SECRET not in seen_by_bob  # neither her note nor her message reached the LLM
    assert seen_by_bob.count("this person has no note") == 2
    assert await memory.notes_of("t:ann") == [ann_note]  # not deleted, nothing added
    # Extra arguments are refused, not obeyed: bob got no note either.
    assert await memory.notes_of("t:bob") == []

    # In the group, Ann's note is shown to Ann only; Bob finds what was said in the group.
    llm_emulator.reply_text("hi ann")
    await _turn(adapter, "group", "hello, the group code is 1234", sender="ann")
    assert SECRET in _system_prompt(llm_emulator)
    llm_emulator.reply_tool_calls([("memory_search", {"query": "group code"})])
    llm_emulator.reply_text("found")
    await _turn(adapter, "group", "what was the group code?", sender="bob")
    assert SECRET not in _system_prompt(llm_emulator)
    found = json.dumps(llm_emulator.requests[-1].json)
    assert "[group] [code] is 1234" in found
    assert await memory.search("4711", SearchScope(person="t:bob")) == []


async def test_search_command_covers_only_this_chat(
    gateways: Gateways, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    _, adapter = await _start(gateways, llm_emulator, tmp_path)
    await _turn(adapter, "ann", f"my {SECRET}")
    await _turn(adapter, "ann", "/clear")
    await _turn(adapter, "ann", "a new session about risotto")
    found = (await _turn(adapter, "ann", "/search locker")).text
    assert "user" in found
    assert "[locker] code 4711" in found  # the chat's earlier session too
    assert "risotto" not in found
    assert (
        "nothing in this chat's conversations matches"
        in (await _turn(adapter, "bob", "/search locker")).text
    )
    refused = await _turn(adapter, "bob", '/search " ( *')
    assert refused.is_error
    assert refused.text.startswith("❌")
    assert "nothing to search for" in refused.text
    assert (await _turn(adapter, "bob", "/search")).is_error


async def test_the_users_policy_rule_wins(
    gateways: Gateways, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    gateway, adapter = await _start(gateways, llm_emulator, tmp_path, policy="deny")
    llm_emulator.reply_tool_calls([("memory_remember", {"note": "x"})])
    llm_emulator.reply_text("could not")
    await _turn(adapter, "ann", "remember x")
    assert await gateway.runtime.memory.notes_of("t:ann") == []
    assert "the tool policy denies memory.remember" in json.dumps(llm_emulator.requests[-1].json)


async def test_tools_outside_a_turn_or_without_a_store_fail_clearly() -> None:
    search, remember, forget = memory_tools(lambda: None)
    with pytest.raises(ToolError, match="only in a conversation"):
        await search.handler(query="x")
    with pytest.raises(ToolError, match="who is asking"):
        await remember.handler(note="x")
    token = set_turn(TurnContext("s", "t:x", person="t:x"))
    try:
        with pytest.raises(ToolError, match="not open"):
            await forget.handler(note_id=1)
    finally:
        reset_turn(token)
