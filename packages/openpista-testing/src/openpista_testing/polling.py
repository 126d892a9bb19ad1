"""Waiting in a test for something that happens in the background."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def eventually(check: Callable[[], Any], wait: float = 20.0) -> Any:
    """The first truthy value of ``check()``, asked every 20 ms; AssertionError after
    ``wait`` seconds without one."""
    deadline = time.monotonic() + wait
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition never became true")
        await asyncio.sleep(0.02)
