"""The TUI's channel: the gateway's responses for ``tui:local`` become app actions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from openpista.models import AgentResponse, ChannelEvent

CHANNEL_ID = "tui:local"


class TuiAdapter:
    """A streaming channel whose ``send`` hands each response to ``deliver``.

    Input does not come through ``start``'s queue: the app submits events to the gateway
    itself, so that it knows which session each one belongs to.
    """

    name = "tui"
    channel_prefix = "tui:"
    supports_streaming = True

    def __init__(self, deliver: Callable[[AgentResponse], None]) -> None:
        self.deliver = deliver

    async def start(self, inbound: asyncio.Queue[ChannelEvent]) -> None:
        """Nothing to start: the terminal belongs to the app."""

    async def stop(self) -> None:
        """Nothing to release."""

    async def send(self, response: AgentResponse) -> None:
        """Pass ``response`` to the app."""
        self.deliver(response)
