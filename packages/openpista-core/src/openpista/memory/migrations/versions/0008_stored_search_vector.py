"""PostgreSQL: the messages' tsvector stored in a generated column, indexed by GIN.

Revision 0006 indexed the expression; ranking had to compute every match's tsvector again
from its text (a word found in most of 100 000 messages took a second or more). The stored
column is computed once, on insert. SQLite is not changed (FTS5 stores its index).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the expression of revision 0006 (openpista.memory.search.PG_VECTOR).
_VECTOR = "to_tsvector('simple'::regconfig, left(content, 100000))"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"ALTER TABLE messages ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({_VECTOR}) "
        "STORED"
    )
    op.execute("CREATE INDEX ix_messages_search_vector ON messages USING gin (search_vector)")
    op.drop_index("ix_messages_search", table_name="messages")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"CREATE INDEX ix_messages_search ON messages USING gin ({_VECTOR})")
    op.drop_index("ix_messages_search_vector", table_name="messages")
    op.execute("ALTER TABLE messages DROP COLUMN search_vector")
