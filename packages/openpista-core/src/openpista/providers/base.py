"""The provider contract: what the agent needs from an LLM backend.

A provider turns a conversation plus tool specs into a stream of events. Internal tool
names (``system.run``) are used on both sides of this interface; a provider that needs
wire-safe names converts them itself (see :mod:`openpista.naming`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from openpista.models import Message, ToolCall, Usage

if TYPE_CHECKING:
    from openpista.config import ProviderSettings


class ToolSpec(BaseModel):
    """A tool as offered to the LLM: internal name, description, JSON Schema of arguments."""

    name: str
    description: str
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True)
class TextDelta:
    """A chunk of the answer's text, as it arrives."""

    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A fragment of a tool call being streamed (``index`` identifies the call)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class ChatResult:
    """The complete answer of one request: text, tool calls and token usage."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


StreamEvent = TextDelta | ToolCallDelta | ChatResult
"""Events of :meth:`LlmProvider.stream`; the last one is always a :class:`ChatResult`."""


@runtime_checkable
class LlmProvider(Protocol):
    """An LLM backend. ``name`` is the preset name, ``model`` the model it talks to.

    A provider whose first request pays a start-up cost (importing a client library) may
    also define ``async prepare()``, which pays it up front; callers go through
    :func:`warm_up` (the daemon right after start, ``openpista model test`` before timing
    the request's round trip). One that holds connections open defines ``async aclose()``,
    called through :func:`close_provider` when its runtime closes.
    """

    name: str
    model: str

    def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[StreamEvent]:
        """Send the conversation and yield deltas, ending with one :class:`ChatResult`.

        Raises :class:`ProviderError` on failure, with a message that names the fix.
        """
        ...

    async def complete(self, messages: list[Message], tools: list[ToolSpec]) -> ChatResult:
        """Send the conversation and return the whole answer at once."""
        ...

    async def list_models(self) -> list[str]:
        """Models this backend offers (may be a static list when the API has none)."""
        ...


async def warm_up(provider: object) -> None:
    """Pay ``provider``'s start-up cost now: its optional ``prepare()`` (see
    :class:`LlmProvider`); nothing for a provider without one."""
    prepare = getattr(provider, "prepare", None)
    if prepare is not None:
        await prepare()


async def close_provider(provider: object) -> None:
    """Release what ``provider`` holds open (its optional ``aclose()``, e.g. a connection
    pool); nothing for a provider without one."""
    aclose = getattr(provider, "aclose", None)
    if aclose is not None:
        await aclose()


ProviderErrorKind = Literal[
    "auth",
    "not_found",
    "rate_limit",
    "quota",
    "empty",
    "unreachable",
    "timeout",
    "bad_request",
    "config",
    "other",
]


class ProviderError(Exception):
    """A provider failure, phrased for the user: what went wrong and how to fix it."""

    def __init__(self, kind: ProviderErrorKind, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.kind: ProviderErrorKind = kind
        self.status = status


ProviderFactory = Callable[["ProviderSettings", str | None], LlmProvider]
"""Builds a provider from its settings and an optional model override."""


@dataclass(frozen=True)
class ProviderPreset:
    """A named way to reach an LLM backend, registered through ``register_providers``.

    ``api_key_env`` lists environment variables read for the key when the config has
    none; ``default_base_url`` applies when the config sets no ``base_url``;
    ``models`` is a short list of well-known models offered by ``openpista model list``.
    """

    name: str
    factory: ProviderFactory
    default_model: str
    aliases: tuple[str, ...] = ()
    api_key_env: tuple[str, ...] = ()
    default_base_url: str | None = None
    requires_base_url: bool = False
    requires_api_key: bool = True
    models: tuple[str, ...] = ()
    description: str = ""
