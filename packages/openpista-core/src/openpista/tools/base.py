"""What a tool is: a name, a description, a JSON Schema and an async handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from openpista.models import Attachment


class ToolError(Exception):
    """Raised by a tool handler to report a failure to the LLM as an error result."""


@dataclass(frozen=True)
class ToolOutput:
    """What a handler returns when it produces files as well as text (a screenshot).

    Images among ``attachments`` are shown to the LLM after the tool result and sent to the
    user with the turn's answer (``Answer.attachments``).
    """

    text: str
    attachments: list[Attachment] = field(default_factory=list)


ApprovalWarning = Callable[[dict[str, Any]], Awaitable["str | None"]]
"""See :attr:`Tool.approval_warning`."""

ToolHandler = Callable[..., Awaitable["str | ToolOutput"]]
"""An async callable taking the validated arguments as keywords and returning text (or a
:class:`ToolOutput` with attachments)."""


@dataclass(frozen=True)
class Tool:
    """A tool the LLM can call.

    ``parameters`` is the JSON Schema of the arguments object; the handler receives the
    arguments as keyword arguments after validation against it. Build one from a typed
    function with :func:`openpista.tools.registry.tool`.
    """

    name: str
    description: str
    handler: ToolHandler
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    validator: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """Checks and converts raw arguments; raises ``ValueError`` with a readable message."""
    approval_warning: ApprovalWarning | None = None
    """Asked, with the call's arguments, before the user is asked to approve a call: what the
    approval request must warn about (``None``: nothing), e.g. that the call would run
    outside its sandbox. It runs before the call is approved, so it must not act."""
    conversation_only: bool = False
    """It works only in a conversation with a known speaker (``memory.remember``: whose
    note?): callers outside one, such as ``openpista mcp serve``, neither list nor run it."""
