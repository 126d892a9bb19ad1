"""Which turn a tool runs for: tools that keep per-conversation state (a browser page) ask.

The agent sets the context around each turn; a handler reads it with :func:`current_turn`::

    turn = current_turn()
    page = pages.setdefault(turn.session_id if turn else "default", ...)
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class TurnContext:
    """The session a tool call belongs to, the chat it came from, and the person who wrote
    the turn's message (``telegram:7``: the sender on that kind of channel); ``""`` when
    unknown. ``notes`` is what the system prompt shows of that person's notes."""

    session_id: str
    channel_id: str = ""
    person: str = ""
    notes: str = ""


_CURRENT: contextvars.ContextVar[TurnContext | None] = contextvars.ContextVar(
    "openpista_turn", default=None
)


def current_turn() -> TurnContext | None:
    """The turn the running tool call belongs to; ``None`` outside an agent turn."""
    return _CURRENT.get()


def set_turn(context: TurnContext) -> contextvars.Token[TurnContext | None]:
    """Make ``context`` current (the agent does this); undo with :func:`reset_turn`."""
    return _CURRENT.set(context)


def reset_turn(token: contextvars.Token[TurnContext | None]) -> None:
    """Restore the context that was current before :func:`set_turn`."""
    _CURRENT.reset(token)
