"""Notices to the operator's channel about answers WhatsApp would not take, and about errors
Meta reports for the business number itself.

A permanent send failure (a bad number, a missing template, retries exhausted) or a
system-level error of the webhook (e.g. a rate-limit warning) is worth telling a human
about, but a burst of them must not flood the operator: per reason at most one notice goes
out per :data:`NOTICE_INTERVAL` seconds, and the next notice of that reason counts the ones
held back in between.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from openpista.models import Answer

NOTICE_INTERVAL = 60.0
MAX_REASONS = 256  # reasons remembered (the oldest is forgotten first)


@dataclass
class _Reason:
    last_sent: float
    held_back: int = 0


class OperatorNotices:
    """Builds the notices for ``channel_id`` (any channel, e.g. ``telegram:123``).

    ``clock`` (seconds, monotonic) can be replaced, e.g. by tests.
    """

    def __init__(
        self,
        channel_id: str,
        *,
        interval: float = NOTICE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel_id = channel_id
        self.interval = interval
        self.clock = clock
        self._reasons: OrderedDict[str, _Reason] = OrderedDict()

    def notice(self, key: str, text: str) -> Answer | None:
        """The notice ``❌ WhatsApp: {text}``, or ``None`` when one with the same ``key``
        went out less than ``interval`` seconds ago (counted)."""
        now = self.clock()
        seen = self._reasons.get(key)
        if seen is not None and now - seen.last_sent < self.interval:
            seen.held_back += 1
            return None
        held_back = seen.held_back if seen is not None else 0
        self._reasons.pop(key, None)
        self._reasons[key] = _Reason(now)
        while len(self._reasons) > MAX_REASONS:
            self._reasons.popitem(last=False)
        text = f"WhatsApp: {text}"
        if held_back:
            failures = "failure" if held_back == 1 else "failures"
            text += f" ({held_back} more {failures} like this since the last notice)"
        return Answer.error(text, channel_id=self.channel_id)
