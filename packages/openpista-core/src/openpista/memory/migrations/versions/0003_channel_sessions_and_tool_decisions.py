"""Channel -> session mapping; the audit trail of tool-policy decisions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-05-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # New tables only: existing sessions and messages are not touched.
    op.create_table(
        "channel_sessions",
        sa.Column("channel_id", sa.String(255), nullable=False),
        sa.Column("session_id", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel_id", name="pk_channel_sessions"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_channel_sessions_session_id_sessions",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_channel_sessions_session_id", "channel_sessions", ["session_id"])
    op.create_table(
        "tool_decisions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("session_id", sa.String(255), nullable=False),
        sa.Column("channel_id", sa.String(255), nullable=False),
        sa.Column("tool", sa.String(255), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tool_decisions"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_tool_decisions_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("action IN ('allow', 'deny')", name="ck_tool_decisions_action"),
        sa.CheckConstraint(
            "decided_by IN ('policy', 'user', 'timeout')", name="ck_tool_decisions_decided_by"
        ),
    )
    op.create_index("ix_tool_decisions_session_id_id", "tool_decisions", ["session_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_tool_decisions_session_id_id", table_name="tool_decisions")
    op.drop_table("tool_decisions")
    op.drop_index("ix_channel_sessions_session_id", table_name="channel_sessions")
    op.drop_table("channel_sessions")
