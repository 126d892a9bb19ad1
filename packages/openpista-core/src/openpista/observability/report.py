"""Usage as people read it: the ``/usage`` reply and the ``openpista usage`` table."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from openpista.memory.usage import UsageFilter, UsageTotal
from openpista.models import utc_now
from openpista.observability.budget import start_of_day

if TYPE_CHECKING:
    from openpista.runtime import Runtime

SET = "the budget set with `openpista budget`"
_SINCE = re.compile(r"^(\d{1,6})([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """The time ``text`` ago: ``30m``, ``12h``, ``7d``, ``2w``, or ``today`` (00:00 UTC);
    ``ValueError`` says what is accepted."""
    now = now or utc_now()
    if text.strip().lower() == "today":
        return start_of_day(now)
    found = _SINCE.match(text.strip().lower())
    if found is None:
        raise ValueError(f"--since {text!r}: give a number and a unit (30m, 12h, 7d, 2w) or today")
    return now - timedelta(**{_UNITS[found[2]]: int(found[1])})


def summed(totals: Sequence[UsageTotal]) -> tuple[int, int, float, int]:
    """``(prompt tokens, completion tokens, USD, unpriced responses)`` of ``totals``."""
    return (
        sum(t.prompt_tokens for t in totals),
        sum(t.completion_tokens for t in totals),
        sum(t.cost_usd for t in totals),
        sum(t.unpriced for t in totals),
    )


def describe(totals: Sequence[UsageTotal]) -> str:
    """``N tokens (I in, O out), $C`` of ``totals`` (``cost unknown`` for unpriced ones)."""
    prompt, completion, cost, unpriced = summed(totals)
    text = f"{prompt + completion:,} tokens ({prompt:,} in, {completion:,} out), ${cost:.4f}"
    if unpriced:
        text += f" (+{unpriced} response{'s' if unpriced > 1 else ''} of unknown price)"
    return text


async def usage_reply(runtime: Runtime, session_id: str) -> str:
    """The ``/usage`` answer: this session's usage, then today's of every session, against
    the budgets that are set."""
    mine = await runtime.memory.usage_totals(UsageFilter(session_id=session_id))
    line = f"session {session_id}: {describe(mine)}"
    limits = await runtime.meter.limits()
    capped = limits.session_usd(session_id)
    if capped is not None:
        where = SET if session_id in limits.sessions else "[budget] per_session_usd"
        line += f" of {where} = ${capped[0]:g}"
    return f"{line}\ntoday (UTC), every session: {await today_spend(runtime)}"


async def today_spend(runtime: Runtime) -> str:
    """What every session used today (UTC), against the daily budget when one is set (the
    TUI's home screen shows it)."""
    today = await runtime.memory.usage_totals(UsageFilter(since=start_of_day(utc_now())))
    limits = await runtime.meter.limits()
    capped = limits.daily_usd()
    if capped is None:
        return describe(today)
    where = SET if limits.daily is not None else "[budget] daily_usd"
    return f"{describe(today)} of {where} = ${capped[0]:g}"


def totals_table(totals: Sequence[UsageTotal]) -> list[tuple[str, ...]]:
    """Rows of the ``openpista usage`` table (a header, one row per model, a total)."""
    rows: list[tuple[str, ...]] = [("PROVIDER", "MODEL", "RESPONSES", "IN", "OUT", "USD")]
    for t in totals:
        cost = f"{t.cost_usd:.4f}" + (f" (+{t.unpriced} unpriced)" if t.unpriced else "")
        rows.append(
            (t.provider, t.model, str(t.responses), f"{t.prompt_tokens:,}",
             f"{t.completion_tokens:,}", cost)
        )  # fmt: skip
    prompt, completion, cost_usd, _ = summed(totals)
    responses = sum(t.responses for t in totals)
    rows.append(("total", "", str(responses), f"{prompt:,}", f"{completion:,}", f"{cost_usd:.4f}"))
    return rows
