"""Conversation memory on SQLAlchemy (SQLite by default, PostgreSQL by URL).

:class:`MemoryStore` (``store``) keeps sessions, their messages and the chats bound to them;
``decisions`` the audit trail of the tool policy; ``worker_reports`` the worker tasks and
their reports (:class:`WorkerLog`); ``engine`` the connections, ``schema`` the
migrations (see ``migrations/README.md`` for writing one), ``checks`` the errors and input
checks; ``search`` the full-text search, ``people`` who spoke in which session, ``notes``
the per-person notes (docs/memory.md). Import the public names from here.
"""

from openpista.memory.checks import MemoryStoreError, SessionNotFoundError
from openpista.memory.decisions import DecisionAction, DecisionSource, ToolDecision
from openpista.memory.engine import create_engine_for, expand_database_url
from openpista.memory.notes import Note
from openpista.memory.people import Speaker
from openpista.memory.schema import alembic_config
from openpista.memory.search import SearchHit, SearchScope
from openpista.memory.store import MemoryStore, SessionInfo
from openpista.memory.worker_reports import StoredReport, TaskStatus, WorkerLog, WorkerTask

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
