"""Cluster mode: an inbox event remembers where its turn began (``mark``), so that a turn
cut short (its replica died) and run again by the session's new owner replaces what the
first run stored instead of storing the user's message twice. PostgreSQL only; SQLite is
not changed.

``mark`` is NULL until a replica starts the event's turn; then it is the id of the
session's newest message at that moment (0: none yet).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE cluster_inbox ADD COLUMN mark bigint")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE cluster_inbox DROP COLUMN mark")
