"""Channel test doubles: an adapter that lives in memory (tests and benchmarks talk to the
gateway with it) and a channel context without a gateway (to drive an adapter alone)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from openpista.channels import Capabilities, ChannelAdapter, ChannelContext, CommandReply
from openpista.models import Answer, ApprovalPrompt, ChannelEvent, Message, Outbound


class LoopbackAdapter(ChannelAdapter):
    """Channel ``prefix`` whose users are test code: :meth:`say` sends, :attr:`sent` records.

    ``fail_starts`` makes the first N :meth:`start` calls raise, to exercise supervision;
    ``capabilities`` defaults to streaming with files.
    """

    def __init__(
        self,
        prefix: str = "loop:",
        *,
        streaming: bool = True,
        fail_starts: int = 0,
        capabilities: Capabilities | None = None,
    ) -> None:
        self.name = prefix.rstrip(":")
        self.channel_prefix = prefix
        self.capabilities = capabilities or Capabilities(streaming=streaming, files=True)
        self.fail_starts = fail_starts
        self.starts = 0
        self.stopped = False
        self.ctx: ChannelContext | None = None
        self.sent: dict[str, list[Outbound]] = defaultdict(list)
        self._finals: dict[str, asyncio.Queue[Answer]] = defaultdict(asyncio.Queue)
        self._prompts: dict[str, asyncio.Queue[ApprovalPrompt]] = defaultdict(asyncio.Queue)

    async def start(self, ctx: ChannelContext) -> None:
        self.starts += 1
        if self.starts <= self.fail_starts:
            raise ConnectionError(f"start {self.starts} of {self.name} failed on purpose")
        self.ctx = ctx

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, message: Outbound) -> None:
        self.sent[message.channel_id].append(message)
        if isinstance(message, Answer):
            self._finals[message.channel_id].put_nowait(message)
        elif isinstance(message, ApprovalPrompt):
            self._prompts[message.channel_id].put_nowait(message)

    def texts(self, chat: str) -> list[str]:
        """The answers' texts sent to chat ``chat`` so far."""
        sent = self.sent[self.channel_prefix + chat]
        return [m.text for m in sent if isinstance(m, Answer)]

    async def say(self, chat: str, text: str, **metadata: object) -> None:
        """Send ``text`` from chat ``chat`` (channel id ``<prefix><chat>``), as a user would."""
        if self.ctx is None:
            raise RuntimeError(f"adapter {self.name} is not started")
        event = ChannelEvent(
            channel_id=self.channel_prefix + chat, sender=chat, text=text, metadata=metadata
        )
        await self.ctx.submit(event)

    async def answer(self, chat: str, wait: float = 30.0) -> Answer:
        """The next answer sent to chat ``chat``."""
        return await asyncio.wait_for(self._finals[self.channel_prefix + chat].get(), wait)

    async def prompt(self, chat: str, wait: float = 30.0) -> ApprovalPrompt:
        """The next approval prompt sent to chat ``chat``."""
        return await asyncio.wait_for(self._prompts[self.channel_prefix + chat].get(), wait)


class QueueContext:
    """A :class:`~openpista.channels.ChannelContext` without a gateway: what the adapter
    submits waits in :attr:`events`, what it delivers in :attr:`delivered`; every chat is
    its own session, with :attr:`histories` as its history; commands are none and nothing
    waits for approval unless listed in :attr:`pending` (``(channel_id, request_id)``)."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[ChannelEvent] = asyncio.Queue()
        self.delivered: list[Outbound] = []
        self.histories: dict[str, list[Message]] = {}
        self.commands: dict[str, CommandReply] = {}
        self.pending: set[tuple[str, str]] = set()
        self.ready = True

    async def submit(self, event: ChannelEvent) -> None:
        await self.events.put(event)

    async def deliver(self, message: Outbound) -> None:
        self.delivered.append(message)

    async def session_for(self, channel_id: str) -> str:
        return f"session-of-{channel_id}"

    async def history(self, channel_id: str, limit: int) -> list[Message]:
        return self.histories.get(channel_id, [])[-limit:] if limit > 0 else []

    async def run_command(self, channel_id: str, text: str) -> CommandReply | None:
        return self.commands.get(text)

    def approval_pending(self, channel_id: str, request_id: str) -> bool:
        return (channel_id, request_id) in self.pending

    def metrics(self, accept: str) -> tuple[bytes, str] | None:
        return None


class HeldContext(QueueContext):
    """A :class:`QueueContext` whose ``submit`` is controlled, for tests of when a channel
    acknowledges a message: it waits while :attr:`release` is clear, raises the first of
    :attr:`failures` while there are any (like a cluster that cannot store the event), and
    records every call in :attr:`calls` (:attr:`called` is set at the first)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.release.set()
        self.failures: list[Exception] = []
        self.calls: list[ChannelEvent] = []
        self.called = asyncio.Event()

    async def submit(self, event: ChannelEvent) -> None:
        self.calls.append(event)
        self.called.set()
        await self.release.wait()
        if self.failures:
            raise self.failures.pop(0)
        await super().submit(event)
