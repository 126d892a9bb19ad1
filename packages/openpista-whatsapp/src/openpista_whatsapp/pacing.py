"""Send pacing: messages per second per business number, and a gap per recipient.

Each send reserves the earliest moment allowed by both limits and sleeps until then.
Reservations are made without awaiting in between, so on one event loop no lock is needed
and concurrent senders queue up in order. (A library leaky bucket such as ``aiolimiter``
would cover the per-number rate but not the per-recipient gap, and adds a dependency for
the dozen lines below.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

_PRUNE_AT = 10_000  # recipients remembered before old reservations are dropped


class Pacer:
    """``rate(number)`` messages per second per number; ``recipient_interval`` seconds
    between two messages to the same recipient from the same number."""

    def __init__(
        self,
        rate: Callable[[str], float],
        recipient_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.recipient_interval = recipient_interval
        self.clock = clock
        self._numbers: dict[str, float] = {}  # number -> next free moment
        self._recipients: dict[tuple[str, str], float] = {}

    def reserve(self, number: str, recipient: str) -> float:
        """Reserve the next slot for ``number`` -> ``recipient``; seconds to wait for it."""
        now = self.clock()
        key = (number, recipient)
        start = max(now, self._recipients.get(key, now), self._numbers.get(number, now))
        self._numbers[number] = start + 1.0 / self.rate(number)
        self._recipients[key] = start + self.recipient_interval
        if len(self._recipients) > _PRUNE_AT:
            self._recipients = {k: t for k, t in self._recipients.items() if t > now}
        return start - now

    async def wait(self, number: str, recipient: str) -> None:
        """Sleep until a message from ``number`` to ``recipient`` may go out."""
        delay = self.reserve(number, recipient)
        if delay > 0:
            await asyncio.sleep(delay)
