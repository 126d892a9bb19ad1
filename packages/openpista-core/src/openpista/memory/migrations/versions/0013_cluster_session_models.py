"""Cluster mode: each session's ``/model`` choice, so that every replica answers it with the
same model. PostgreSQL only (replicas share a PostgreSQL database); SQLite is not changed.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE TABLE cluster_session_models ("
        " session_id text PRIMARY KEY,"
        " provider text,"
        " model text,"
        " changed_at timestamptz NOT NULL DEFAULT now())"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TABLE cluster_session_models")
