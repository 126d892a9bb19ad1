"""Rendering: :class:`~openpista.tui.state.State` in, styled text fragments out. Pure."""

from __future__ import annotations

from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.styles import Style

from openpista.tui.state import WORKER_SECTIONS, State, WorkerRow

STYLE = Style.from_dict(
    {
        "header": "reverse",
        "toolbar": "reverse",
        "title": "bold",
        "dim": "#888888",
        "selected": "reverse bold",
        "user": "bold ansicyan",
        "assistant": "",
        "tool": "#888888",
        "notice": "italic #888888",
        "error": "ansired bold",
        "approval": "ansiyellow bold",
        "ok": "ansigreen",
        "warn": "ansiyellow",
        "rule": "#444444",
    }
)

HOME_KEYS = " ↑↓ choose · Enter open · n new session · w workers · q quit "
WORKER_KEYS = " ↑↓ choose · Esc back · updates every second · Ctrl-C quit "
CHAT_KEYS = " Enter send · Esc Enter newline · ↑↓ history · PgUp/PgDn scroll · /help · Ctrl-D quit "


def header(state: State) -> StyleAndTextTuples:
    """The top bar: where you are and who answers."""
    model = f"{state.model.provider}/{state.model.model}" if state.model.provider else "no model"
    where = {"chat": f"session {state.session_id}", "workers": "workers"}.get(state.screen, "home")
    busy = " · thinking… (Ctrl-C cancels)" if state.screen == "chat" and state.busy else ""
    return [("class:header", f" openpista · {where} · {model}{busy} ")]


def toolbar(state: State) -> StyleAndTextTuples:
    """The bottom bar: the keys of the current screen."""
    keys = {"home": HOME_KEYS, "workers": WORKER_KEYS}.get(state.screen, CHAT_KEYS)
    return [("class:toolbar", keys)]


def home(state: State) -> StyleAndTextTuples:
    """The home screen: model and key status, then the sessions to open."""
    model = state.model
    if not model.provider:
        return [("class:dim", "loading…")]
    key_style = "class:warn" if model.key_status.startswith("no key") else "class:ok"
    out: StyleAndTextTuples = [
        ("class:title", "openpista"),
        ("", " — an AI agent that acts on this computer for you\n\n"),
        ("", f"  model   {model.provider}/{model.model}\n"),
        ("", "  key     "),
        (key_style, f"{model.key_status}\n"),
        *([("", f"  today   {state.spend}\n")] if state.spend else []),
        ("", "\n"),
    ]
    if model.key_status.startswith("no key"):
        out.append(("class:dim", "  Type /login (in a session) to add a key or sign in.\n\n"))
    for warning in state.warnings:
        out.append(("class:warn", f"  warning: {warning}\n"))
    if state.warnings:
        out.append(("", "\n"))
    out.append(("class:title", "Sessions\n"))
    rows = [
        "+ new session",
        *(_session_row(s.id, s.title, s.updated, s.messages) for s in state.sessions),
    ]
    for index, row in enumerate(rows):
        style = "class:selected" if index == state.selected else ""
        out.append((style, f"  {row}  "))
        out.append(("", "\n"))
    if not state.sessions:
        out.append(("class:dim", "\n  No stored sessions yet.\n"))
    return out


def _session_row(session_id: str, title: str | None, updated: str, messages: int) -> str:
    label = f" · {title}" if title else ""
    return f"{session_id}  {updated}  {messages:>4} messages{label}"


def scrollback(state: State) -> StyleAndTextTuples:
    """The chat: every block, then the answer streaming in."""
    out: StyleAndTextTuples = []
    for entry in state.entries:
        if entry.kind == "user":
            out.append(("class:user", "you › "))
            out.append(("", entry.text))
        else:
            out.append((f"class:{entry.kind}", entry.text))
        out.append(("", "\n" if entry.kind == "tool" else "\n\n"))
    if state.streaming:
        out.append(("class:assistant", state.streaming))
    if state.busy:
        out.append(("class:dim", " ▍"))
    return out


def line_count(fragments: StyleAndTextTuples) -> int:
    """How many lines ``fragments`` span (before wrapping)."""
    return sum(text.count("\n") for _, text, *_ in fragments) + 1


LOG_LINES_SHOWN = 8


def workers(state: State) -> StyleAndTextTuples:
    """The worker dashboard: active, completed and failed runs with their durations, exit
    codes and chats; the selected run's last log lines under it."""
    out: StyleAndTextTuples = [("class:title", "Workers\n")]
    if not state.workers:
        out.append(("class:dim", "\n  No worker tasks yet.\n"))
        return out
    selected = state.workers[state.worker_selected].task_id
    for title, statuses in WORKER_SECTIONS:
        rows = [row for row in state.workers if row.status in statuses]
        out.append(("class:title", f"\n{title} ({len(rows)})\n"))
        for row in rows:
            style = "class:selected" if row.task_id == selected else ""
            out.append((style, f"  {_worker_row(row)}  "))
            out.append(("", "\n"))
            if row.task_id == selected:
                for line in row.logs[-LOG_LINES_SHOWN:]:
                    out.append(("class:tool", f"      {line[:200]}\n"))
    return out


def _worker_row(row: WorkerRow) -> str:
    if row.duration is not None:
        when = f"{row.duration:.1f} s"
    else:
        when = "…" if row.percent is None else f"{row.percent:.0f}%"
    exit_code = "-" if row.exit_code is None else str(row.exit_code)
    return f"{row.task_id}  {row.status:<8}  {when}  exit {exit_code}  {row.channel_id or '-'}"
