"""What the TUI shows, what can happen to it, and what it asks the outside world to do.

Data flows one way: an :data:`Action` goes through :func:`openpista.tui.update.update`,
which returns the next :class:`State` and a list of :data:`Effect` values; the app runs
the effects (database, gateway) and feeds their outcome back as actions; the view renders
the state. Everything here is plain immutable data, so screens are tested without a
terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from openpista.models import Message, Outbound

Screen = Literal["home", "chat", "workers"]
EntryKind = Literal["user", "assistant", "tool", "notice", "error", "approval"]


@dataclass(frozen=True)
class Entry:
    """One block of the chat scrollback."""

    kind: EntryKind
    text: str


@dataclass(frozen=True)
class SessionRow:
    """A stored session as listed on the home screen."""

    id: str
    title: str | None = None
    updated: str = ""
    messages: int = 0


WORKER_SECTIONS = (
    ("Active", ("created", "running")),
    ("Completed", ("finished",)),
    ("Failed", ("failed", "ended")),
)
"""The worker dashboard's sections, in screen order, and the task statuses of each."""
WORKER_TIME = "%Y-%m-%d %H:%M:%S"
"""How a worker row's ``created`` is written (local time)."""


@dataclass(frozen=True)
class WorkerRow:
    """A worker task as the dashboard lists it (``duration`` in seconds, ``None`` while it
    runs); ``logs`` are its last log lines."""

    task_id: str
    status: str
    created: str = ""
    duration: float | None = None
    exit_code: int | None = None
    channel_id: str = ""
    percent: float | None = None
    logs: tuple[str, ...] = ()

    @property
    def section(self) -> int:
        """The index of its dashboard section in :data:`WORKER_SECTIONS`."""
        return next(
            (i for i, (_, statuses) in enumerate(WORKER_SECTIONS) if self.status in statuses),
            len(WORKER_SECTIONS) - 1,
        )


@dataclass(frozen=True)
class ModelInfo:
    """The provider and model answering, and whether a key is available for it."""

    provider: str = ""
    model: str = ""
    key_status: str = ""
    key_env: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()  # every known preset name, for /model


@dataclass(frozen=True)
class State:
    """Everything the TUI renders."""

    screen: Screen = "home"
    model: ModelInfo = field(default_factory=ModelInfo)
    config_path: str = "~/.openpista/config.toml"
    warnings: tuple[str, ...] = ()  # start-up problems, shown on the home screen
    sessions: tuple[SessionRow, ...] = ()
    spend: str = ""  # today's tokens and cost (home screen)
    selected: int = 0  # home screen cursor; 0 is "new session", i is sessions[i - 1]
    session_id: str | None = None
    entries: tuple[Entry, ...] = ()
    streaming: str = ""  # answer text arrived since the last block was closed
    pending: int = 0  # events sent whose final answer has not come back yet
    approvals: tuple[str, ...] = ()  # ids of approval requests not answered yet
    scroll: int = 0  # lines scrolled up from the bottom of the scrollback
    input: str = ""
    input_rev: int = 0  # bumped when update() replaces the input text
    history: tuple[str, ...] = ()
    history_pos: int | None = None  # None: editing the draft, not a history entry
    draft: str = ""
    quitting: bool = False
    commands: tuple[str, ...] = ()  # the gateway's chat commands (names, without the slash)
    workers: tuple[WorkerRow, ...] = ()  # the worker dashboard's tasks, newest first
    worker_selected: int = 0  # the dashboard's cursor
    back_screen: Screen = "home"  # where Escape leaves the dashboard for

    @property
    def busy(self) -> bool:
        """True while the agent works on something this chat sent."""
        return self.pending > 0


# -- actions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HomeLoaded:
    """Recent sessions and the model, read at start-up."""

    sessions: tuple[SessionRow, ...]
    model: ModelInfo
    spend: str = ""  # today's tokens and cost, every session


@dataclass(frozen=True)
class MoveSelection:
    """Up/down on the home screen."""

    delta: int


@dataclass(frozen=True)
class OpenSelected:
    """Enter on the home screen."""


@dataclass(frozen=True)
class NewSession:
    """``n`` on the home screen."""


@dataclass(frozen=True)
class GoHome:
    """Back to the home screen (Escape on an empty input)."""


@dataclass(frozen=True)
class SessionOpened:
    """The chat now shows ``session_id``; ``messages`` are its stored ones, ``model`` the
    model answering it, ``notice`` what the command that moved the chat here said."""

    session_id: str
    messages: tuple[Message, ...] = ()
    model: ModelInfo | None = None
    notice: str = ""


@dataclass(frozen=True)
class Submit:
    """Enter in the input: a message or a slash command."""

    text: str


@dataclass(frozen=True)
class HistoryPrev:
    """Up in the input (on its first line); ``current`` is what the input holds."""

    current: str


@dataclass(frozen=True)
class HistoryNext:
    """Down in the input (on its last line)."""

    current: str


@dataclass(frozen=True)
class Scroll:
    """Page up (positive) or down (negative) in the scrollback."""

    lines: int


@dataclass(frozen=True)
class ResponseReceived:
    """The gateway sent something for this chat."""

    response: Outbound


@dataclass(frozen=True)
class ModelChanged:
    """A login changed what answers: ``model`` and its key status."""

    model: ModelInfo


@dataclass(frozen=True)
class CommandAnswered:
    """The gateway answered the chat command ``/name``: ``text`` (an error when
    ``is_error``); ``model`` is the model answering the chat now."""

    name: str
    text: str
    is_error: bool = False
    model: ModelInfo | None = None


@dataclass(frozen=True)
class Failed:
    """An effect did not work; ``message`` says why."""

    message: str


@dataclass(frozen=True)
class Quit:
    """Ctrl-C, Ctrl-D or ``q``."""


@dataclass(frozen=True)
class Interrupt:
    """Ctrl-C: cancels the turns this chat waits for, else quits."""


@dataclass(frozen=True)
class TurnsCancelled:
    """The turns this chat waited for were cancelled."""


@dataclass(frozen=True)
class ShowWorkers:
    """``w`` on the home screen or ``/worker`` in a chat: the worker dashboard."""


@dataclass(frozen=True)
class WorkersLoaded:
    """The worker tasks read for the dashboard."""

    workers: tuple[WorkerRow, ...]


@dataclass(frozen=True)
class WorkerEventReceived:
    """One event of the live worker feed (:func:`openpista.worker_service.worker_feed`, in
    this process or the daemon's): the dashboard's rows follow it without reading again."""

    event: dict[str, Any]


@dataclass(frozen=True)
class LeaveWorkers:
    """Escape (or ``q``) on the dashboard: back where it was opened from."""


Action = (
    HomeLoaded
    | MoveSelection
    | OpenSelected
    | NewSession
    | GoHome
    | SessionOpened
    | Submit
    | HistoryPrev
    | HistoryNext
    | Scroll
    | ResponseReceived
    | ModelChanged
    | CommandAnswered
    | Failed
    | Quit
    | Interrupt
    | TurnsCancelled
    | ShowWorkers
    | WorkersLoaded
    | WorkerEventReceived
    | LeaveWorkers
)


# -- effects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadHome:
    """Read the recent sessions and the model for the home screen."""


@dataclass(frozen=True)
class OpenSession:
    """Show ``session_id`` (a new session when ``None``) with its stored messages."""

    session_id: str | None


@dataclass(frozen=True)
class SendMessage:
    """Submit ``text`` to the gateway for ``session_id``."""

    session_id: str
    text: str


@dataclass(frozen=True)
class RunCommand:
    """Have the gateway answer the chat command ``text`` typed in ``session_id``'s chat
    (``/model``, ``/session``, ...: the same table as every channel's)."""

    session_id: str
    text: str


@dataclass(frozen=True)
class Exit:
    """Leave the application."""


@dataclass(frozen=True)
class Login:
    """Step aside and run ``openpista auth login [provider]`` (its picker) in the terminal,
    then answer with the new key."""

    provider: str | None


@dataclass(frozen=True)
class LoadWorkers:
    """Read the worker tasks (and their last log lines) for the dashboard."""


@dataclass(frozen=True)
class CancelTurns:
    """Cancel the turns this chat sent (running or waiting); answered by
    :class:`TurnsCancelled`."""


Effect = (
    LoadHome | OpenSession | SendMessage | RunCommand | Login | Exit | LoadWorkers | CancelTurns
)
