"""Summaries of a session's older messages: context compaction (revision ``0007``).

When a session grows past the model's context window, the agent has the LLM summarise its
older part and stores the summary with the id of the last message it covers. A turn's
history is then the newest summary (as a ``system`` message) and the messages after it;
the messages themselves stay stored, searchable and exportable.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, ForeignKey, Index, String, Text, insert, select

from openpista.memory.tables import (
    SESSION_ID_MAX_LENGTH,
    Base,
    Mapped,
    MessageId,
    MessageRow,
    UTCDateTime,
    mapped_column,
)
from openpista.models import Message

SUMMARY_HEADING = "Summary of the earlier part of this conversation:"


class SummaryRow(Base):
    """A summary of the messages of ``session_id`` up to ``upto_message_id``."""

    __tablename__ = "summaries"

    id: Mapped[int] = mapped_column(MessageId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        String(SESSION_ID_MAX_LENGTH),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
    )
    upto_message_id: Mapped[int] = mapped_column(MessageId, nullable=False)
    text: Mapped[str] = mapped_column(Text(), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (Index("ix_summaries_session_id_id", "session_id", "id"),)


def latest_summary(conn: Connection, sid: str) -> tuple[int, Message] | None:
    """The newest summary of ``sid``: the id of the last message it covers, and itself as
    a ``system`` message; ``None`` when the session was never compacted."""
    row = conn.execute(
        select(SummaryRow.upto_message_id, SummaryRow.text, SummaryRow.created_at)
        .where(SummaryRow.session_id == sid)
        .order_by(SummaryRow.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    content = f"{SUMMARY_HEADING}\n{row.text}"
    summary = Message(role="system", content=content, created_at=row.created_at)
    return int(row.upto_message_id), summary


def insert_summary(conn: Connection, sid: str, keep_last: int, text: str, now: datetime) -> bool:
    """Store ``text`` as the summary of every message of ``sid`` but the newest
    ``keep_last``; ``False`` (nothing stored) when the session has no older message."""
    upto = conn.scalar(
        select(MessageRow.id)
        .where(MessageRow.session_id == sid)
        .order_by(MessageRow.id.desc())
        .limit(1)
        .offset(keep_last)
    )
    if upto is None:
        return False
    conn.execute(
        insert(SummaryRow).values(session_id=sid, upto_message_id=upto, text=text, created_at=now)
    )
    return True
