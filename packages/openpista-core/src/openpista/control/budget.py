"""The ``budget`` request of the control socket: show the caps, or set or remove one.

``{"type": "budget"}`` answers what ``openpista budget`` shows;
``{"type": "budget", "daily": USD}`` or ``{"type": "budget", "session": ID, "usd": USD}``
sets a cap (``null``: remove it, ``[budget]`` applies again), stored and applied from the
next LLM request on: a chat stopped by the budget goes on without a restart.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from openpista.control.chat import BadRequest
from openpista.models import utc_now
from openpista.observability.budget import budget_report

if TYPE_CHECKING:
    from openpista.control.protocol import Frame
    from openpista.observability.usage import UsageMeter


async def budget_request(meter: UsageMeter, frame: Frame) -> Frame:
    """The reply to a ``budget`` frame: the report, after the change it asks for."""
    if "daily" in frame and "session" in frame:
        raise BadRequest('give "daily" or "session", not both')
    if "daily" in frame:
        await meter.set_limit("daily", "", _usd(frame["daily"], "daily"))
    elif "session" in frame:
        session = frame["session"]
        if not isinstance(session, str) or not session:
            raise BadRequest('"session" must be a session id')
        await meter.set_limit("session", session, _usd(frame.get("usd"), "usd"))
    report = await budget_report(meter.memory, await meter.limits(), utc_now())
    return {"type": "result", "data": report}


def _usd(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise BadRequest(f'"{name}" must be a positive number of USD or null')
    return float(value)
