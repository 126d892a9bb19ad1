"""The channel adapter contract: how a messenger plugs into the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from openpista.models import AgentResponse, ChannelEvent

if TYPE_CHECKING:
    from openpista.config import Settings


class ChannelAdapter(Protocol):
    """A messenger bridge.

    ``channel_prefix`` is the prefix of every channel id this adapter owns (``cli:``,
    ``telegram:``); responses whose channel id starts with it come back to this adapter.
    ``start`` begins turning the native protocol into :class:`ChannelEvent` objects put on
    ``inbound`` and returns once the adapter is serving; ``stop`` releases everything.
    ``send`` delivers one response; adapters with ``supports_streaming`` also receive
    ``delta`` chunks before the final text.

    An adapter that needs the gateway serving it (to read a session's history, switch the
    model, or deliver to another channel) declares an attribute ``gateway = None``; the
    :class:`~openpista.gateway.gateway.Gateway` sets it to itself.
    """

    name: str
    channel_prefix: str
    supports_streaming: bool

    async def start(self, inbound: asyncio.Queue[ChannelEvent]) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, response: AgentResponse) -> None: ...


ChannelFactory = Callable[[dict[str, Any], "Settings"], ChannelAdapter]
"""Builds an adapter from its ``[channels.<name>]`` table and the whole configuration."""
