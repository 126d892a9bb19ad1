"""A turn cut short is continued, never re-run: tool calls stored before they run, results
as they come, histories made well-formed on load (the real agent, SQLite and the emulator).
Across replicas: test_cluster_handover.py."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from openpista.agent import Agent, round_limit_message
from openpista.files import turn_output_dir
from openpista.memory import MemoryStore
from openpista.memory.store import INTERRUPTED, well_formed
from openpista.models import Attachment, Message, ToolCall, ToolResult
from openpista.plugins import PluginHost
from openpista.runtime import build_providers
from openpista.tools.registry import ToolRegistry, tool
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.hostile import ALLOWED, SECRET

WAIT = 30.0
runs: list[str] = []
release = asyncio.Event()


@tool("test.count")
async def count(name: str) -> str:
    """Count a run."""
    runs.append(name)
    return f"counted {name}"


@tool("test.slow")
async def slow() -> str:
    """Wait until released."""
    await release.wait()
    return "slow done"


@pytest.fixture
def agent(llm_emulator: LlmEmulator, memory: MemoryStore) -> Agent:
    runs.clear()
    release.clear()
    settings = emulator_settings(llm_emulator, Path("/nonexistent"))
    provider = build_providers(PluginHost.load(entry_points=False)).build(settings, "openai")
    return Agent(provider, ToolRegistry([count, slow]), memory, max_tool_rounds=2)


def call(call_id: str, name: str = "test.count", **arguments: Any) -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments=arguments)


def result(call_id: str, output: str, name: str = "test.count") -> Message:
    return Message(role="tool", tool_result=ToolResult(call_id=call_id, name=name, output=output))


def unmatched(messages: list[dict[str, Any]]) -> list[str]:
    """Tool call ids of an OpenAI request without a result right after their message."""
    missing: list[str] = []
    for index, message in enumerate(messages):
        asked = {c["id"] for c in message.get("tool_calls") or []}
        answered = set()
        for later in messages[index + 1 :]:
            if later["role"] != "tool":
                break
            answered.add(later["tool_call_id"])
        missing += sorted(asked - answered)
    return missing


async def cut_short(memory: MemoryStore) -> None:
    """A turn whose round of two calls was cut short: ``a`` finished, ``b`` was running."""
    await memory.start_turn("s", Message(role="user", content="count twice"))
    calls = [call("a", name="a"), call("b", name="b")]
    await memory.append_messages(
        "s", [Message(role="assistant", tool_calls=calls), result("a", "counted a")]
    )


async def test_a_turn_cut_short_continues_without_running_a_finished_call_again(
    agent: Agent, memory: MemoryStore, llm_emulator: LlmEmulator
) -> None:
    await cut_short(memory)
    llm_emulator.reply_text("a counted, b perhaps")
    answer = await agent.run_turn("s", "count twice", resume=True)
    assert (answer.text, answer.is_error) == ("a counted, b perhaps", False)
    assert runs == []  # nothing ran again
    [request] = llm_emulator.requests
    sent = request.json["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["count twice"]  # once
    tools = {m["tool_call_id"]: m["content"] for m in sent if m["role"] == "tool"}
    assert tools == {"a": "counted a", "b": INTERRUPTED}
    assert unmatched(sent) == []
    stored = await memory.load_messages("s")
    assert [(m.role, m.content) for m in stored] == [
        ("user", "count twice"),
        ("assistant", ""),
        ("tool", ""),
        ("tool", ""),
        ("assistant", "a counted, b perhaps"),
    ]
    assert [m.tool_result.output for m in stored if m.tool_result] == ["counted a", INTERRUPTED]


async def test_a_turn_cut_short_after_storing_its_answer_is_not_asked_again(
    agent: Agent, memory: MemoryStore, llm_emulator: LlmEmulator
) -> None:
    await memory.start_turn("s", Message(role="user", content="hi"))
    await memory.append_message("s", Message(role="assistant", content="hello"))
    answer = await agent.run_turn("s", "hi", resume=True)
    assert answer.text == "hello"
    assert llm_emulator.requests == []
    assert len(await memory.load_messages("s")) == 2


async def test_a_resumed_turn_counts_the_rounds_it_ran_before(
    agent: Agent, memory: MemoryStore, llm_emulator: LlmEmulator
) -> None:
    await cut_short(memory)  # one round of max_tool_rounds = 2 ran
    llm_emulator.reply_tool_calls([("test_count", {"name": "c"})])
    llm_emulator.reply_tool_calls([("test_count", {"name": "d"})])
    answer = await agent.run_turn("s", "count twice", resume=True)
    assert runs == ["c"]  # the second round; the third is over the limit
    assert answer.text == round_limit_message(2)


async def test_tool_calls_are_stored_before_they_run_and_each_result_as_it_comes(
    agent: Agent, memory: MemoryStore, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_tool_calls([("test_slow", {}), ("test_count", {"name": "quick"})])
    llm_emulator.reply_text("both done")
    turn = asyncio.create_task(agent.run_turn("s", "go"))
    deadline = asyncio.get_running_loop().time() + WAIT
    while not runs:  # the quick call finished; the slow one runs
        assert asyncio.get_running_loop().time() < deadline, "the quick call never ran"
        await asyncio.sleep(0.01)
    while len(stored := await memory.load_messages("s")) < 4 or stored[3].tool_result is None:
        assert asyncio.get_running_loop().time() < deadline, "the quick result is not stored"
        await asyncio.sleep(0.01)
    outputs = [m.tool_result.output for m in stored if m.tool_result]
    # What a replica taking over would see now: the running call told interrupted.
    assert outputs == [INTERRUPTED, "counted quick"]
    release.set()
    assert (await asyncio.wait_for(turn, WAIT)).text == "both done"
    stored = await memory.load_messages("s")
    outputs = [m.tool_result.output for m in stored if m.tool_result]
    assert outputs == ["slow done", "counted quick"]  # in call order, stored as they came
    assert unmatched(llm_emulator.requests[-1].json["messages"]) == []


def test_a_history_with_unmatched_or_stray_tool_messages_is_made_well_formed() -> None:
    user = Message(role="user", content="hi")
    asking = Message(role="assistant", tool_calls=[call("x"), call("y"), call("z")])
    history = [
        result("stray", "before any call"),
        user,
        asking,
        result("z", "z done"),
        result("nobody", "a result of no call of this message"),
        result("x", "x done"),
        result("x", "x twice"),
        Message(role="assistant", content="later"),
        result("x", "after the round"),
    ]
    shaped = well_formed(history)
    assert shaped[:2] == [user, asking]
    assert [(m.tool_result.call_id, m.tool_result.output) for m in shaped[2:5]] == [  # type: ignore[union-attr]
        ("x", "x done"),
        ("y", INTERRUPTED),
        ("z", "z done"),
    ]
    assert shaped[3].tool_result.is_error  # type: ignore[union-attr]
    assert shaped[5:] == [history[7]]
    assert well_formed(shaped) == shaped
    assert well_formed([]) == []


async def test_a_later_turn_and_the_export_never_hold_an_unmatched_call(
    agent: Agent, memory: MemoryStore, llm_emulator: LlmEmulator
) -> None:
    await cut_short(memory)  # then the user wrote again: a new turn, not a resumed one
    agent.history_window = 3  # a window of the newest messages is repaired too
    llm_emulator.reply_text("fine")
    await agent.run_turn("s", "and now?")
    sent = llm_emulator.requests[-1].json["messages"]
    assert unmatched(sent) == []
    document = await memory.export_session("s")
    assert [m.tool_result.call_id for m in document.messages if m.tool_result] == ["a", "b"]


PNG = b"\x89PNG\r\n\x1a\n the user's photo"
opened: list[str] | None = None  # while a list: every path this process opens goes here


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and opened is not None:
        opened.append(str(args[0]))


sys.addaudithook(_audit)  # for the process (hooks cannot be removed): inert unless recording


async def test_a_resumed_turn_shows_the_llm_the_users_picture_where_it_is_written_here(
    agent: Agent, memory: MemoryStore, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    # The first attempt ran on a replica that wrote the photo under its own media directory
    # and stored the user message naming that path; the pictures themselves are not stored.
    there = Attachment(name="cat.png", mime_type="image/png", path="/dead/replica/media/cat.png")
    stored_text = "what is this?\n" + there.describe()
    await memory.start_turn("s", Message(role="user", content=stored_text))
    await memory.append_messages(
        "s", [Message(role="assistant", tool_calls=[call("a")]), result("a", "counted a")]
    )
    here = tmp_path / "media" / "handed-over" / "7" / "0-cat.png"
    photo = Attachment(
        name="cat.png",
        mime_type="image/png",
        path=str(here),
        data=base64.b64encode(PNG).decode(),
    )
    llm_emulator.reply_text("a cat")
    answer = await agent.run_turn("s", "what is this?", attachments=[photo], resume=True)
    assert answer.text == "a cat"
    [request] = llm_emulator.requests
    [user] = [m for m in request.json["messages"] if m["role"] == "user"]
    text, image = user["content"]  # as in a fresh turn: the text, then the picture inline
    assert text == {"type": "text", "text": f"what is this?\n{photo.describe()}"}
    assert "/dead/replica" not in json.dumps(request.json)  # no path read from the table
    assert image["image_url"]["url"] == photo.data_url()
    assert [m["tool_call_id"] for m in request.json["messages"] if m["role"] == "tool"] == ["a"]
    stored = await memory.load_messages("s")
    assert [m.content for m in stored if m.role == "user"] == [stored_text]  # stored once


def _made(outbox: Path, tmp_path: Path) -> list[Attachment]:
    """What a tool of the first attempt named: one file of the outbox that is here, some that
    are not (written on the dead replica, or inline bytes, which are not stored), and forged
    or escaping paths."""
    (outbox / "chart.png").write_bytes(ALLOWED)
    secret = tmp_path / "secret.png"
    secret.write_bytes(SECRET)
    (outbox / "link.png").symlink_to(secret)
    climb = "/".join([".."] * len(outbox.parts))
    named = {
        "chart.png": str(outbox / "chart.png"),
        "gone.png": str(outbox / "gone.png"),
        "gone-too.txt": str(outbox / "sub" / "gone-too.txt"),
        "passwd": "/etc/passwd",
        "climb.png": f"{outbox}/{climb}{secret}",
        "relative.png": "../../../../etc/passwd",
        "link.png": str(outbox / "link.png"),
    }
    made = [Attachment(name=name, mime_type="image/png", path=path) for name, path in named.items()]
    inline = base64.b64encode(b"held by the dead replica only").decode()
    return [*made, Attachment(name="screenshot.png", mime_type="image/png", data=inline)]


@pytest.mark.parametrize("answered", [False, True], ids=["asking", "answered-already"])
async def test_files_the_earlier_rounds_made_go_with_the_continued_turns_answer(
    agent: Agent,
    memory: MemoryStore,
    llm_emulator: LlmEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    answered: bool,
) -> None:
    global opened
    monkeypatch.setenv("OPENPISTA_HOME", str(tmp_path / "home"))
    outbox = turn_output_dir("s")
    made = ToolResult(call_id="a", name="a", output="made", attachments=_made(outbox, tmp_path))
    await memory.start_turn("s", Message(role="user", content="make files"))
    calls = [Message(role="assistant", tool_calls=[call("a", name="a")])]
    await memory.append_messages("s", [*calls, Message(role="tool", tool_result=made)])
    if answered:  # the replica died after storing the answer, before sending it
        await memory.append_message("s", Message(role="assistant", content="made them"))
    else:
        llm_emulator.reply_text("made them")
    opened = []
    try:
        answer = await agent.run_turn("s", "make files", resume=True)
    finally:
        touched, opened = opened, None
    assert [(a.name, a.path) for a in answer.attachments] == [
        ("chart.png", str(outbox / "chart.png"))
    ]
    assert len(llm_emulator.requests) == (0 if answered else 1)
    first, *notes = answer.text.split("\n\n")
    assert first == "made them"
    lines = "\n".join(notes).splitlines()
    [absent] = [line for line in lines if "not here" in line]
    assert absent == (
        "❌ not sent, made before this turn moved to this replica and not here: "
        "'gone.png', 'gone-too.txt', 'screenshot.png'"
    )
    refused = [line for line in lines if line != absent]
    assert [line.split("'")[1] for line in refused] == [
        "passwd",
        "climb.png",
        "relative.png",
        "link.png",
    ]
    assert all(line.startswith("❌ attachment ") for line in refused)
    assert str(outbox) not in answer.text  # names only
    # Stored paths are data: nothing outside the outbox was opened, no symlink followed.
    assert str(outbox) in touched  # (the hook sees the opens: the outbox, then each name)
    assert not [p for p in touched if "passwd" in p or "secret" in p]
    assert not [p for p in touched if p.startswith("/") and not p.startswith(str(outbox))]


async def test_a_resumed_turn_of_many_absent_files_names_ten_and_counts_the_rest(
    agent: Agent,
    memory: MemoryStore,
    llm_emulator: LlmEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENPISTA_HOME", str(tmp_path / "home"))
    outbox = turn_output_dir("s")
    gone = [Attachment(name=f"{n}\n.png", path=str(outbox / f"{n}.png")) for n in range(13)]
    made = ToolResult(call_id="a", name="a", output="made", attachments=gone)
    await memory.start_turn("s", Message(role="user", content="make files"))
    calls = [Message(role="assistant", tool_calls=[call("a", name="a")])]
    await memory.append_messages("s", [*calls, Message(role="tool", tool_result=made)])
    llm_emulator.reply_text("made them")
    answer = await agent.run_turn("s", "make files", resume=True)
    assert answer.attachments == []
    said, line = answer.text.split("\n\n")
    assert said == "made them"
    assert line.endswith("'9\\n.png' and 3 more")  # one line: a name's newline is escaped
    assert line.count(".png") == 10
