"""Cluster mode: the inbox's events and the outbox's answers are kept as ASCII JSON text.

``jsonb`` refuses what a message may hold (a NUL, half of a surrogate pair: ``\\u0000``,
``\\ud800``); the replicas write the JSON with every non-ASCII character escaped and read it
back as it was. PostgreSQL only; SQLite is not changed.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE cluster_inbox ALTER COLUMN event TYPE text USING event::text")
    op.execute("ALTER TABLE cluster_outbox ALTER COLUMN message TYPE text USING message::text")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # What jsonb cannot hold is dropped (a NUL, half of a surrogate pair).
    op.execute(r"DELETE FROM cluster_inbox WHERE event ~* '\\u(0000|d[89a-f])'")
    op.execute(r"DELETE FROM cluster_outbox WHERE message ~* '\\u(0000|d[89a-f])'")
    op.execute("ALTER TABLE cluster_inbox ALTER COLUMN event TYPE jsonb USING event::jsonb")
    op.execute("ALTER TABLE cluster_outbox ALTER COLUMN message TYPE jsonb USING message::jsonb")
