"""The TUI's state transitions, without a terminal: ``update(state, action)``; and its
effects against a real gateway (real SQLite, litellm against the LLM emulator)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from openpista.gateway.approvals import ApprovalBroker
from openpista.gateway.gateway import Gateway
from openpista.memory.store import INTERRUPTED
from openpista.models import (
    Answer,
    ApprovalPrompt,
    ApprovalRequest,
    Message,
    TextChunk,
    ToolCall,
    ToolProgress,
    ToolResult,
)
from openpista.runtime import Runtime
from openpista.tui import view
from openpista.tui.adapter import CHANNEL_ID
from openpista.tui.effects import EffectRunner
from openpista.tui.state import (
    Action,
    CancelTurns,
    CommandAnswered,
    Effect,
    Entry,
    Exit,
    Failed,
    GoHome,
    HistoryNext,
    HistoryPrev,
    HomeLoaded,
    Interrupt,
    LoadHome,
    Login,
    ModelChanged,
    ModelInfo,
    MoveSelection,
    NewSession,
    OpenSelected,
    OpenSession,
    Quit,
    ResponseReceived,
    RunCommand,
    Scroll,
    SendMessage,
    SessionOpened,
    SessionRow,
    State,
    Submit,
    TurnsCancelled,
)
from openpista.tui.update import CANCELLED, update
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.polling import eventually

MODEL = ModelInfo(
    provider="openai",
    model="gpt-4o-mini",
    key_status="no key (set $OPENAI_API_KEY)",
    key_env=("OPENAI_API_KEY",),
    providers=("openai", "anthropic", "openrouter", "ollama"),
)
SID = "s1"
COMMANDS = ("help", "model", "session", "clear", "usage", "approve", "deny")  # the gateway's


def run(state: State, *actions: Action) -> tuple[State, list[Effect]]:
    effects: list[Effect] = []
    for action in actions:
        state, more = update(state, action)
        effects.extend(more)
    return state, effects


def chat(**changes: Any) -> State:
    state, _ = run(State(model=MODEL, commands=COMMANDS), SessionOpened(SID))
    return replace(state, **changes)


def reply(text: str = "", **fields: Any) -> ResponseReceived:
    return ResponseReceived(Answer(channel_id="tui:local", session_id=SID, text=text, **fields))


def chunk(text: str) -> ResponseReceived:
    return ResponseReceived(TextChunk(channel_id="tui:local", session_id=SID, text=text))


def progress(call: ToolCall, result: ToolResult | None = None) -> ResponseReceived:
    message = ToolProgress(channel_id="tui:local", session_id=SID, call=call, result=result)
    return ResponseReceived(message)


def last(state: State) -> Entry:
    return state.entries[-1]


# -- home screen ---------------------------------------------------------------------------


def test_home_lists_sessions_and_opens_the_selected_one() -> None:
    rows = (SessionRow("a", "first"), SessionRow("b"))
    state, _ = run(State(), HomeLoaded(rows, MODEL))
    assert state.screen == "home"
    assert state.selected == 0  # "new session"
    state, effects = run(state, MoveSelection(1), MoveSelection(1), MoveSelection(5))
    assert state.selected == 2
    assert effects == []
    assert run(state, OpenSelected())[1] == [OpenSession("b")]
    state, _ = run(state, MoveSelection(-9))
    assert run(state, OpenSelected())[1] == [OpenSession(None)]
    assert run(state, NewSession())[1] == [OpenSession(None)]


def test_home_view_shows_model_key_status_and_sessions() -> None:
    state, _ = run(State(), HomeLoaded((SessionRow("abc", "groceries", "2026-01-02", 4),), MODEL))
    text = "".join(fragment[1] for fragment in view.home(state))
    assert "openai/gpt-4o-mini" in text
    assert "no key (set $OPENAI_API_KEY)" in text
    assert "/login" in text
    assert "abc" in text
    assert "groceries" in text


def test_home_view_shows_todays_spend_once_loaded() -> None:
    state, _ = run(State(), HomeLoaded((), MODEL))
    assert "today" not in "".join(fragment[1] for fragment in view.home(state))
    spend = "1,200 tokens (1,000 in, 200 out), $0.0123 of [budget] daily_usd = $5"
    state, _ = run(state, HomeLoaded((), MODEL, spend))
    assert f"today   {spend}" in "".join(fragment[1] for fragment in view.home(state))


def test_opening_a_session_shows_its_history_compactly() -> None:
    call = ToolCall(id="c1", name="system.run", arguments={"command": "ls"})
    messages = (
        Message(role="user", content="list files"),
        Message(role="assistant", tool_calls=[call]),
        Message(
            role="tool", tool_result=ToolResult(call_id="c1", name="system.run", output="a\nb")
        ),
        Message(role="assistant", content="a and b"),
    )
    state, _ = run(State(), SessionOpened("old", messages))
    assert state.screen == "chat"
    assert state.session_id == "old"
    assert [(e.kind, e.text) for e in state.entries[:4]] == [
        ("user", "list files"),
        ("tool", '⚙ system.run {"command": "ls"}'),
        ("tool", "✓ system.run: a"),
        ("assistant", "a and b"),
    ]


def test_escape_goes_home_and_reloads_the_list() -> None:
    state, effects = run(chat(), GoHome())
    assert state.screen == "home"
    assert effects == [LoadHome()]


def test_quit() -> None:
    state, effects = run(State(), Quit())
    assert state.quitting
    assert effects == [Exit()]


# -- messages and streaming ----------------------------------------------------------------


def test_a_message_is_sent_to_the_session_and_the_stream_builds_the_answer() -> None:
    state, effects = run(chat(), Submit("hello"))
    assert effects == [SendMessage(SID, "hello")]
    assert last(state) == Entry("user", "hello")
    assert state.busy
    assert state.input == ""
    state, _ = run(state, chunk("Hel"), chunk("lo!"))
    assert state.streaming == "Hello!"
    assert "Hello!" in "".join(f[1] for f in view.scrollback(state))
    state, _ = run(state, reply("Hello!"))
    assert last(state) == Entry("assistant", "Hello!")
    assert state.streaming == ""
    assert not state.busy


def test_an_answer_that_was_not_streamed_is_shown_whole() -> None:
    state, _ = run(chat(), Submit("hi"), reply("whole answer"))
    assert last(state) == Entry("assistant", "whole answer")


def test_tool_progress_splits_the_stream() -> None:
    call = ToolCall(id="c1", name="system.run", arguments={"command": "ls /tmp"})
    result = ToolResult(call_id="c1", name="system.run", output="x.txt\ny.txt")
    state, _ = run(
        chat(),
        Submit("list /tmp"),
        chunk("Let me look."),
        progress(call),
        progress(call, result),
        chunk("Two files."),
        reply("Two files."),
    )
    assert [(e.kind, e.text) for e in state.entries[-5:]] == [
        ("user", "list /tmp"),
        ("assistant", "Let me look."),
        ("tool", '⚙ system.run {"command": "ls /tmp"}'),
        ("tool", "✓ system.run: x.txt"),
        ("assistant", "Two files."),
    ]
    assert not state.busy


def test_a_failed_tool_is_marked() -> None:
    call = ToolCall(id="c1", name="system.run")
    result = ToolResult(call_id="c1", name="system.run", output="boom", is_error=True)
    state, _ = run(chat(), progress(call, result))
    assert last(state) == Entry("tool", "✗ system.run: boom")


def test_errors_are_shown_with_the_cross() -> None:
    state, _ = run(chat(), Submit("hi"), reply("❌ no API key for openai", is_error=True))
    assert last(state) == Entry("error", "❌ no API key for openai")
    assert not state.busy
    state, _ = run(state, Failed("database is locked"))
    assert last(state) == Entry("error", "❌ database is locked")


def test_responses_of_a_session_left_behind_are_not_mixed_in() -> None:
    state, _ = run(chat(), Submit("hi"), SessionOpened("other"))
    before = state.entries
    state, _ = run(state, chunk("late"))
    state, _ = run(state, reply("late"))
    assert state.entries == before
    assert not state.busy


def test_approval_is_shown_and_answered_through_the_gateway() -> None:
    request = ApprovalRequest(id="ap1", tool="system.run", arguments={"command": "rm x"})
    state, _ = run(
        chat(),
        Submit("delete x"),
        ResponseReceived(ApprovalPrompt(channel_id="tui:local", session_id=SID, request=request)),
    )
    assert last(state).kind == "approval"
    assert "/approve ap1" in last(state).text
    assert state.approvals == ("ap1",)
    assert state.busy  # the turn is still waiting
    state, effects = run(state, Submit("/approve ap1"))
    assert effects == [RunCommand(SID, "/approve ap1")]
    assert state.approvals == ()
    state, _ = run(state, CommandAnswered("approve", "✅ approved"))
    assert last(state) == Entry("notice", "✅ approved")
    assert state.busy  # the original turn has not answered yet
    state, _ = run(state, reply("deleted"))
    assert not state.busy


def test_deny_without_an_id_answers_the_oldest_request() -> None:
    state, effects = run(chat(approvals=("a", "b")), Submit("/deny"))
    assert effects == [RunCommand(SID, "/deny")]
    assert state.approvals == ("b",)


# -- slash commands ------------------------------------------------------------------------


def test_help_is_the_gateway_s_with_the_tui_s_own_commands_and_keys() -> None:
    state, effects = run(chat(), Submit("/help"))
    assert effects == [RunCommand(SID, "/help")]
    state, _ = run(state, CommandAnswered("help", "Commands:\n  /usage   tokens"))
    assert last(state).text.startswith("Commands:\n  /usage   tokens\n")
    for command in ("/login", "/quit", "/exit", "PageUp"):
        assert command in last(state).text


def test_login_runs_the_auth_login_picker_for_the_named_or_any_provider() -> None:
    state, effects = run(chat(), Submit("/login"))
    assert effects == [Login(None)]
    assert run(state, Submit("/login together"))[1] == [Login("together")]


@pytest.mark.parametrize(
    "command",
    [
        "/model",
        "/model anthropic",
        "/model openrouter/meta-llama/llama-3-70b",
        "/MODEL gpt-4.1",
        "/session",
        "/session work",
        "/clear",
        "/usage",
    ],
)
def test_chat_commands_go_to_the_gateway(command: str) -> None:
    state, effects = run(chat(), Submit(command))
    assert effects == [RunCommand(SID, command)]
    assert not state.busy  # answered at once, not a turn


def test_a_command_s_answer_updates_the_header_with_the_chat_s_model() -> None:
    new = replace(MODEL, model="gpt-4o")
    state, _ = run(
        chat(), CommandAnswered("model", "model: openai/gpt-4o (this session)", model=new)
    )
    assert last(state) == Entry("notice", "model: openai/gpt-4o (this session)")
    assert "openai/gpt-4o " in view.header(state)[0][1]


def test_a_command_s_error_is_shown_with_the_cross() -> None:
    state, _ = run(chat(), CommandAnswered("model", "❌ cannot switch to x: unknown", True))
    assert last(state) == Entry("error", "❌ cannot switch to x: unknown")


def test_a_session_opened_by_a_command_says_what_the_command_said() -> None:
    other = replace(MODEL, model="gpt-4.1")
    state, _ = run(chat(), SessionOpened("work", model=other, notice="new session work"))
    assert (state.session_id, state.model) == ("work", other)
    assert [e.text for e in state.entries[-2:]] == [
        "session work · /help lists the commands",
        "new session work",
    ]


def test_model_changed_updates_the_header() -> None:
    new = replace(MODEL, provider="ollama", model="llama3", key_status="no key needed")
    state, _ = run(chat(), ModelChanged(new))
    assert state.model == new
    assert "ollama/llama3" in last(state).text
    assert "ollama/llama3" in view.header(state)[0][1]


@pytest.mark.parametrize("command", ["/quit", "/exit", "/QUIT"])
def test_quit_commands(command: str) -> None:
    state, effects = run(chat(), Submit(command))
    assert effects == [Exit()]
    assert state.quitting


def test_an_unknown_slash_word_is_a_message_for_the_agent_as_in_every_channel() -> None:
    state, effects = run(chat(), Submit("/frobnicate now"))
    assert effects == [SendMessage(SID, "/frobnicate now")]
    assert last(state) == Entry("user", "/frobnicate now")


def test_blank_input_does_nothing() -> None:
    assert run(chat(), Submit("  \n "))[1] == []


# -- input history -------------------------------------------------------------------------


def test_history_browses_what_was_sent_and_restores_the_draft() -> None:
    state, _ = run(chat(), Submit("one"), Submit("two"), Submit("two"))
    assert state.history == ("one", "two")
    rev = state.input_rev
    state, _ = run(state, HistoryPrev("draft"))
    assert state.input == "two"
    assert state.input_rev > rev
    state, _ = run(state, HistoryPrev("two"), HistoryPrev("one"))
    assert state.input == "one"  # stays at the oldest
    state, _ = run(state, HistoryNext("one"))
    assert state.input == "two"
    state, _ = run(state, HistoryNext("two"))
    assert state.input == "draft"
    assert state.history_pos is None
    state, _ = run(state, HistoryNext("draft"))
    assert state.input == "draft"


def test_history_is_empty_at_first() -> None:
    state = chat()
    assert run(state, HistoryPrev("x"))[0] == state


def test_multi_line_messages_are_sent_as_typed() -> None:
    state, effects = run(chat(), Submit("line one\nline two"))
    assert effects == [SendMessage(SID, "line one\nline two")]
    assert state.history == ("line one\nline two",)


# -- scrolling -----------------------------------------------------------------------------


def test_scrolling_stops_at_the_bottom_and_new_text_returns_there() -> None:
    state, _ = run(chat(), Scroll(10), Scroll(10), Scroll(-5))
    assert state.scroll == 15
    state, _ = run(state, Scroll(-100))
    assert state.scroll == 0
    state, _ = run(state, Scroll(10), reply("new"))
    assert state.scroll == 0


# -- effects against a real gateway ----------------------------------------------------------


@pytest.fixture
async def runner(tmp_path: Path, llm_emulator: LlmEmulator) -> AsyncIterator[Any]:
    """An effect runner over a real gateway; yields it and the actions it dispatched."""
    settings = emulator_settings(llm_emulator, tmp_path)
    runtime = await Runtime.open(settings)
    broker = ApprovalBroker.from_settings(runtime.memory, settings.policy)
    gateway = Gateway(runtime, approvals=broker)
    actions: list[Action] = []
    yield EffectRunner(runtime, gateway, actions.append, "tester", lambda: None), actions
    await runtime.close()


async def test_model_switches_the_tui_chat_s_session_only(runner: Any) -> None:
    effects, actions = runner
    await effects.run(RunCommand("tui-1", "/model openai/gpt-4o"))
    switched = actions[-1]
    assert switched == CommandAnswered(
        "model", "model: openai/gpt-4o (this session)", False, switched.model
    )
    assert (switched.model.provider, switched.model.model) == ("openai", "gpt-4o")
    assert effects.gateway.current_model == ("openai", "gpt-4o-mini"), "the default stays"
    await effects.run(OpenSession("tui-2"))
    opened = actions[-1]
    assert isinstance(opened, SessionOpened)
    assert opened.model is not None
    assert opened.model.model == "gpt-4o-mini"
    await effects.run(RunCommand("tui-2", "/model"))
    assert actions[-1].text.startswith("model: openai/gpt-4o-mini\n")
    await effects.run(RunCommand("tui-1", "/model"))
    assert actions[-1].text.startswith("model: openai/gpt-4o\n")
    await effects.run(RunCommand("tui-1", "/model nosuchprovider/x"))
    assert actions[-1].is_error
    assert actions[-1].text.startswith("❌ cannot switch to nosuchprovider/x")


async def test_session_and_clear_move_the_chat_and_open_the_session(runner: Any) -> None:
    effects, actions = runner
    await effects.run(RunCommand("tui-1", "/session"))
    assert actions[-1] == CommandAnswered("session", "session: tui-1", False, actions[-1].model)
    await effects.run(RunCommand("tui-1", "/session work"))
    moved = actions[-1]
    assert isinstance(moved, SessionOpened)
    assert moved.session_id == "work"
    assert moved.notice.startswith("new session work")
    assert await effects.gateway.session_for(CHANNEL_ID) == "work"
    await effects.run(RunCommand("work", "/clear"))
    cleared = actions[-1]
    assert isinstance(cleared, SessionOpened)
    assert cleared.session_id not in ("work", "tui-1")
    assert cleared.notice == f"new session {cleared.session_id}"
    await effects.run(RunCommand("work", "/session"))  # the TUI went back to "work" meanwhile
    assert actions[-1].text == "session: work"


async def test_usage_help_and_approvals_answer_as_in_every_channel(runner: Any) -> None:
    effects, actions = runner
    await effects.run(RunCommand("tui-1", "/usage"))
    assert actions[-1].text.startswith("session tui-1: 0 tokens (0 in, 0 out), $0.0000")
    await effects.run(RunCommand("tui-1", "/help"))
    assert "/model PROVIDER[/MODEL]" in actions[-1].text
    await effects.run(RunCommand("tui-1", "/approve"))
    assert actions[-1].text == "Nothing is waiting for your approval."


# -- Ctrl-C ---------------------------------------------------------------------------------


def test_ctrl_c_cancels_the_turns_the_chat_waits_for_else_quits() -> None:
    busy, effects = run(chat(), Submit("slow one"), ResponseReceived(TextChunk(text="par")))
    state, effects = run(busy, Interrupt())
    assert effects == [CancelTurns()]
    assert not state.quitting
    state, effects = run(state, TurnsCancelled())
    assert not state.busy
    assert state.entries[-2:] == (Entry("assistant", "par"), Entry("error", CANCELLED))
    state, effects = run(state, Interrupt())
    assert state.quitting
    assert effects == [Exit()]
    assert run(State(), Interrupt())[1] == [Exit()]  # the home screen: nothing to cancel


async def test_cancel_stops_the_running_turn_and_the_next_one_runs(
    runner: Any, llm_emulator: LlmEmulator
) -> None:
    from openpista.tui.adapter import TuiAdapter

    effects, actions = runner
    effects.gateway.adapters.append(TuiAdapter(lambda m: actions.append(ResponseReceived(m))))
    llm_emulator.reply_tool_calls([("system_run", {"command": "sleep 30"})])
    await effects.run(SendMessage("tui-c", "wait a long time"))
    await eventually(lambda: any(isinstance(a, ResponseReceived) for a in actions))
    await effects.run(CancelTurns())
    assert actions[-1] == TurnsCancelled()
    await eventually(lambda: not effects._turns)
    stored = await effects.runtime.memory.load_messages("tui-c")
    # The call was stored before it ran; cut short, it is told interrupted (not run again).
    assert [m.role for m in stored] == ["user", "assistant", "tool"]
    assert stored[-1].tool_result is not None
    assert stored[-1].tool_result.output == INTERRUPTED
    llm_emulator.reply_text("after the cancel")
    await effects.run(SendMessage("tui-c", "again"))

    def answers() -> list[str]:
        return [
            a.response.text
            for a in actions
            if isinstance(a, ResponseReceived) and isinstance(a.response, Answer)
        ]

    await eventually(answers)
    assert answers() == ["after the cancel"]
