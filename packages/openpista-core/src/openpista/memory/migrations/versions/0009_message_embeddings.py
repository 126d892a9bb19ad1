"""Semantic search: one embedding vector per message and model.

SQLite stores a vector as a BLOB of little-endian float32; PostgreSQL as ``real[]`` (which
pgvector casts to ``vector`` where the extension is installed). A new table only.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "message_embeddings",
        sa.Column(
            "message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column(
            "vector",
            sa.LargeBinary().with_variant(postgresql.ARRAY(sa.REAL()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("message_id", name="pk_message_embeddings"),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name="fk_message_embeddings_message_id_messages",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_message_embeddings_model", "message_embeddings", ["model"])


def downgrade() -> None:
    op.drop_index("ix_message_embeddings_model", table_name="message_embeddings")
    op.drop_table("message_embeddings")
