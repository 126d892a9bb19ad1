"""Cluster mode: the last run of each ``[[cron]]`` entry, so that a run fires once across
replicas, also when the cron leader changes (a run missed meanwhile fires once, after).
PostgreSQL only (replicas share a PostgreSQL database); SQLite is not changed.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE TABLE cluster_cron_runs (entry text PRIMARY KEY, due timestamptz NOT NULL)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TABLE cluster_cron_runs")
