"""Typed data that crosses a boundary: channels, the agent, providers, tools and memory.

The same JSON goes over every transport (WebSocket, QUIC, the database), so these models
are the wire contract. They are plain pydantic models; ``model_dump(mode="json")`` gives
the wire form and ``model_validate`` reads it back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class Attachment(BaseModel):
    """A file sent with a message: inline base64 ``data`` or a ``url``."""

    name: str
    mime_type: str = "application/octet-stream"
    data: str | None = None
    url: str | None = None


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
    created_at: datetime = Field(default_factory=utc_now)


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


class AgentResponse(BaseModel):
    """What goes back to a channel: final ``text``, or a streamed ``delta`` chunk."""

    channel_id: str = ""
    session_id: str = ""
    text: str = ""
    delta: bool = False
    is_error: bool = False
    attachments: list[Attachment] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
