"""Conversation memory on SQLAlchemy (SQLite by default, PostgreSQL by URL).

:class:`MemoryStore` (``store``) keeps sessions, their messages and the chats bound to them;
``decisions`` the audit trail of the tool policy; ``worker_reports`` the worker tasks and
their reports (:class:`WorkerLog`); ``engine`` the connections, ``schema`` the
migrations (see ``migrations/README.md`` for writing one), ``checks`` the errors and input
checks; ``search`` the full-text search, ``people`` who spoke in which session, ``notes``
the per-person notes (docs/memory.md). Import the public names from here: each is imported
on first use, so that a single shot never loads what it does not touch (worker reports).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openpista._lazy import lazy_exports

if TYPE_CHECKING:
    from openpista.memory.checks import MemoryStoreError, SessionNotFoundError
    from openpista.memory.decisions import DecisionAction, DecisionSource, ToolDecision
    from openpista.memory.engine import create_engine_for, expand_database_url
    from openpista.memory.notes import Note
    from openpista.memory.people import Speaker
    from openpista.memory.schema import alembic_config
    from openpista.memory.search import SearchHit, SearchScope
    from openpista.memory.store import MemoryStore, SessionInfo
    from openpista.memory.worker_reports import StoredReport, TaskStatus, WorkerLog, WorkerTask

_EXPORTS = {
    "MemoryStoreError": "openpista.memory.checks",
    "SessionNotFoundError": "openpista.memory.checks",
    "DecisionAction": "openpista.memory.decisions",
    "DecisionSource": "openpista.memory.decisions",
    "ToolDecision": "openpista.memory.decisions",
    "create_engine_for": "openpista.memory.engine",
    "expand_database_url": "openpista.memory.engine",
    "Note": "openpista.memory.notes",
    "Speaker": "openpista.memory.people",
    "alembic_config": "openpista.memory.schema",
    "SearchHit": "openpista.memory.search",
    "SearchScope": "openpista.memory.search",
    "MemoryStore": "openpista.memory.store",
    "SessionInfo": "openpista.memory.store",
    "StoredReport": "openpista.memory.worker_reports",
    "TaskStatus": "openpista.memory.worker_reports",
    "WorkerLog": "openpista.memory.worker_reports",
    "WorkerTask": "openpista.memory.worker_reports",
}

__all__ = [
    "DecisionAction",
    "DecisionSource",
    "MemoryStore",
    "MemoryStoreError",
    "Note",
    "SearchHit",
    "SearchScope",
    "SessionInfo",
    "SessionNotFoundError",
    "Speaker",
    "StoredReport",
    "TaskStatus",
    "ToolDecision",
    "WorkerLog",
    "WorkerTask",
    "alembic_config",
    "create_engine_for",
    "expand_database_url",
]

__getattr__ = lazy_exports(__name__, _EXPORTS)
