"""The agent loop with the real provider client against the LLM emulator and real SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from openpista.agent import Agent, AgentEvent, ToolFinished, ToolStarted
from openpista.memory import MemoryStore
from openpista.models import Attachment, Message, ToolCall, ToolResult
from openpista.plugins import PluginHost
from openpista.providers.base import TextDelta
from openpista.runtime import build_providers
from openpista.tools.base import ToolError, ToolOutput
from openpista.tools.context import TurnContext, current_turn
from openpista.tools.registry import ToolRegistry, tool
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator

MakeAgent = Callable[..., Agent]


@pytest.fixture
def make_agent(llm_emulator: LlmEmulator, memory: MemoryStore) -> MakeAgent:
    def make(*tools: Any, max_tool_rounds: int = 10, context: str = "") -> Agent:
        settings = emulator_settings(llm_emulator, Path("/nonexistent"))
        provider = build_providers(PluginHost.load(entry_points=False)).build(settings, "openai")
        return Agent(
            provider,
            ToolRegistry(tools),
            memory,
            system_prompt="You are a test agent.",
            max_tool_rounds=max_tool_rounds,
            context=(lambda: context) if context else None,
        )

    return make


@tool("test.echo")
async def echo(text: str) -> str:
    """Echo the text."""
    return f"echo: {text}"


@tool("test.explode")
async def explode() -> str:
    """Always fails."""
    raise ToolError("the fuse was lit")


@tool("test.crash")
async def crash() -> str:
    """Fails with an unexpected exception."""
    raise ZeroDivisionError("division by zero")


async def test_text_answer_is_streamed_and_stored(
    make_agent: MakeAgent, llm_emulator: LlmEmulator, memory: MemoryStore
) -> None:
    llm_emulator.reply_text("Hello there, friend", chunk_size=3)
    events: list[AgentEvent] = []
    response = await make_agent().run_turn("s1", "hi", on_event=events.append)
    assert response.text == "Hello there, friend"
    assert not response.is_error
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1
    assert "".join(deltas) == "Hello there, friend"
    stored = await memory.load_messages("s1")
    assert [(m.role, m.content) for m in stored] == [
        ("user", "hi"),
        ("assistant", "Hello there, friend"),
    ]


async def test_tool_round_trip_is_persisted_exactly(
    make_agent: MakeAgent, llm_emulator: LlmEmulator, memory: MemoryStore
) -> None:
    llm_emulator.reply_tool_calls([("test_echo", {"text": "ping"})])
    llm_emulator.reply(lambda body: "got " + body["messages"][-1]["content"])
    events: list[AgentEvent] = []
    response = await make_agent(echo).run_turn("s1", "echo ping", on_event=events.append)
    assert response.text == "got echo: ping"
    started = [e.call.name for e in events if isinstance(e, ToolStarted)]
    finished = [e.result.output for e in events if isinstance(e, ToolFinished)]
    assert started == ["test.echo"]
    assert finished == ["echo: ping"]
    stored = await memory.load_messages("s1")
    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"]
    call = stored[1].tool_calls[0]
    assert (call.name, call.arguments) == ("test.echo", {"text": "ping"})
    assert stored[2].tool_result == ToolResult(
        call_id=call.id, name="test.echo", output="echo: ping"
    )
    wire = llm_emulator.requests[1].json["messages"]
    assert wire[0] == {"role": "system", "content": "You are a test agent."}
    assert wire[-1]["role"] == "tool"
    assert wire[-1]["tool_call_id"] == call.id


async def test_tool_calls_of_one_round_run_concurrently(
    make_agent: MakeAgent, llm_emulator: LlmEmulator
) -> None:
    left, right = asyncio.Event(), asyncio.Event()

    @tool("test.left")
    async def left_tool() -> str:
        """Waits for right."""
        left.set()
        await right.wait()
        return "left done"

    @tool("test.right")
    async def right_tool() -> str:
        """Waits for left."""
        right.set()
        await left.wait()
        return "right done"

    llm_emulator.reply_tool_calls([("test_left", {}), ("test_right", {})])
    llm_emulator.reply_text("both done")
    agent = make_agent(left_tool, right_tool)
    # Run one after the other, each would wait forever for the other.
    response = await asyncio.wait_for(agent.run_turn("s1", "go"), timeout=30)
    assert response.text == "both done"


async def test_failing_tools_become_error_results_for_the_llm(
    make_agent: MakeAgent, llm_emulator: LlmEmulator, memory: MemoryStore
) -> None:
    llm_emulator.reply_tool_calls(
        [("test_explode", {}), ("test_crash", {}), ("test_missing", {}), ("test_echo", {})]
    )
    llm_emulator.reply_text("I saw the errors")
    response = await make_agent(echo, explode, crash).run_turn("s1", "try everything")
    assert response.text == "I saw the errors"
    results = [m.tool_result for m in await memory.load_messages("s1") if m.tool_result]
    assert all(r.is_error for r in results)
    explode_result, crash_result, missing_result, echo_result = (r.output for r in results)
    assert "the fuse was lit" in explode_result
    assert "ZeroDivisionError" in crash_result
    assert "test_echo" in missing_result  # names the tools that exist, by their wire names
    assert "text" in echo_result  # names the missing argument


async def test_round_limit_stops_the_loop_and_keeps_history_well_formed(
    make_agent: MakeAgent, llm_emulator: LlmEmulator, memory: MemoryStore
) -> None:
    for _ in range(4):
        llm_emulator.reply_tool_calls([("test_echo", {"text": "again"})])
    response = await make_agent(echo, max_tool_rounds=3).run_turn("s1", "loop")
    assert "stopped after 3 tool rounds" in response.text
    assert len(llm_emulator.requests) == 4
    stored = await memory.load_messages("s1")
    assert [m.role for m in stored] == ["user", *["assistant", "tool"] * 3, "assistant"]
    llm_emulator.reply_text("continuing")
    assert (await make_agent(echo).run_turn("s1", "continue")).text == "continuing"


async def test_provider_error_is_reported_and_history_survives(
    make_agent: MakeAgent, llm_emulator: LlmEmulator, memory: MemoryStore
) -> None:
    llm_emulator.reply_text("first answer")
    agent = make_agent()
    await agent.run_turn("s1", "first")
    llm_emulator.reply_error(500, "upstream exploded")
    response = await agent.run_turn("s1", "second")
    assert response.is_error
    assert response.text.startswith("❌ ")
    assert "Traceback" not in response.text
    stored = await memory.load_messages("s1")
    assert [(m.role, m.content) for m in stored] == [
        ("user", "first"),
        ("assistant", "first answer"),
        ("user", "second"),
    ]


async def test_context_is_in_the_system_prompt_of_every_request(
    make_agent: MakeAgent, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_tool_calls([("test_echo", {"text": "x"})])
    llm_emulator.reply_text("done")
    await make_agent(echo, context="## Skills\n- weather: tells the weather").run_turn("s1", "hi")
    systems = [r.json["messages"][0] for r in llm_emulator.requests]
    assert len(systems) == 2
    for system in systems:
        assert system["role"] == "system"
        assert system["content"].startswith("You are a test agent.")
        assert "weather: tells the weather" in system["content"]


async def test_sessions_do_not_mix(make_agent: MakeAgent, llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply(lambda body: "echo " + body["messages"][-1]["content"])
    llm_emulator.reply(lambda body: "echo " + body["messages"][-1]["content"])
    agent = make_agent()
    await agent.run_turn("a", "alpha")
    await agent.run_turn("b", "beta")
    second = llm_emulator.requests[1].json["messages"]
    assert [m["content"] for m in second[1:]] == ["beta"]


async def test_text_no_database_can_store_is_made_safe(
    make_agent: MakeAgent, llm_emulator: LlmEmulator, memory: MemoryStore
) -> None:
    llm_emulator.reply_text("a\x00b")
    response = await make_agent().run_turn("s1", "nul\x00 and lone \ud800 surrogate")
    assert response.text == "a\x00b"
    stored = [m.content for m in await memory.load_messages("s1")]
    assert stored == ["nul\ufffd and lone \ufffd surrogate", "a\ufffdb"]


def test_stored_messages_round_trip_through_the_model() -> None:
    message = Message(
        role="assistant",
        tool_calls=[ToolCall(id="1", name="a.b", arguments={"x": [1, {"y": "ü"}]})],
    )
    assert Message.model_validate(message.model_dump(mode="json")) == message


PIXEL = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=="
)


async def test_pictures_the_user_sends_are_shown_once_and_stored_by_path(
    make_agent: MakeAgent, llm_emulator: LlmEmulator, memory: MemoryStore
) -> None:
    llm_emulator.reply_text("a red dot")
    llm_emulator.reply_text("still a red dot")
    photo = Attachment(name="dot.png", mime_type="image/png", data=PIXEL, path="/in/dot.png")
    agent = make_agent()
    await agent.run_turn("s1", "what is this?", attachments=[photo])
    content = llm_emulator.requests[0].json["messages"][-1]["content"]
    assert content[0] == {
        "type": "text",
        "text": "what is this?\n[attachment: dot.png (image/png) at /in/dot.png]",
    }
    assert content[1]["image_url"]["url"] == f"data:image/png;base64,{PIXEL}"
    stored = await memory.load_messages("s1")
    assert stored[0].content.endswith("at /in/dot.png]")
    assert stored[0].attachments == [], "the picture's data is not stored"
    await agent.run_turn("s1", "and now?")
    earlier = llm_emulator.requests[1].json["messages"][1]
    assert isinstance(earlier["content"], str), "an old picture is named, not sent again"


async def test_files_tools_produce_reach_the_llm_and_the_answer(
    make_agent: MakeAgent, llm_emulator: LlmEmulator, memory: MemoryStore
) -> None:
    seen: list[TurnContext | None] = []

    @tool("test.snap")
    async def snap() -> ToolOutput:
        """Takes a picture."""
        seen.append(current_turn())
        shot = Attachment(name="shot.png", mime_type="image/png", data=PIXEL)
        return ToolOutput("took a screenshot", [shot])

    llm_emulator.reply_tool_calls([("test_snap", {})])
    llm_emulator.reply_text("here it is")
    response = await make_agent(snap).run_turn("s1", "snap", channel_id="web:abc")
    assert [a.name for a in response.attachments] == ["shot.png"]
    assert seen == [TurnContext("s1", "web:abc")]
    assert current_turn() is None, "the context ends with the turn"
    wire = llm_emulator.requests[1].json["messages"]
    assert wire[-2]["role"] == "tool"
    assert wire[-2]["content"] == "took a screenshot"
    assert wire[-1]["role"] == "user"
    assert wire[-1]["content"][1]["image_url"]["url"].endswith(PIXEL)
    stored = await memory.load_messages("s1")
    result = stored[2].tool_result
    assert result is not None
    assert [(a.name, a.data) for a in result.attachments] == [("shot.png", None)]
