"""A channel adapter that lives in memory: tests and benchmarks talk to the gateway with it."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from openpista.models import AgentResponse, ChannelEvent


class LoopbackAdapter:
    """Channel ``prefix`` whose users are test code: :meth:`say` sends, :attr:`sent` records.

    ``fail_starts`` makes the first N :meth:`start` calls raise, to exercise supervision.
    """

    def __init__(
        self, prefix: str = "loop:", *, streaming: bool = True, fail_starts: int = 0
    ) -> None:
        self.name = prefix.rstrip(":")
        self.channel_prefix = prefix
        self.supports_streaming = streaming
        self.fail_starts = fail_starts
        self.starts = 0
        self.stopped = False
        self.sent: dict[str, list[AgentResponse]] = defaultdict(list)
        self._inbound: asyncio.Queue[ChannelEvent] | None = None
        self._finals: dict[str, asyncio.Queue[AgentResponse]] = defaultdict(asyncio.Queue)

    async def start(self, inbound: asyncio.Queue[ChannelEvent]) -> None:
        self.starts += 1
        if self.starts <= self.fail_starts:
            raise ConnectionError(f"start {self.starts} of {self.name} failed on purpose")
        self._inbound = inbound

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, response: AgentResponse) -> None:
        self.sent[response.channel_id].append(response)
        if not response.delta and response.approval is None:
            self._finals[response.channel_id].put_nowait(response)

    async def say(self, chat: str, text: str, **metadata: object) -> None:
        """Send ``text`` from chat ``chat`` (channel id ``<prefix><chat>``), as a user would."""
        if self._inbound is None:
            raise RuntimeError(f"adapter {self.name} is not started")
        event = ChannelEvent(
            channel_id=self.channel_prefix + chat, sender=chat, text=text, metadata=metadata
        )
        await self._inbound.put(event)

    async def answer(self, chat: str, wait: float = 30.0) -> AgentResponse:
        """The next final (non-delta) response sent to chat ``chat``."""
        return await asyncio.wait_for(self._finals[self.channel_prefix + chat].get(), wait)
