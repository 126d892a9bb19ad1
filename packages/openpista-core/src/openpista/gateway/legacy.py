"""Adapters of the old channel contract, served until their plugins move to the new one.

The old contract: ``start(queue)`` puts events on the gateway's queue, ``send`` takes an
:class:`~openpista.models.AgentResponse`, ``supports_streaming`` says whether chunks are
wanted, and an attribute ``gateway = None`` is filled with the gateway. This module goes
once no plugin speaks it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openpista.channels import Capabilities, ChannelAdapter, ChannelContext
from openpista.models import (
    AgentResponse,
    Answer,
    ApprovalPrompt,
    Outbound,
    TextChunk,
    ToolProgress,
)

if TYPE_CHECKING:
    from openpista.gateway.gateway import Gateway

__all__ = ["AgentResponse", "LegacyChannel", "outbound_of", "response_of"]


class LegacyChannel(ChannelAdapter):
    """Serves an adapter of the old contract through the new one."""

    def __init__(self, inner: Any, gateway: Gateway) -> None:
        self.inner = inner
        self.name = inner.name
        self.channel_prefix = inner.channel_prefix
        self.capabilities = Capabilities(streaming=inner.supports_streaming, files=True)
        if hasattr(inner, "gateway") and inner.gateway is None:
            inner.gateway = gateway
        self._queue = gateway.queue

    async def start(self, ctx: ChannelContext) -> None:
        await self.inner.start(self._queue)

    async def send(self, message: Outbound) -> None:
        await self.inner.send(response_of(message))

    async def wait_closed(self) -> None:
        wait_closed = getattr(self.inner, "wait_closed", None)
        if wait_closed is not None:
            await wait_closed()

    async def stop(self) -> None:
        await self.inner.stop()


def response_of(message: Outbound) -> AgentResponse:
    """``message`` in the old form."""
    base: dict[str, Any] = {
        "channel_id": message.channel_id,
        "session_id": message.session_id,
        "request_id": message.request_id,
    }
    if isinstance(message, Answer):
        fields = message.model_dump(include={"text", "is_error", "attachments", "usage"})
        return AgentResponse(**base, **fields)
    if isinstance(message, TextChunk):
        return AgentResponse(**base, delta=True, text=message.text)
    if isinstance(message, ToolProgress):
        if message.result is None:
            return AgentResponse(**base, delta=True, tool_call=message.call)
        return AgentResponse(**base, delta=True, tool_result=message.result)
    return AgentResponse(**base, approval=message.request, text=message.request.prompt())


def outbound_of(response: AgentResponse) -> Outbound:
    """An old-form message (a notice an old adapter delivers) in the new form."""
    base: dict[str, Any] = {
        "channel_id": response.channel_id,
        "session_id": response.session_id,
        "request_id": response.request_id,
    }
    if response.approval is not None:
        return ApprovalPrompt(**base, request=response.approval)
    if response.delta:
        return TextChunk(**base, text=response.text)
    return Answer(
        **base,
        text=response.text,
        is_error=response.is_error,
        attachments=response.attachments,
        usage=response.usage,
    )
