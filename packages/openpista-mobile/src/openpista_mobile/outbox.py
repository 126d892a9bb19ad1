"""Pushes waiting for offline devices, kept on disk so a daemon restart loses none.

One file, ``<home>/mobile/outbox.json`` (mode 0600: it holds answers), maps each device to
its last push number and the push frames it has not received yet, oldest first; rewritten
on every change. A damaged file is set aside (``outbox.json.damaged``) with a warning, and
the outbox starts empty: the daemon starts either way.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openpista import write_private

log = logging.getLogger(__name__)


class Outbox:
    """Per-device push numbers and waiting pushes, at most ``size`` per device; what a
    device that ``knows`` no longer names had waiting is dropped at load."""

    def __init__(self, path: Path, size: int, knows: Callable[[str], bool]) -> None:
        self.path = path
        self.size = size
        self._waiting: dict[str, deque[dict[str, Any]]] = {}
        self._numbers: dict[str, int] = {}
        self._load(knows)

    def next_number(self, device: str) -> int:
        """The number of the next push to ``device``. Written down at once: numbers go on
        across restarts (a client drops a push numbered at or below the last it got)."""
        number = self._numbers.get(device, 0) + 1
        self._numbers[device] = number
        self._save()
        return number

    def keep(self, device: str, frame: dict[str, Any]) -> dict[str, Any] | None:
        """Keep ``frame`` (numbered by :meth:`next_number`) for ``device``; returns the
        oldest frame dropped to make room."""
        waiting = self._waiting.setdefault(device, deque())
        dropped = waiting.popleft() if len(waiting) >= self.size else None
        waiting.append(frame)
        self._save()
        return dropped

    def waiting(self, device: str) -> list[dict[str, Any]]:
        """What waits for ``device``, oldest first."""
        return list(self._waiting.get(device, ()))

    def delivered(self, device: str) -> None:
        """Forget what waited for ``device`` (it has been pushed)."""
        if self._waiting.pop(device, None) is not None:
            self._save()

    def _save(self) -> None:
        state = {
            device: {"seq": number, "frames": list(self._waiting.get(device, ()))}
            for device, number in self._numbers.items()
        }
        try:
            write_private(self.path, json.dumps(state).encode())
        except OSError as exc:
            log.warning("mobile: cannot write the outbox %s: %s", self.path, exc)

    def _load(self, knows: Callable[[str], bool]) -> None:
        try:
            state = json.loads(self.path.read_bytes())
            if not isinstance(state, dict):
                raise ValueError("not a table of devices")
            for device, entry in state.items():
                if not knows(device):
                    continue  # a device no longer configured: its pushes are dropped
                number, frames = entry["seq"], entry["frames"]
                if not isinstance(number, int) or not isinstance(frames, list):
                    raise ValueError(f"bad entry for device {device!r}")
                self._numbers[device] = number
                if frames:
                    self._waiting[device] = deque(frames[-self.size :] if self.size else [])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._waiting.clear()
            self._numbers.clear()
            aside = self.path.with_name(self.path.name + ".damaged")
            log.warning(
                "mobile: the outbox %s is unreadable (%s); set aside as %s",
                self.path,
                exc,
                aside.name,
            )
            with contextlib.suppress(OSError):
                self.path.replace(aside)
