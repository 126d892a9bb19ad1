"""Spending caps: ``[budget] daily_usd`` (every session, since 00:00 UTC) and
``per_session_usd`` (one session, all time), and those the operator sets at run time with
``openpista budget set`` (stored: a restart keeps them). Reached, no LLM request is made
and the chat is told why in one line."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from openpista.models import ERROR_PREFIX

if TYPE_CHECKING:
    from openpista.config import BudgetSettings
    from openpista.memory import MemoryStore

SET_DAILY = "openpista budget set --daily USD"
SET_SESSION = "openpista budget set --session {session} USD"


def start_of_day(now: datetime) -> datetime:
    """00:00 UTC of the day of ``now``: when the daily budget starts again."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class BudgetLimits:
    """The caps in force: ``[budget]``, and on top of it the limits set at run time
    (``daily``, and per session in ``sessions``)."""

    settings: BudgetSettings
    daily: float | None = None
    sessions: dict[str, float] = field(default_factory=dict)

    @classmethod
    async def load(cls, memory: MemoryStore, settings: BudgetSettings) -> BudgetLimits:
        """``settings`` with the limits stored in ``memory``."""
        limits = cls(settings)
        for kind, session_id, usd in await memory.budget_limits():
            limits.apply(kind, session_id, usd)
        return limits

    def apply(self, kind: str, session_id: str, usd: float | None) -> None:
        """Take a limit set (or, ``usd`` ``None``, removed) at run time."""
        if kind == "daily":
            self.daily = usd
        elif usd is None:
            self.sessions.pop(session_id, None)
        else:
            self.sessions[session_id] = usd

    @property
    def capped(self) -> bool:
        """Whether any cap applies (else no spend is read before a request)."""
        return bool(
            self.daily is not None
            or self.settings.daily_usd is not None
            or self.settings.per_session_usd is not None
            or self.sessions
        )

    def daily_usd(self) -> tuple[float, str] | None:
        """The daily cap and where it comes from (``None``: no cap)."""
        if self.daily is not None:
            return self.daily, f"the daily budget of `openpista budget` = {self.daily:g}"
        usd = self.settings.daily_usd
        return None if usd is None else (usd, f"[budget] daily_usd = {usd:g}")

    def session_usd(self, session_id: str) -> tuple[float, str] | None:
        """The cap of ``session_id`` and where it comes from (``None``: no cap)."""
        usd = self.sessions.get(session_id)
        if usd is not None:
            return usd, f"this session's budget of `openpista budget` = {usd:g}"
        usd = self.settings.per_session_usd
        return None if usd is None else (usd, f"[budget] per_session_usd = {usd:g}")


async def budget_refusal(
    memory: MemoryStore, limits: BudgetLimits, session_id: str, now: datetime
) -> str | None:
    """Why ``session_id`` may not call the LLM at ``now`` (one ❌ line), or ``None``."""
    daily = limits.daily_usd()
    if daily is not None:
        cap, source = daily
        today = await memory.spent(since=start_of_day(now))
        if today >= cap:
            return (
                f"{ERROR_PREFIX}The daily budget is spent: ${today:.4f} of {source} since "
                f"00:00 UTC, so I did not ask the LLM. Raise it with `{SET_DAILY}`, or wait "
                "for tomorrow."
            )
    capped = limits.session_usd(session_id)
    if capped is not None:
        cap, source = capped
        spent = await memory.spent(session_id=session_id)
        if spent >= cap:
            raise_it = SET_SESSION.format(session=session_id)
            return (
                f"{ERROR_PREFIX}This session's budget is spent: ${spent:.4f} of {source}, so "
                f"I did not ask the LLM. Start a new session with /clear, or raise it with "
                f"`{raise_it}`."
            )
    return None


async def budget_report(memory: MemoryStore, limits: BudgetLimits, now: datetime) -> dict[str, Any]:
    """What ``openpista budget`` shows: each cap, where it comes from, what it has spent."""
    daily = limits.daily_usd()
    sessions = [
        {"session": sid, "usd": usd, "spent": round(await memory.spent(session_id=sid), 6)}
        for sid, usd in sorted(limits.sessions.items())
    ]
    return {
        "daily": {
            "usd": None if daily is None else daily[0],
            "set": limits.daily is not None,
            "spent_today": round(await memory.spent(since=start_of_day(now)), 6),
        },
        "per_session_usd": limits.settings.per_session_usd,
        "sessions": sessions,
    }
