"""Worker tasks and their reports (the worker report system).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # New tables only.
    op.create_table(
        "worker_tasks",
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(255), nullable=False),
        sa.Column("channel_id", sa.String(255), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("percent", sa.Float(), nullable=True),
        sa.Column("dropped", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name="pk_worker_tasks"),
    )
    op.create_index("ix_worker_tasks_created_at", "worker_tasks", ["created_at"])
    op.create_index("ix_worker_tasks_status", "worker_tasks", ["status"])
    op.create_table(
        "worker_reports",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("report_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("body", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_worker_reports"),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["worker_tasks.task_id"],
            name="fk_worker_reports_task_id_worker_tasks",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("task_id", "report_id", name="uq_worker_reports_task_id_report_id"),
    )


def downgrade() -> None:
    op.drop_table("worker_reports")
    op.drop_index("ix_worker_tasks_status", table_name="worker_tasks")
    op.drop_index("ix_worker_tasks_created_at", table_name="worker_tasks")
    op.drop_table("worker_tasks")
