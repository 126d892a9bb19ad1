"""The TUI's one state transition: ``update(state, action) -> (state, effects)``. Pure."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from functools import singledispatch
from typing import Any

from openpista.models import (
    Answer,
    ApprovalPrompt,
    Message,
    Outbound,
    TextChunk,
    ToolCall,
    ToolProgress,
    ToolResult,
)
from openpista.tui.state import (
    WORKER_TIME,
    Action,
    CancelTurns,
    CommandAnswered,
    Effect,
    Entry,
    EntryKind,
    Exit,
    Failed,
    GoHome,
    HistoryNext,
    HistoryPrev,
    HomeLoaded,
    Interrupt,
    LeaveWorkers,
    LoadHome,
    LoadWorkers,
    Login,
    ModelChanged,
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
    ShowWorkers,
    State,
    Submit,
    TurnsCancelled,
    WorkerEventReceived,
    WorkerRow,
    WorkersLoaded,
)

Result = tuple[State, list[Effect]]

CANCELLED = "❌ cancelled: the turn was stopped (Ctrl-C)"

TUI_HELP = """\
In this terminal also:
  /login [PROVIDER]          log in (API key or sign-in), as `openpista auth login`
  /worker                    the worker dashboard (active, completed and failed runs)
  /quit, /exit               leave
Keys: Enter sends, Esc Enter (or Alt-Enter) inserts a new line, Up/Down browse what you
sent, PageUp/PageDown scroll, Escape on an empty input goes back to the session list,
Ctrl-C cancels the turn that runs (and quits when none does), Ctrl-D quits."""


def update(state: State, action: Action) -> Result:
    """The next state after ``action``, and the effects the app must run."""
    return _update(action, state)


@singledispatch
def _update(action: object, state: State) -> Result:
    raise TypeError(f"unknown action {action!r}")


@_update.register
def _(action: HomeLoaded, state: State) -> Result:
    loaded = replace(state, sessions=action.sessions, model=action.model, spend=action.spend)
    return replace(loaded, selected=0), []


@_update.register
def _(action: MoveSelection, state: State) -> Result:
    if state.screen == "workers":
        moved = max(0, min(len(state.workers) - 1, state.worker_selected + action.delta))
        return replace(state, worker_selected=moved), []
    last = len(state.sessions)  # row 0 is "new session"
    return replace(state, selected=max(0, min(last, state.selected + action.delta))), []


@_update.register
def _(action: OpenSelected, state: State) -> Result:
    if state.selected == 0:
        return state, [OpenSession(None)]
    return state, [OpenSession(state.sessions[state.selected - 1].id)]


@_update.register
def _(action: NewSession, state: State) -> Result:
    return state, [OpenSession(None)]


@_update.register
def _(action: GoHome, state: State) -> Result:
    return replace(state, screen="home"), [LoadHome()]


@_update.register
def _(action: SessionOpened, state: State) -> Result:
    entries = tuple(e for m in action.messages for e in message_entries(m))
    opening = f"session {action.session_id} · /help lists the commands"
    notices = [Entry("notice", text) for text in (opening, action.notice) if text]
    opened = replace(
        state,
        screen="chat",
        session_id=action.session_id,
        model=action.model or state.model,
        entries=(*entries, *notices),
        streaming="",
        scroll=0,
        approvals=(),
    )
    return opened, []


@_update.register
def _(action: Submit, state: State) -> Result:
    text = action.text.strip()
    if not text:
        return state, []
    history = state.history
    if history[-1:] != (action.text,):  # a repeat is kept once
        history = (*history, action.text)
    state = replace(
        state,
        history=history,
        history_pos=None,
        draft="",
        input="",
        input_rev=state.input_rev + 1,
        scroll=0,
    )
    if text.startswith("/"):
        return _slash(state, text)
    return _send(state, action.text, shown=action.text)


@_update.register
def _(action: HistoryPrev, state: State) -> Result:
    if not state.history:
        return state, []
    if state.history_pos is None:
        pos, draft = len(state.history) - 1, action.current
    else:
        pos, draft = max(0, state.history_pos - 1), state.draft
    return _show_input(replace(state, history_pos=pos, draft=draft), state.history[pos]), []


@_update.register
def _(action: HistoryNext, state: State) -> Result:
    if state.history_pos is None:
        return state, []
    if state.history_pos + 1 < len(state.history):
        pos = state.history_pos + 1
        return _show_input(replace(state, history_pos=pos), state.history[pos]), []
    return _show_input(replace(state, history_pos=None, draft=""), state.draft), []


@_update.register
def _(action: Scroll, state: State) -> Result:
    return replace(state, scroll=max(0, state.scroll + action.lines)), []


@_update.register
def _(action: ResponseReceived, state: State) -> Result:
    return _response(state, action.response), []


@_update.register
def _(action: ModelChanged, state: State) -> Result:
    model = action.model
    text = f"now answering with {model.provider}/{model.model} ({model.key_status})"
    return _add(replace(state, model=model), Entry("notice", text)), []


@_update.register
def _(action: CommandAnswered, state: State) -> Result:
    state = replace(state, model=action.model or state.model)
    if action.is_error:
        return _add(state, Entry("error", _as_error(action.text))), []
    text = f"{action.text}\n{TUI_HELP}" if action.name == "help" else action.text
    return _add(state, Entry("notice", text)), []


@_update.register
def _(action: Failed, state: State) -> Result:
    if state.screen == "home":  # no scrollback there: list it with the warnings
        return replace(state, warnings=(*state.warnings, action.message)), []
    return _add(state, Entry("error", _as_error(action.message))), []


@_update.register
def _(action: Quit, state: State) -> Result:
    return replace(state, quitting=True), [Exit()]


@_update.register
def _(action: Interrupt, state: State) -> Result:
    if state.screen == "chat" and state.busy:
        return state, [CancelTurns()]
    return replace(state, quitting=True), [Exit()]


@_update.register
def _(action: TurnsCancelled, state: State) -> Result:
    state = _close_stream(replace(state, pending=0, approvals=()))
    return _add(state, Entry("error", CANCELLED)), []


@_update.register
def _(action: ShowWorkers, state: State) -> Result:
    return _show_workers(state)


@_update.register
def _(action: WorkerEventReceived, state: State) -> Result:
    return _update(WorkersLoaded(followed(state.workers, action.event)), state)


def followed(rows: tuple[WorkerRow, ...], event: dict[str, Any]) -> tuple[WorkerRow, ...]:
    """``rows`` after one event of the worker feed: a ``created`` task comes first, a
    report moves its row on (status, percent, log lines, exit code, duration)."""
    task_id, kind = event.get("task_id"), event.get("event")
    if not isinstance(task_id, str):
        return rows
    at = _local_time(event.get("at"))
    row = next((r for r in rows if r.task_id == task_id), None)
    if row is None:
        if kind == "ended":
            return rows
        created = at.strftime(WORKER_TIME) if at else ""
        row = WorkerRow(task_id, "created", created, channel_id=str(event.get("channel_id", "")))
        rows = (row, *rows)
    lines = event.get("log")
    logs = tuple(str(line) for line in lines) if isinstance(lines, list) else ()
    percent = event.get("percent")
    moved = replace(
        row,
        logs=row.logs + logs,
        percent=percent if isinstance(percent, int | float) else row.percent,
    )
    if kind in ("started", "progress") and row.status == "created":
        moved = replace(moved, status="running")
    elif kind in ("finished", "failed") or (kind == "ended" and row.section == 0):
        exit_code = event.get("exit_code")
        moved = replace(
            moved,
            status=str(kind),
            exit_code=exit_code if isinstance(exit_code, int) else row.exit_code,
            duration=_seconds_since(row.created, at),
        )
    return tuple(moved if r.task_id == task_id else r for r in rows)


def _local_time(value: object) -> datetime | None:
    """An ISO-8601 time as a naive local time (as the dashboard's rows show it)."""
    try:
        return datetime.fromisoformat(str(value)).astimezone().replace(tzinfo=None)
    except ValueError:
        return None


def _seconds_since(created: str, at: datetime | None) -> float | None:
    try:
        start = datetime.strptime(created, WORKER_TIME)
    except ValueError:
        return None
    return None if at is None else max(0.0, (at - start).total_seconds())


@_update.register
def _(action: WorkersLoaded, state: State) -> Result:
    rows = tuple(sorted(action.workers, key=lambda row: row.section))  # as on screen
    ids = [row.task_id for row in rows]
    before = state.workers[state.worker_selected].task_id if state.workers else None
    if before in ids:  # the cursor stays on its run
        selected = ids.index(before)
    else:
        selected = max(0, min(len(rows) - 1, state.worker_selected))
    return replace(state, workers=rows, worker_selected=selected), []


@_update.register
def _(action: LeaveWorkers, state: State) -> Result:
    if state.screen != "workers":
        return state, []
    back = replace(state, screen=state.back_screen)
    return back, [LoadHome()] if back.screen == "home" else []


def _show_workers(state: State) -> Result:
    if state.screen == "workers":
        return state, [LoadWorkers()]
    return replace(state, screen="workers", back_screen=state.screen), [LoadWorkers()]


# -- slash commands -----------------------------------------------------------------------


def _slash(state: State, text: str) -> Result:
    """A TUI command (``/quit``, ``/login``, ``/worker``), else one of the gateway's chat
    commands (the same for every channel), else a message for the agent, as in every
    channel."""
    command, _, argument = text.partition(" ")
    argument = argument.strip()
    command = command.lower()
    if command in ("/quit", "/exit"):
        return replace(state, quitting=True), [Exit()]
    if command == "/login":
        return state, [Login(argument or None)]
    if command in ("/worker", "/workers"):
        return _show_workers(state)
    if command[1:] not in state.commands:
        return _send(state, text, shown=text)
    session_id = state.session_id
    if session_id is None:
        return _add(state, Entry("error", "❌ no session is open")), []
    if command in ("/approve", "/deny"):
        # The gateway answers these at once, even while a turn waits for the answer.
        approvals = state.approvals[1:] if not argument else state.approvals
        state = replace(state, approvals=tuple(a for a in approvals if a != argument))
    return state, [RunCommand(session_id, text)]


# -- responses ---------------------------------------------------------------------------


def _response(state: State, response: Outbound) -> State:
    final = isinstance(response, Answer)
    pending = max(0, state.pending - 1) if final else state.pending
    if response.session_id and response.session_id != state.session_id:
        return replace(state, pending=pending)  # a turn of a session this chat has left
    if isinstance(response, ApprovalPrompt):
        request = response.request
        state = replace(state, approvals=(*state.approvals, request.id))
        return _add(_close_stream(state), Entry("approval", request.prompt()))
    if isinstance(response, ToolProgress):
        if response.result is None:
            line = tool_call_line(response.call)
        else:
            line = tool_result_line(response.result)
        return _add(_close_stream(state), Entry("tool", line))
    if isinstance(response, TextChunk):
        return replace(state, streaming=state.streaming + response.text)
    state = replace(state, pending=pending)
    if response.is_error:
        return _add(_close_stream(state), Entry("error", _as_error(response.text)))
    streamed = state.streaming
    state = _close_stream(state)
    if response.text and response.text != streamed:
        kind: EntryKind = "assistant" if response.session_id else "notice"  # e.g. "approved"
        state = _add(state, Entry(kind, response.text))
    return state


def _close_stream(state: State) -> State:
    """Turn the streamed text so far into an assistant block."""
    if not state.streaming:
        return state
    return _add(replace(state, streaming=""), Entry("assistant", state.streaming))


def message_entries(message: Message) -> list[Entry]:
    """How a stored message appears in the scrollback (tool traffic in one line each)."""
    entries: list[Entry] = []
    if message.role == "user":
        entries.append(Entry("user", message.content))
    elif message.role == "assistant":
        if message.content:
            entries.append(Entry("assistant", message.content))
        entries.extend(Entry("tool", tool_call_line(call)) for call in message.tool_calls)
    elif message.role == "tool" and message.tool_result is not None:
        entries.append(Entry("tool", tool_result_line(message.tool_result)))
    return entries


def tool_call_line(call: ToolCall) -> str:
    """``⚙ system.run {"command": "ls"}``, clipped."""
    return _clip(f"⚙ {call.name} {json.dumps(call.arguments, ensure_ascii=False)}")


def tool_result_line(result: ToolResult) -> str:
    """``✓ system.run: first line of the output``, clipped."""
    mark = "✗" if result.is_error else "✓"
    first = result.output.strip().splitlines()[:1]
    return _clip(f"{mark} {result.name}: {first[0] if first else ''}")


# -- helpers ----------------------------------------------------------------------------


def _send(state: State, text: str, shown: str) -> Result:
    session_id = state.session_id
    if session_id is None:
        return _add(state, Entry("error", "❌ no session is open")), []
    state = _add(_close_stream(state), Entry("user", shown))
    return replace(state, pending=state.pending + 1), [SendMessage(session_id, text)]


def _add(state: State, entry: Entry) -> State:
    return replace(state, entries=(*state.entries, entry), scroll=0)


def _show_input(state: State, text: str) -> State:
    return replace(state, input=text, input_rev=state.input_rev + 1)


def _as_error(text: str) -> str:
    return text if text.startswith("❌") else f"❌ {text}"


def _clip(text: str, limit: int = 160) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"
