"""The audit trail of the tool policy: which tool calls ran, which were refused, and who
decided (the policy, the user, or nobody in time). :class:`~openpista.memory.MemoryStore`
records and lists them; this module holds the record and its SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, insert, select

from openpista.memory.checks import (
    MemoryStoreError,
    check_arguments,
    check_channel_id,
    check_choice,
    check_detail,
    check_tool_name,
)
from openpista.memory.tables import DECISION_ACTIONS, DECISION_SOURCES, ToolDecisionRow

DecisionAction = Literal["allow", "deny"]
DecisionSource = Literal["policy", "user", "timeout"]


@dataclass(frozen=True, slots=True)
class ToolDecision:
    """One entry of the tool-policy audit trail: whether a tool call ran and who decided.

    ``decided_by`` is ``policy`` (a rule or the default), ``user`` (an ``/approve`` or
    ``/deny`` answer) or ``timeout`` (no answer in time); ``created_at`` is UTC.
    """

    id: int
    session_id: str
    channel_id: str
    tool: str
    arguments: dict[str, Any]
    action: DecisionAction
    decided_by: DecisionSource
    detail: str
    created_at: datetime


def decision_row(
    session_id: str,
    channel_id: object,
    tool: object,
    arguments: object,
    action: object,
    decided_by: object,
    detail: object,
) -> dict[str, Any]:
    """The columns of a decision of session ``session_id`` (already checked), the others
    checked here; :class:`MemoryStoreError` names what is wrong."""
    return {
        "session_id": session_id,
        "channel_id": check_channel_id(channel_id),
        "tool": check_tool_name(tool),
        "arguments": dict(check_arguments(arguments)),
        "action": check_choice(action, DECISION_ACTIONS, "decision action"),
        "decided_by": check_choice(decided_by, DECISION_SOURCES, "decided_by"),
        "detail": check_detail(detail),
    }


def insert_decision(conn: Connection, row: dict[str, Any], now: datetime) -> ToolDecision:
    """Store the decision ``row`` (from :func:`decision_row`) made at ``now``."""
    result = conn.execute(insert(ToolDecisionRow).values(**row, created_at=now))
    decision_id = (result.inserted_primary_key or (None,))[0]
    if not isinstance(decision_id, int):
        raise MemoryStoreError(f"the database gave no id for the decision: {decision_id!r}")
    return ToolDecision(id=decision_id, created_at=now, **row)


def select_decisions(conn: Connection, session_id: str) -> list[ToolDecision]:
    """The decisions of ``session_id``, oldest first."""
    query = (
        select(ToolDecisionRow)
        .where(ToolDecisionRow.session_id == session_id)
        .order_by(ToolDecisionRow.id)
    )
    return [
        ToolDecision(
            id=row.id,
            session_id=row.session_id,
            channel_id=row.channel_id,
            tool=row.tool,
            arguments=row.arguments,
            action=row.action,
            decided_by=row.decided_by,
            detail=row.detail,
            created_at=row.created_at,
        )
        for row in conn.execute(query)
    ]
