"""Full-text search over messages; who spoke in which session; per-person notes.

SQLite gets the FTS5 table ``messages_fts`` (external content: ``messages.content``) and the
triggers that keep it in sync, PostgreSQL a GIN index on the messages' ``tsvector``; both
are built here for the messages already stored. ``session_people`` starts with the chats
bound to sessions (a private chat's id is its person's id: ``telegram:123``).

A later revision that rebuilds ``messages`` on SQLite (batch mode) drops the triggers with
the old table and must create them again (:func:`create_sqlite_search`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of openpista.memory.search.PG_VECTOR as of this revision.
_PG_VECTOR = "to_tsvector('simple'::regconfig, left(content, 100000))"

_SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content) "
    "VALUES ('delete', old.id, old.content); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content) "
    "VALUES ('delete', old.id, old.content); "
    "INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END",
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
)


def create_sqlite_search() -> None:
    """The FTS5 table and its triggers, filled from the stored messages."""
    for statement in _SQLITE_SEARCH:
        op.execute(statement)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX ix_messages_search ON messages USING gin ({_PG_VECTOR})")
    else:
        create_sqlite_search()
    op.create_table(
        "session_people",
        sa.Column("session_id", sa.String(255), nullable=False),
        sa.Column("channel_id", sa.String(255), nullable=False),
        sa.Column("person", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "channel_id", "person", name="pk_session_people"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_session_people_session_id_sessions",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_session_people_person", "session_people", ["person"])
    op.create_index("ix_session_people_channel_id", "session_people", ["channel_id"])
    op.execute(
        "INSERT INTO session_people (session_id, channel_id, person) "
        "SELECT session_id, channel_id, channel_id FROM channel_sessions"
    )
    op.create_table(
        "notes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("person", sa.String(255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notes"),
    )
    op.create_index("ix_notes_person_id", "notes", ["person", "id"])


def downgrade() -> None:
    op.drop_index("ix_notes_person_id", table_name="notes")
    op.drop_table("notes")
    op.drop_index("ix_session_people_channel_id", table_name="session_people")
    op.drop_index("ix_session_people_person", table_name="session_people")
    op.drop_table("session_people")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_messages_search", table_name="messages")
        return
    for trigger in ("messages_fts_insert", "messages_fts_delete", "messages_fts_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS messages_fts")
