"""Warnings that a peer can trigger at will, written at most once an interval per reason.

A flood of malformed bodies or refused connections must not flood the log: per key, one
line goes out per interval, and the next line counts the ones held back in between.
"""

from __future__ import annotations

import logging
import time

DEFAULT_INTERVAL = 60.0


class QuietLog:
    """Per-key rate-limited warnings (see the module docs)."""

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, logger: logging.Logger, key: str, message: str) -> None:
        """Log ``message`` as a warning unless one of ``key`` went out less than
        ``interval`` seconds ago (then it is only counted)."""
        now = time.monotonic()
        last, held = self._last.get(key, (-self.interval, 0))
        if now - last < self.interval:
            self._last[key] = (last, held + 1)
            return
        extra = f" (+{held} more since the last report)" if held else ""
        logger.warning("%s%s", message, extra)
        self._last[key] = (now, 0)

    def reset(self) -> None:
        """Forget every key: the next warning of each goes out."""
        self._last.clear()
