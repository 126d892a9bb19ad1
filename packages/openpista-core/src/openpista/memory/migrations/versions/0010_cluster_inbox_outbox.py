"""Cluster mode: the inbox (events handed to the replica owning their session) and the
outbox (answers for the replica holding the user's connection). PostgreSQL only: replicas
share a PostgreSQL database; SQLite is not changed.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE TABLE cluster_inbox ("
        " id bigserial PRIMARY KEY,"
        " session_id text NOT NULL,"
        " event jsonb NOT NULL,"
        " origin text NOT NULL,"
        " reply_to text,"
        " created_at timestamptz NOT NULL DEFAULT now())"
    )
    op.execute("CREATE INDEX ix_cluster_inbox_session_id ON cluster_inbox (session_id, id)")
    op.execute(
        "CREATE TABLE cluster_outbox ("
        " id bigserial PRIMARY KEY,"
        " replica_id text NOT NULL,"
        " message jsonb NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now())"
    )
    op.execute("CREATE INDEX ix_cluster_outbox_replica_id ON cluster_outbox (replica_id, id)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TABLE cluster_outbox")
    op.execute("DROP TABLE cluster_inbox")
