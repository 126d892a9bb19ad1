"""One answer being written into one Slack message: a placeholder posted at once, then
``chat.update`` at most every ``interval`` seconds while text chunks arrive, and the whole
answer at the end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from openpista_slack.text import MESSAGE_LIMIT, escape, to_mrkdwn

Update = Callable[[str], Awaitable[None]]
"""Replaces the message's text (mrkdwn)."""

CURSOR = " ▍"


@dataclass
class StreamedMessage:
    """The message of one turn: ``channel``/``ts`` of the placeholder, ``user`` who asked."""

    channel: str
    ts: str
    user: str
    thread_ts: str | None
    interval: float
    update: Update
    text: str = ""
    status: str = ""
    """A line shown under the text while it is written (the tool running)."""
    _flush: asyncio.Task[None] | None = field(default=None, repr=False)
    _last: float = field(default=0.0, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def add(self, chunk: str) -> None:
        """Append ``chunk``; the message shows it within ``interval`` seconds."""
        self.text += chunk
        self._schedule()

    def note(self, status: str) -> None:
        """Show ``status`` under the text (empty: none) within ``interval`` seconds."""
        self.status = status
        self._schedule()

    def _schedule(self) -> None:
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._show_later())

    async def _show_later(self) -> None:
        """Show the text so far once ``interval`` passed since the last update; again while
        more arrived during the update."""
        loop = asyncio.get_running_loop()
        shown = None
        while shown != (self.text, self.status):
            await asyncio.sleep(max(0.0, self._last + self.interval - loop.time()))
            async with self._lock:
                shown = (self.text, self.status)
                status = f"\n_{escape(self.status)}_" if self.status else ""
                room = MESSAGE_LIMIT - len(CURSOR) - len(status)
                self._last = loop.time()
                await self.update(to_mrkdwn(self.text)[:room] + CURSOR + status)

    async def finish(self, text: str) -> None:
        """Stop the previews and show ``text`` (already mrkdwn, one message's worth)."""
        if self._flush is not None and not self._flush.done():
            self._flush.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flush
        async with self._lock:
            await self.update(text)

    def cancel(self) -> None:
        """Stop showing previews (the channel stops)."""
        if self._flush is not None:
            self._flush.cancel()
