"""Token usage and cost, one row per LLM response (revision ``0005``), and the budget
limits set at run time (revision ``0012``).

:class:`~openpista.memory.MemoryStore` records and sums them; this module holds the table,
the record and its SQL. Rows do not reference ``sessions``: deleting a session does not
give back what it spent today.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Float, Index, Integer, String, delete, func, insert, select

from openpista.memory.checks import MemoryStoreError, check_channel_id, check_text
from openpista.memory.tables import (
    CHANNEL_ID_MAX_LENGTH,
    SESSION_ID_MAX_LENGTH,
    Base,
    Mapped,
    MessageId,
    UTCDateTime,
    mapped_column,
)

NAME_MAX_LENGTH = 255
"""Longest provider or model name stored."""
MAX_TOKENS = 2**31 - 1
"""Largest token count of one response stored (the columns are 32-bit on PostgreSQL)."""


class UsageRow(Base):
    """The tokens and cost of one LLM response."""

    __tablename__ = "usage"

    id: Mapped[int] = mapped_column(MessageId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(SESSION_ID_MAX_LENGTH), nullable=False)
    channel_id: Mapped[str] = mapped_column(String(CHANNEL_ID_MAX_LENGTH), nullable=False)
    provider: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH), nullable=False)
    model: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH), nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer(), nullable=False)
    completion_tokens: Mapped[int] = mapped_column(Integer(), nullable=False)
    # NULL when the model's price is unknown (neither litellm's map nor [budget.prices]).
    cost_usd: Mapped[float | None] = mapped_column(Float(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (
        Index("ix_usage_created_at", "created_at"),
        Index("ix_usage_session_id", "session_id"),
    )


class BudgetLimitRow(Base):
    """A budget limit set at run time (revision ``0012``), overriding ``[budget]``:
    ``daily`` (``session_id`` empty) or ``session`` (that session's cap)."""

    __tablename__ = "budget_limits"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(SESSION_ID_MAX_LENGTH), primary_key=True)
    usd: Mapped[float] = mapped_column(Float(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


@dataclass(frozen=True, slots=True)
class UsageTotal:
    """What one provider/model used over the rows summed: responses, tokens and cost
    (``cost_usd`` counts the priced responses only; ``unpriced`` says how many were not)."""

    provider: str
    model: str
    responses: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    unpriced: int

    def as_dict(self) -> dict[str, Any]:
        """The total as JSON-ready values."""
        return {
            "provider": self.provider,
            "model": self.model,
            "responses": self.responses,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "unpriced": self.unpriced,
        }


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which rows to sum: all of them, or those since a time, of a session, of a channel
    (``telegram`` matches every ``telegram:...`` chat; ``telegram:42`` one chat)."""

    since: datetime | None = None
    session_id: str | None = None
    channel: str | None = None


def usage_row(
    session_id: str,
    channel_id: str,
    provider: object,
    model: object,
    tokens: tuple[object, object],
    cost_usd: object,
) -> dict[str, Any]:
    """The columns of a usage record of ``session_id`` (already checked); the others are
    checked here and :class:`MemoryStoreError` names what is wrong."""
    counts = []
    for count in tokens:
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_TOKENS:
            raise MemoryStoreError(
                f"a token count must be an integer from 0 to {MAX_TOKENS}, not {count!r}"
            )
        counts.append(count)
    if cost_usd is not None and (
        isinstance(cost_usd, bool)
        or not isinstance(cost_usd, int | float)
        or not 0 <= cost_usd < math.inf
    ):
        raise MemoryStoreError(f"a cost must be a finite non-negative number, not {cost_usd!r}")
    return {
        "session_id": session_id,
        "channel_id": check_channel_id(channel_id) if channel_id else "",
        "provider": _check_name(provider, "provider"),
        "model": _check_name(model, "model"),
        "prompt_tokens": counts[0],
        "completion_tokens": counts[1],
        "cost_usd": None if cost_usd is None else float(cost_usd),
    }


def insert_usage(conn: Connection, row: dict[str, Any], now: datetime) -> None:
    """Store the usage ``row`` (from :func:`usage_row`) of a response received at ``now``."""
    conn.execute(insert(UsageRow).values(**row, created_at=now))


def select_totals(conn: Connection, where: UsageFilter) -> list[UsageTotal]:
    """The sums of the rows ``where`` selects, one per provider and model, costliest first."""
    query = select(
        UsageRow.provider,
        UsageRow.model,
        func.count(),
        func.coalesce(func.sum(UsageRow.prompt_tokens), 0),
        func.coalesce(func.sum(UsageRow.completion_tokens), 0),
        func.coalesce(func.sum(UsageRow.cost_usd), 0.0, type_=Float()),
        func.count() - func.count(UsageRow.cost_usd),
    ).group_by(UsageRow.provider, UsageRow.model)
    if where.since is not None:
        query = query.where(UsageRow.created_at >= where.since)
    if where.session_id is not None:
        query = query.where(UsageRow.session_id == where.session_id)
    if where.channel is not None:
        chat = UsageRow.channel_id == where.channel
        query = query.where(
            chat | UsageRow.channel_id.startswith(f"{where.channel}:", autoescape=True)
        )
    totals = [
        UsageTotal(
            provider, model, int(n), int(prompt), int(completion), float(cost or 0), int(free)
        )
        for provider, model, n, prompt, completion, cost, free in conn.execute(query)
    ]
    return sorted(totals, key=lambda t: (-t.cost_usd, t.provider, t.model))


def select_spent(conn: Connection, since: datetime | None, session_id: str | None) -> float:
    """USD spent by the priced rows since ``since`` and/or of ``session_id``."""
    query = select(func.coalesce(func.sum(UsageRow.cost_usd), 0.0, type_=Float()))
    if since is not None:
        query = query.where(UsageRow.created_at >= since)
    if session_id is not None:
        query = query.where(UsageRow.session_id == session_id)
    return float(conn.execute(query).scalar_one() or 0)


BUDGET_KINDS = ("daily", "session")


def budget_limit_row(kind: object, session_id: str, usd: object) -> dict[str, Any] | None:
    """The columns of a budget limit (``session_id`` already checked, ``""`` for
    ``daily``), ``None`` for ``usd`` ``None`` (its removal); :class:`MemoryStoreError` names
    what is wrong."""
    if kind not in BUDGET_KINDS:
        raise MemoryStoreError(f"a budget limit is daily or session, not {kind!r}")
    if (kind == "daily") != (session_id == ""):
        raise MemoryStoreError("a session budget limit names its session, a daily one none")
    if usd is None:
        return None
    if isinstance(usd, bool) or not isinstance(usd, int | float) or not 0 < usd < math.inf:
        raise MemoryStoreError(f"a budget must be a positive number of USD, not {usd!r}")
    return {"kind": kind, "session_id": session_id, "usd": float(usd)}


def replace_budget_limit(
    conn: Connection, kind: str, session_id: str, row: dict[str, Any] | None, now: datetime
) -> None:
    """Store the limit ``row`` (from :func:`budget_limit_row`) in place of the one of
    ``kind``/``session_id``; ``None``: remove it."""
    conn.execute(
        delete(BudgetLimitRow).where(
            BudgetLimitRow.kind == kind, BudgetLimitRow.session_id == session_id
        )
    )
    if row is not None:
        conn.execute(insert(BudgetLimitRow).values(**row, updated_at=now))


def select_budget_limits(conn: Connection) -> list[tuple[str, str, float]]:
    """Every budget limit set at run time: ``(kind, session_id, usd)``."""
    query = select(BudgetLimitRow.kind, BudgetLimitRow.session_id, BudgetLimitRow.usd)
    return [
        (str(k), str(s), float(u)) for k, s, u in conn.execute(query.order_by("kind", "session_id"))
    ]


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > NAME_MAX_LENGTH:
        raise MemoryStoreError(f"a {what} name must be 1 to {NAME_MAX_LENGTH} characters")
    check_text(value, f"the {what} name")
    return value
