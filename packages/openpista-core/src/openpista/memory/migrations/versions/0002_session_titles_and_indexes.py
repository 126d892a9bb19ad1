"""Session titles; indexes for loading a session's messages and listing recent sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column with no default: existing sessions simply have no title, and both
    # backends add it without rewriting the table.
    op.add_column("sessions", sa.Column("title", sa.String(500), nullable=True))
    op.create_index("ix_sessions_updated_at", "sessions", ["updated_at"])
    op.create_index("ix_messages_session_id_id", "messages", ["session_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_messages_session_id_id", table_name="messages")
    op.drop_index("ix_sessions_updated_at", table_name="sessions")
    # Not a batch operation on purpose: SQLite (3.35+) drops the column in place, whereas a
    # batch rebuild would DROP the sessions table and cascade-delete every message.
    op.drop_column("sessions", "title")
