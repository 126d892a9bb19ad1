"""Cluster mode: the messenger's id of each message stored (``ChannelEvent.delivery_id``),
so that a message given to the cluster twice (a webhook retried, a Discord message fetched
again after the gateway moved to another replica) runs once. PostgreSQL only; SQLite is not
changed.

``channel`` is the channel's name, ``delivery_id`` the messenger's id (or its SHA-256 when
long), ``chat`` the event's channel id; the inbox sweep deletes rows older than 7 days.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE TABLE cluster_deliveries (channel text NOT NULL, delivery_id text NOT NULL, "
        "chat text NOT NULL, stored_at timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY (channel, delivery_id))"
    )
    op.execute(
        "CREATE INDEX ix_cluster_deliveries_recent ON cluster_deliveries (channel, stored_at)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TABLE cluster_deliveries")
