"""The TUI's channel: the gateway's messages for ``tui:local`` become app actions."""

from __future__ import annotations

from collections.abc import Callable

from openpista.channels import Capabilities, ChannelAdapter, ChannelContext
from openpista.models import Outbound

CHANNEL_ID = "tui:local"


class TuiAdapter(ChannelAdapter):
    """A streaming channel whose ``send`` hands each message to ``deliver``.

    Input does not come through the context: the app submits events to the gateway itself,
    so that it knows which session each one belongs to.
    """

    name = "tui"
    channel_prefix = "tui:"
    capabilities = Capabilities(streaming=True)

    def __init__(self, deliver: Callable[[Outbound], None]) -> None:
        self.deliver = deliver

    async def start(self, ctx: ChannelContext) -> None:
        """Nothing to start: the terminal belongs to the app."""

    async def send(self, message: Outbound) -> None:
        """Pass ``message`` to the app."""
        self.deliver(message)
