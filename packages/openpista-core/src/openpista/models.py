"""Typed data that crosses a boundary: channels, the agent, providers, tools and memory.

The same JSON goes over every transport (WebSocket, QUIC, the database), so these models
are the wire contract. What the gateway sends a channel is one :data:`Outbound` message:
an :class:`Answer`, a :class:`TextChunk`, a :class:`ToolProgress` or an
:class:`ApprovalPrompt`, told apart by their ``kind``. They are plain pydantic models;
``model_dump(mode="json")`` gives the wire form and ``model_validate`` (for outbound
messages :func:`parse_outbound`) reads it back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

ERROR_PREFIX = "❌ "
"""How every error a user reads begins: one line, ``❌`` first, never a traceback."""


def error_text(text: str) -> str:
    """``text`` as an error line for users: it starts with :data:`ERROR_PREFIX` (once)."""
    return text if text.startswith(ERROR_PREFIX.strip()) else ERROR_PREFIX + text


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class Attachment(BaseModel):
    """A file sent with a message: inline base64 ``data``, a ``url``, or a local ``path``.

    Channel adapters save what users send (photos, documents) and set ``path`` (and
    ``data`` for images small enough to show the LLM); tools that produce files (screenshots)
    return them the same way. Images with ``data`` are shown to the LLM; every attachment is
    named to it with its path, so that tools can open the file.
    """

    name: str
    mime_type: str = "application/octet-stream"
    data: str | None = None
    url: str | None = None
    path: str | None = None

    @property
    def is_image(self) -> bool:
        """Whether this is a picture (``image/*``)."""
        return self.mime_type.startswith("image/")

    def data_url(self) -> str:
        """The inline data as a ``data:`` URL (how LLM APIs take images)."""
        return f"data:{self.mime_type};base64,{self.data or ''}"

    def describe(self) -> str:
        """One line naming the file for the LLM: name, type and where to find it."""
        where = self.path or self.url
        return f"[attachment: {self.name} ({self.mime_type})" + (f" at {where}]" if where else "]")


class ToolCall(BaseModel):
    """One tool invocation requested by the LLM.

    ``name`` is the internal tool name (``system.run``), never the wire name.
    ``arguments`` holds the decoded JSON object; when the LLM sent text that is not a JSON
    object, ``arguments`` is empty and ``raw_arguments`` keeps what it sent.
    """

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    raw_arguments: str | None = None


class ToolResult(BaseModel):
    """What a tool gave back for one :class:`ToolCall`."""

    call_id: str
    name: str
    output: str
    is_error: bool = False
    attachments: list[Attachment] = Field(default_factory=list)


Role = Literal["system", "user", "assistant", "tool"]


class Message(BaseModel):
    """One entry of a conversation, as the LLM sees it and as memory stores it.

    An assistant message may carry ``tool_calls``; a ``tool`` message carries exactly one
    ``tool_result``.
    """

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_result: ToolResult | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    """Files sent with a user message. Not stored: the stored text names them (with their
    paths), and their image data is shown to the LLM only in the turn they arrive."""
    created_at: datetime = Field(default_factory=utc_now)

    def images(self) -> list[Attachment]:
        """The pictures of this message (or of its tool result) that carry inline data."""
        found = self.tool_result.attachments if self.tool_result else self.attachments
        return [a for a in found if a.is_image and a.data]


class Usage(BaseModel):
    """Token counts reported by a provider for one request."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class ChannelEvent(BaseModel):
    """An inbound message from a channel adapter, in the gateway's terms."""

    channel_id: str
    session_id: str | None = None
    sender: str
    text: str
    attachments: list[Attachment] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    delivery_id: str | None = None
    """The messenger's id of this message (Discord's message id, Telegram's update id),
    unique within the channel, not only the chat. In a cluster an event whose channel and
    delivery id were stored before (a webhook retried, a message fetched again) is dropped:
    no turn, nothing sent (docs/scale-out.md). ``None``: never dropped."""


class ApprovalRequest(BaseModel):
    """The agent asks the user whether a tool call may run (policy ``ask``).

    Channels with buttons render approve/deny buttons; every channel also accepts the text
    answers ``/approve ID`` and ``/deny ID`` (the id may be left out when only one request
    is pending). No answer within ``timeout`` seconds means deny.
    """

    id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""
    timeout: float = 120.0
    warnings: list[str] = Field(default_factory=list)
    """What the user must know before approving (from the tool: it would run unsandboxed)."""

    def prompt(self) -> str:
        """The request as plain text, for channels without buttons."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        why = f" ({self.reason})" if self.reason else ""
        warnings = "".join(f"⚠️ {warning}\n" for warning in self.warnings)
        return (
            f"🔐 Approval needed{why}: {self.tool}({args})\n{warnings}"
            f"Reply /approve {self.id} or /deny {self.id} within {self.timeout:.0f} s."
        )


class Reply(BaseModel):
    """What every outbound message carries: where it goes and what it answers.

    ``request_id`` is the ``request_id`` of the event this answers (from
    ``ChannelEvent.metadata``), on every message of its turn: channels that multiplex several
    requests on one connection route answers by it.
    """

    channel_id: str = ""
    session_id: str = ""
    request_id: str | None = None


class Answer(Reply):
    """The end of a turn (or a notice, a command's reply): the whole text and any files.

    ``is_error`` answers have a text starting with :data:`ERROR_PREFIX`; build them with
    :meth:`error`.
    """

    kind: Literal["answer"] = "answer"
    text: str = ""
    is_error: bool = False
    attachments: list[Attachment] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)

    @classmethod
    def error(cls, text: str, **fields: Any) -> Answer:
        """An error answer: ``text`` as one ``❌`` line."""
        return cls(text=error_text(text), is_error=True, **fields)


class TextChunk(Reply):
    """A piece of the answer being written (streaming channels only); the :class:`Answer`
    that follows holds the whole text again."""

    kind: Literal["chunk"] = "chunk"
    text: str


class ToolProgress(Reply):
    """A tool call started (``result`` is ``None``) or finished (streaming channels only)."""

    kind: Literal["tool"] = "tool"
    call: ToolCall
    result: ToolResult | None = None


class ApprovalPrompt(Reply):
    """A tool call waits for the user's yes or no (see :class:`ApprovalRequest`); channels
    with buttons show them, the others :meth:`ApprovalRequest.prompt`."""

    kind: Literal["approval"] = "approval"
    request: ApprovalRequest


Outbound = Annotated[
    Answer | TextChunk | ToolProgress | ApprovalPrompt, Field(discriminator="kind")
]
"""One message from the gateway to a channel; ``kind`` tells which."""

OutboundKind = Literal["answer", "chunk", "tool", "approval"]

_OUTBOUND: TypeAdapter[Outbound] = TypeAdapter(Outbound)


def parse_outbound(data: object) -> Outbound:
    """Read an outbound message back from its wire form (``model_dump(mode="json")``);
    raises :class:`pydantic.ValidationError` for anything else."""
    return _OUTBOUND.validate_python(data)
