"""Spending caps: ``[budget] daily_usd`` (every session, since 00:00 UTC) and
``per_session_usd`` (one session, all time). Reached, no LLM request is made and the chat
is told why in one line."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from openpista.models import ERROR_PREFIX

if TYPE_CHECKING:
    from openpista.config import BudgetSettings
    from openpista.memory import MemoryStore


def start_of_day(now: datetime) -> datetime:
    """00:00 UTC of the day of ``now``: when the daily budget starts again."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def budget_refusal(
    memory: MemoryStore, budget: BudgetSettings, session_id: str, now: datetime
) -> str | None:
    """Why ``session_id`` may not call the LLM at ``now`` (one ❌ line), or ``None``."""
    if budget.daily_usd is not None:
        today = await memory.spent(since=start_of_day(now))
        if today >= budget.daily_usd:
            return (
                f"{ERROR_PREFIX}The daily budget is spent: ${today:.4f} of "
                f"[budget] daily_usd = {budget.daily_usd:g} since 00:00 UTC, so I did not ask "
                "the LLM. Raise it in the config and restart, or wait for tomorrow."
            )
    if budget.per_session_usd is not None:
        spent = await memory.spent(session_id=session_id)
        if spent >= budget.per_session_usd:
            return (
                f"{ERROR_PREFIX}This session's budget is spent: ${spent:.4f} of "
                f"[budget] per_session_usd = {budget.per_session_usd:g}, so I did not ask the "
                "LLM. Start a new session with /clear, or raise it in the config and restart."
            )
    return None
