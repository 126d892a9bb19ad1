"""The TUI's state transitions, without a terminal: ``update(state, action)``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

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
from openpista.tui import view
from openpista.tui.state import (
    Action,
    Effect,
    Entry,
    Exit,
    Failed,
    GoHome,
    HistoryNext,
    HistoryPrev,
    HomeLoaded,
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
    Scroll,
    SendMessage,
    SessionOpened,
    SessionRow,
    State,
    Submit,
    SwitchModel,
)
from openpista.tui.update import update

MODEL = ModelInfo(
    provider="openai",
    model="gpt-4o-mini",
    key_status="no key (set $OPENAI_API_KEY)",
    key_env=("OPENAI_API_KEY",),
    providers=("openai", "anthropic", "openrouter", "ollama"),
)
SID = "s1"


def run(state: State, *actions: Action) -> tuple[State, list[Effect]]:
    effects: list[Effect] = []
    for action in actions:
        state, more = update(state, action)
        effects.extend(more)
    return state, effects


def chat(**changes: Any) -> State:
    state, _ = run(State(model=MODEL), SessionOpened(SID))
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
    assert effects == [SendMessage(SID, "/approve ap1")]
    assert state.approvals == ()
    confirmation = Answer(channel_id="tui:local", text="✅ approved")
    state, _ = run(state, ResponseReceived(confirmation))
    assert last(state) == Entry("notice", "✅ approved")
    assert state.busy  # the original turn has not answered yet
    state, _ = run(state, reply("deleted"))
    assert not state.busy


def test_deny_without_an_id_answers_the_oldest_request() -> None:
    state, effects = run(chat(approvals=("a", "b")), Submit("/deny"))
    assert effects == [SendMessage(SID, "/deny")]
    assert state.approvals == ("b",)


# -- slash commands ------------------------------------------------------------------------


def test_help_lists_the_commands() -> None:
    state, effects = run(chat(), Submit("/help"))
    assert effects == []
    for command in ("/login", "/model", "/session", "/clear", "/quit", "/exit", "/approve"):
        assert command in last(state).text


def test_login_runs_the_auth_login_picker_for_the_named_or_any_provider() -> None:
    state, effects = run(chat(), Submit("/login"))
    assert effects == [Login(None)]
    assert run(state, Submit("/login together"))[1] == [Login("together")]


@pytest.mark.parametrize(
    ("command", "effect"),
    [
        ("/model anthropic", SwitchModel("anthropic", None)),
        (
            "/model openrouter/meta-llama/llama-3-70b",
            SwitchModel("openrouter", "meta-llama/llama-3-70b"),
        ),
        ("/model openai/gpt-4o", SwitchModel("openai", "gpt-4o")),
        ("/model gpt-4.1", SwitchModel("openai", "gpt-4.1")),  # a model of the current provider
    ],
)
def test_model_switches(command: str, effect: SwitchModel) -> None:
    assert run(chat(), Submit(command))[1] == [effect]


def test_model_without_argument_shows_the_current_one() -> None:
    state, effects = run(chat(), Submit("/model"))
    assert effects == []
    assert "openai/gpt-4o-mini" in last(state).text
    assert "anthropic" in last(state).text


def test_model_changed_updates_the_header() -> None:
    new = replace(MODEL, provider="ollama", model="llama3", key_status="no key needed")
    state, _ = run(chat(), ModelChanged(new))
    assert state.model == new
    assert "ollama/llama3" in last(state).text
    assert "ollama/llama3" in view.header(state)[0][1]


def test_session_shows_or_switches() -> None:
    state, effects = run(chat(), Submit("/session"))
    assert effects == []
    assert SID in last(state).text
    assert run(chat(), Submit("/session work"))[1] == [OpenSession("work")]


def test_clear_starts_a_new_session() -> None:
    assert run(chat(), Submit("/clear"))[1] == [OpenSession(None)]


@pytest.mark.parametrize("command", ["/quit", "/exit", "/QUIT"])
def test_quit_commands(command: str) -> None:
    state, effects = run(chat(), Submit(command))
    assert effects == [Exit()]
    assert state.quitting


def test_unknown_command_is_an_error_not_a_message() -> None:
    state, effects = run(chat(), Submit("/frobnicate"))
    assert effects == []
    assert last(state).kind == "error"
    assert "/help" in last(state).text


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
