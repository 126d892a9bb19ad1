"""Context compaction in a long session: a real gateway and SQLite, litellm against the LLM
emulator with a small context window. Older turns become a stored summary, no request
outgrows the window, tool calls stay with their results, and the user is told once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from openpista.compaction import NOTICE, split_point
from openpista.memory import MemoryStore
from openpista.models import Message, ToolCall, ToolResult
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator, Reply, TextReply, ToolCallsReply
from openpista_testing.gateways import Gateways

WINDOW = 700
FILLER = "lorem ipsum dolor sit amet " * 8  # ~220 characters


def _is_summary_request(body: dict[str, Any]) -> bool:
    return str(body["messages"][0]["content"]).startswith("You summarise a conversation")


def _llm(body: dict[str, Any]) -> Reply:
    messages = body["messages"]
    if _is_summary_request(body):
        turns = str(messages[-1]["content"]).count("user:")
        return TextReply(f"SUMMARY of {turns} user messages: the user's cat is called Miso.")
    last = messages[-1]
    if last["role"] == "user" and "tool" in str(last["content"]):
        return ToolCallsReply([("memory_search", {"query": "Miso"})])
    return TextReply(f"answer: {FILLER}")


async def test_a_long_session_is_compacted_and_keeps_its_pairs(
    gateways: Gateways, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    llm_emulator.default_reply = _llm
    options = f'context_window = {WINDOW}\nsystem_prompt = "You are a test."'
    settings = emulator_settings(llm_emulator, tmp_path, options)
    adapter = LoopbackAdapter("t:")
    gateway = await gateways.start(settings, adapter, approvals=False)
    answers = []
    for turn in range(14):
        extra = " please use a tool" if turn % 3 == 1 else ""
        await adapter.say("ann", f"message {turn}: my cat is called Miso. {FILLER}{extra}")
        answers.append(await adapter.answer("ann"))

    assert not any(answer.is_error for answer in answers)
    assert sum(answer.text.startswith(NOTICE) for answer in answers) == 1
    bodies = [request.json for request in llm_emulator.requests]
    summaries = [body for body in bodies if _is_summary_request(body)]
    assert len(summaries) >= 2
    later = json.dumps(summaries[-1]["messages"])
    assert "[earlier summary]" in later  # each summary takes the previous one in
    for body in bodies:
        messages = body["messages"]
        assert len(json.dumps(messages)) < WINDOW * 4 * 1.5  # never far past the window
        if _is_summary_request(body):
            continue
        assert [m["role"] for m in messages[:2]] == ["system", "user"]
        asked: set[str] = set()
        for message in messages:
            for call in message.get("tool_calls") or []:
                asked.add(call["id"])
            if message["role"] == "tool":
                assert message["tool_call_id"] in asked  # its call came with it
    assert "SUMMARY of" in str(bodies[-1]["messages"][0]["content"])
    # Nothing stored was lost: the summary stands in the history, not in the store.
    session = await gateway.session_for("t:ann")
    stored = await gateway.runtime.memory.load_messages(session)
    assert sum(m.role == "user" for m in stored) == 14
    assert stored[0].content.startswith("message 0:")


async def test_a_turn_starts_from_the_newest_summary(store: MemoryStore) -> None:
    await store.start_turn("s", Message(role="user", content="old question"))
    call = ToolCall(id="c", name="x")
    await store.append_messages(
        "s",
        [
            Message(role="assistant", tool_calls=[call]),
            Message(role="tool", tool_result=ToolResult(call_id="c", name="x", output="r")),
            Message(role="assistant", content="old answer"),
            Message(role="user", content="recent question"),
            Message(role="assistant", content="recent answer"),
        ],
    )
    assert await store.summarize("s", 2, "they asked an old question")
    history = await store.start_turn("s", Message(role="user", content="new"))
    assert [m.role for m in history] == ["system", "user", "assistant"]
    assert history[0].content.endswith("they asked an old question")
    assert history[1].content == "recent question"
    assert len(await store.load_messages("s")) == 7  # every message kept
    assert not await store.summarize("s", 50, "nothing older than that")
    assert await store.delete_session("s")


def test_the_kept_part_starts_at_a_user_message() -> None:
    call = ToolCall(id="c", name="x")
    history = [
        Message(role="user", content="a" * 400),
        Message(role="assistant", tool_calls=[call]),
        Message(role="tool", tool_result=ToolResult(call_id="c", name="x", output="b" * 4000)),
        Message(role="user", content="short"),
        Message(role="assistant", content="fine"),
    ]
    assert split_point(history, 1000) == 3
    assert split_point(history[:3], 1000) is None  # one turn: nothing older to summarise


def test_the_models_window_comes_from_litellms_local_map_without_importing_litellm() -> None:
    script = """
import asyncio, sys
from openpista.compaction import model_context_window
from openpista.models import Message

short = [Message(role="user", content="hi")]
long = [Message(role="user", content="word " * 2000)]
print(asyncio.run(model_context_window("gpt-4o", short)))
print(asyncio.run(model_context_window("gpt-4o", long)))
print(asyncio.run(model_context_window("openrouter/openai/gpt-4o", long)))
print(asyncio.run(model_context_window("no-such-model-4711", long)))
print("litellm" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "128000", "128000", "None", "False"]
