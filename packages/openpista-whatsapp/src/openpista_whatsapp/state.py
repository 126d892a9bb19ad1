"""What the channel remembers: message ids already handled, the 24-hour windows, statuses.

- :class:`TtlSet`: a bounded LRU of keys that expire (duplicate webhook deliveries, refusals
  already sent). Kept in memory: after a restart a redelivered message is handled again.
- :class:`ConversationWindows`: when each user last wrote to each of our numbers, in
  ``<home>/whatsapp/windows.json``; free-form messages are allowed for 24 hours after it.
- :class:`StatusLog`: status callbacks appended to ``<home>/whatsapp/statuses.jsonl``
  (rotated to ``statuses.jsonl.1`` past a size limit).
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openpista.files import write_private

log = logging.getLogger(__name__)

WINDOW_SECONDS = 24 * 3600


class TtlSet:
    """At most ``size`` keys, each forgotten ``ttl`` seconds after it was added."""

    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.size = size
        self.ttl = ttl
        self.clock = clock
        self._keys: OrderedDict[str, float] = OrderedDict()  # key -> added at, oldest first

    def add(self, key: str) -> bool:
        """Remember ``key``; ``False`` when it was already there (and not expired)."""
        now = self.clock()
        while self._keys:
            oldest, added = next(iter(self._keys.items()))
            if now - added < self.ttl and len(self._keys) < self.size:
                break
            del self._keys[oldest]
        if key in self._keys:
            return False
        self._keys[key] = now
        return True

    def discard(self, key: str) -> None:
        """Forget ``key`` (its next :meth:`add` is ``True`` again)."""
        self._keys.pop(key, None)

    def __len__(self) -> int:
        return len(self._keys)


class ConversationWindows:
    """The customer-service window of each (business number, user) pair, kept on disk."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._last: dict[str, float] = self._load()

    def user_wrote(self, number: str, user: str, at: float | None = None) -> None:
        """Record a message from ``user`` to ``number`` sent at ``at`` (default: now)."""
        now = self.clock()
        moment = min(at, now) if at is not None else now
        key = f"{number}:{user}"
        if moment <= self._last.get(key, 0.0):
            return
        self._last = {k: t for k, t in self._last.items() if now - t < WINDOW_SECONDS}
        self._last[key] = moment
        try:
            write_private(self.path, json.dumps(self._last))
        except OSError as exc:
            log.error("whatsapp: cannot save %s: %s", self.path, exc)

    def is_open(self, number: str, user: str) -> bool:
        """Whether free-form messages may go from ``number`` to ``user`` now."""
        last = self._last.get(f"{number}:{user}")
        return last is not None and self.clock() - last < WINDOW_SECONDS

    def _load(self) -> dict[str, float]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("whatsapp: ignoring unreadable %s (%s)", self.path, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)}


class StatusLog:
    """Appends status callbacks as JSON lines; rotates once past ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int = 5 * 1024 * 1024) -> None:
        self.path = path
        self.max_bytes = max_bytes

    def append(self, record: dict[str, Any]) -> None:
        """Write one record (errors are logged: a full disk must not stop the channel)."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.path.exists() and self.path.stat().st_size > self.max_bytes:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        except OSError as exc:
            log.error("whatsapp: cannot record a status in %s: %s", self.path, exc)

    def read(self) -> list[dict[str, Any]]:
        """The records of the current file, oldest first (unreadable lines skipped)."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records
