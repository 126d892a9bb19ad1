"""Conversation memory on SQLAlchemy (SQLite by default, PostgreSQL by URL).

See :mod:`openpista.memory.store` for the API and ``migrations/README.md`` for schema changes.
"""

from openpista.memory.store import (
    MemoryStore,
    MemoryStoreError,
    SessionExistsError,
    SessionInfo,
    SessionNotFoundError,
    expand_database_url,
    upgrade_database,
)

__all__ = [
    "MemoryStore",
    "MemoryStoreError",
    "SessionExistsError",
    "SessionInfo",
    "SessionNotFoundError",
    "expand_database_url",
    "upgrade_database",
]
