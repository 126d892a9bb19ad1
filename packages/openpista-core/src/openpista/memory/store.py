"""Conversation memory: sessions and their messages, in SQLite or PostgreSQL.

Usage::

    async with await MemoryStore.open("sqlite+aiosqlite:///~/.openpista/memory.db") as store:
        await store.ensure_session("telegram:42")
        await store.append_messages("telegram:42", [Message(role="user", content="hi")])
        history = await store.load_messages("telegram:42")

:meth:`MemoryStore.open` expands ``~``, creates the directory of a SQLite file and upgrades the
schema to the newest Alembic revision, so a database written by an older openpista is
upgraded in place. Every write is one transaction; SQLite runs in WAL mode with
``synchronous=NORMAL``: a committed message survives a crash or kill of the process, and the
database is never corrupted; a power loss may undo the last commits (the price of not
syncing the disk on every message, which halved the gateway's throughput).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from pydantic import ValidationError
from sqlalchemy import Connection, Row, Select, delete, event, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from openpista.memory.tables import (
    CHANNEL_ID_MAX_LENGTH,
    DECISION_ACTIONS,
    DECISION_SOURCES,
    SESSION_ID_MAX_LENGTH,
    TITLE_MAX_LENGTH,
    TOOL_NAME_MAX_LENGTH,
    VERSION_TABLE,
    ChannelSessionRow,
    MessageRow,
    SessionRow,
    ToolDecisionRow,
)
from openpista.models import Message, utc_now

__all__ = [
    "MemoryStore",
    "MemoryStoreError",
    "SessionExistsError",
    "SessionInfo",
    "SessionNotFoundError",
    "ToolDecision",
    "alembic_config",
    "create_engine_for",
    "expand_database_url",
    "recent_window",
    "upgrade_database",
]

log = logging.getLogger(__name__)

MIGRATIONS_LOCATION = "openpista.memory:migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000

# Execution option that marks the store's write engine; SQLite transactions started through
# it take the write lock up front (BEGIN IMMEDIATE), so that a read-then-write transaction
# never fails half way with SQLITE_BUSY when another connection wrote in between.
_WRITE_OPTION = "openpista_write"
# Arbitrary constant: the key of the PostgreSQL advisory lock held while migrating.
_MIGRATION_LOCK_KEY = 0x6F70_6973_7461


class MemoryStoreError(Exception):
    """The memory store cannot do what was asked; the message says why."""


class SessionNotFoundError(MemoryStoreError):
    """The session id names no stored session."""


class SessionExistsError(MemoryStoreError):
    """A session with that id already exists."""


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A stored session; timestamps are timezone-aware UTC."""

    id: str
    title: str | None
    created_at: datetime
    updated_at: datetime
    message_count: int


DecisionAction = Literal["allow", "deny"]
DecisionSource = Literal["policy", "user", "timeout"]


@dataclass(frozen=True, slots=True)
class ToolDecision:
    """One entry of the tool-policy audit trail: whether a tool call ran and who decided.

    ``decided_by`` is ``policy`` (a rule or the default), ``user`` (an ``/approve`` or
    ``/deny`` answer) or ``timeout`` (no answer in time); ``created_at`` is UTC.
    """

    id: int
    session_id: str
    channel_id: str
    tool: str
    arguments: dict[str, Any]
    action: DecisionAction
    decided_by: DecisionSource
    detail: str
    created_at: datetime


def expand_database_url(url: str) -> str:
    """``url`` with ``~`` expanded in a SQLite file path, which is also made absolute.

    ``sqlite+aiosqlite:///~/x.db`` becomes ``sqlite+aiosqlite:////home/me/x.db``. Other URLs
    (PostgreSQL, in-memory SQLite) come back unchanged.
    """
    parsed = _parse_url(url)
    database = parsed.database
    if (
        parsed.get_backend_name() != "sqlite"
        or not database
        or database == ":memory:"
        or database.startswith("file:")
    ):
        return url
    path = os.path.abspath(os.path.expanduser(database))
    return parsed.set(database=path).render_as_string(hide_password=False)


def create_engine_for(url: str) -> AsyncEngine:
    """An async engine for ``url``, set up the way the store uses it.

    ``~`` is expanded, bare ``sqlite://`` and ``postgresql://`` URLs get their async driver
    (aiosqlite, asyncpg), the directory of a SQLite file is created, and every SQLite
    connection gets WAL mode, foreign keys, ``synchronous=NORMAL`` and a busy timeout.
    """
    parsed = _with_async_driver(_parse_url(expand_database_url(url)))
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite:
        database = parsed.database or ""
        if not database or ":memory:" in database or parsed.query.get("mode") == "memory":
            raise MemoryStoreError(
                "an in-memory SQLite database cannot be shared by the store's connections; "
                "use a file, e.g. sqlite+aiosqlite:///~/.openpista/memory.db"
            )
        if not database.startswith("file:"):
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MemoryStoreError(
                    f"cannot create the directory of the memory database {database}: {exc}"
                ) from exc
            _create_private(database)
    try:
        engine = create_async_engine(parsed, json_serializer=_dump_json)
    except ImportError as exc:
        hint = (
            "install openpista-core[postgres] (asyncpg)"
            if parsed.get_backend_name() == "postgresql"
            else "install the driver named in the URL"
        )
        raise MemoryStoreError(
            f"no database driver for {parsed.drivername}: {exc}; {hint}"
        ) from exc
    except ArgumentError as exc:
        raise MemoryStoreError(f"unusable database URL {_safe(parsed)}: {exc}") from exc
    if is_sqlite:
        _configure_sqlite(engine)
    return engine


def _create_private(database: str) -> None:
    """Create the SQLite file readable by its owner only, like the credentials (SQLite gives
    its -wal and -shm files the mode of the database file); an existing file is kept as is."""
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return
    except OSError as exc:
        raise MemoryStoreError(
            f"cannot create the memory database {database}: {exc.strerror or exc}"
        ) from exc


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for the memory migrations shipped in this package.

    No ``alembic.ini`` is needed. ``url`` is only used when Alembic opens its own connection
    (drafting a revision); the store passes its connection in ``attributes["connection"]``.
    """
    config = Config()
    config.set_main_option("script_location", MIGRATIONS_LOCATION)
    if url is not None:
        # ConfigParser interpolation: a literal % (URL-encoded password) must be doubled.
        config.set_main_option("sqlalchemy.url", expand_database_url(url).replace("%", "%%"))
    return config


async def upgrade_database(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision`` (default: the newest)."""
    engine = create_engine_for(url)
    try:
        await _migrate(engine, revision)
    finally:
        await engine.dispose()


class MemoryStore:
    """Sessions and their messages. Open it with :meth:`open`; close it with :meth:`close`
    or by using it as an async context manager (``async with await MemoryStore.open(url)``).

    Safe for concurrent use by many tasks of one event loop, and by several processes on the
    same database. Methods raise :class:`MemoryStoreError` (or a subclass) for bad input, a
    missing or duplicate session, and database failures; bad input is rejected before
    anything is written.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        """Wrap an engine from :func:`create_engine_for` whose schema is at head.

        Prefer :meth:`open`, which also runs the migrations.
        """
        self._engine = engine
        self._writer = engine.execution_options(**{_WRITE_OPTION: True})
        self._last_stamp = datetime.min.replace(tzinfo=UTC)
        self._closed = False
        # SQLite has one writer at a time. Queueing our own writers here, instead of letting
        # them collide on the database lock, avoids SQLite's busy handler, which sleeps in
        # steps of up to 100 ms and caps a busy gateway at a few dozen turns a second.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @classmethod
    async def open(cls, url: str) -> Self:
        """Connect to ``url`` (``~`` expanded) and upgrade its schema to the newest revision."""
        engine = create_engine_for(url)
        try:
            await _migrate(engine, "head")
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        """Close every connection. Idempotent; the store cannot be used afterwards."""
        if not self._closed:
            self._closed = True
            await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine, for diagnostics and tests."""
        return self._engine

    async def schema_revision(self) -> str | None:
        """The Alembic revision the database is at."""
        async with self._transaction("reading the schema revision", write=False) as conn:
            return await conn.run_sync(_current_revision)

    # -- sessions ---------------------------------------------------------------------------

    async def create_session(
        self, session_id: str | None = None, title: str | None = None
    ) -> SessionInfo:
        """Create a session (id: a new uuid4 hex when not given).

        Raises :class:`SessionExistsError` when the id is taken.
        """
        sid = uuid.uuid4().hex if session_id is None else _check_session_id(session_id)
        title = _check_title(title)
        now = self._now()
        try:
            async with self._transaction(
                f"creating session {sid!r}", write=True, duplicates_expected=True
            ) as conn:
                await conn.execute(
                    insert(SessionRow).values(id=sid, title=title, created_at=now, updated_at=now)
                )
        except IntegrityError:
            raise SessionExistsError(f"session {sid!r} already exists") from None
        return SessionInfo(id=sid, title=title, created_at=now, updated_at=now, message_count=0)

    async def get_session(self, session_id: str) -> SessionInfo | None:
        """The session ``session_id``, or ``None`` if there is none."""
        sid = _check_session_id(session_id)
        async with self._transaction(f"reading session {sid!r}", write=False) as conn:
            row = (await conn.execute(_session_query().where(SessionRow.id == sid))).first()
        return None if row is None else _session_info(row)

    async def list_sessions(self, limit: int = 50) -> list[SessionInfo]:
        """Up to ``limit`` sessions, the most recently updated first."""
        _check_limit(limit)
        query = (
            _session_query()
            .order_by(SessionRow.updated_at.desc(), SessionRow.id.desc())
            .limit(limit)
        )
        async with self._transaction("listing sessions", write=False) as conn:
            rows = (await conn.execute(query)).all()
        return [_session_info(row) for row in rows]

    async def ensure_session(self, session_id: str, title: str | None = None) -> SessionInfo:
        """The session ``session_id``, created (with ``title``) if it does not exist yet."""
        found = await self.get_session(session_id)
        if found is not None:
            return found
        try:
            return await self.create_session(session_id, title)
        except SessionExistsError:
            # Another task or process created it between the two steps.
            found = await self.get_session(session_id)
            if found is None:  # created and deleted again meanwhile: report, do not loop
                raise
            return found

    async def touch_session(self, session_id: str) -> None:
        """Mark the session as updated now (it moves to the top of :meth:`list_sessions`)."""
        sid = _check_session_id(session_id)
        async with self._transaction(f"touching session {sid!r}", write=True) as conn:
            await self._touch(conn, sid)

    async def set_title(self, session_id: str, title: str | None) -> None:
        """Set or clear the session's title."""
        sid = _check_session_id(session_id)
        title = _check_title(title)
        async with self._transaction(f"renaming session {sid!r}", write=True) as conn:
            result = await conn.execute(
                update(SessionRow).where(SessionRow.id == sid).values(title=title)
            )
            if result.rowcount == 0:
                raise SessionNotFoundError(f"no session {sid!r}")

    async def delete_session(self, session_id: str) -> bool:
        """Delete the session, its messages, channel bindings and tool decisions;
        ``False`` if it did not exist."""
        sid = _check_session_id(session_id)
        async with self._transaction(f"deleting session {sid!r}", write=True) as conn:
            # Explicit rather than relying on ON DELETE CASCADE, which SQLite honours only on
            # connections with foreign keys enabled (a database may be opened by other tools).
            await conn.execute(delete(MessageRow).where(MessageRow.session_id == sid))
            await conn.execute(delete(ChannelSessionRow).where(ChannelSessionRow.session_id == sid))
            await conn.execute(delete(ToolDecisionRow).where(ToolDecisionRow.session_id == sid))
            result = await conn.execute(delete(SessionRow).where(SessionRow.id == sid))
            return result.rowcount > 0

    # -- messages ---------------------------------------------------------------------------

    async def append_messages(self, session_id: str, messages: Sequence[Message]) -> None:
        """Append ``messages`` to the session, all or none, in one transaction.

        Also updates the session's ``updated_at``. Raises :class:`SessionNotFoundError` if
        the session does not exist.
        """
        sid = _check_session_id(session_id)
        received: object = messages  # a lone Message is iterable too; catch that mistake
        if isinstance(received, Message):
            raise MemoryStoreError("append_messages takes a list; use append_message for one")
        rows = [_message_row(sid, message, index) for index, message in enumerate(messages)]
        if not rows:
            if await self.get_session(sid) is None:
                raise SessionNotFoundError(f"cannot append to session {sid!r}: no such session")
            return
        async with self._transaction(f"appending to session {sid!r}", write=True) as conn:
            # Updating the session first both checks that it exists and, on PostgreSQL,
            # locks its row, so concurrent appends to one session keep their order.
            await self._touch(conn, sid, action="cannot append to")
            await conn.execute(insert(MessageRow), rows)

    async def append_message(self, session_id: str, message: Message) -> None:
        """Append one message; see :meth:`append_messages`."""
        await self.append_messages(session_id, [message])

    async def load_messages(self, session_id: str, limit: int | None = None) -> list[Message]:
        """Every message of the session, in insertion order, exactly as appended.

        With ``limit``, only the newest ones: at most ``limit``, oldest first, starting at a
        user message (see :func:`recent_window`), read from the tail (the
        ``(session_id, id)`` index) however long the session is.
        Raises :class:`SessionNotFoundError` if the session does not exist.
        """
        sid = _check_session_id(session_id)
        if limit is not None:
            _check_limit(limit)
        async with self._transaction(f"loading session {sid!r}", write=False) as conn:
            found = await conn.scalar(select(SessionRow.id).where(SessionRow.id == sid))
            if found is None:
                raise SessionNotFoundError(f"cannot load session {sid!r}: no such session")
            return await _history(conn, sid, limit)

    async def start_turn(
        self, session_id: str, message: Message, history_limit: int | None = None
    ) -> list[Message]:
        """Begin a turn: create the session if needed, append ``message`` and return the
        history before it, all in one transaction (one round trip instead of four).

        With ``history_limit``, only the newest messages are read, as :meth:`load_messages`
        reads them with ``limit``.
        """
        sid = _check_session_id(session_id)
        if history_limit is not None:
            _check_limit(history_limit)
        row = _message_row(sid, message, 0)
        now = self._now()
        async with self._transaction(f"starting a turn in {sid!r}", write=True) as conn:
            upsert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
            await conn.execute(
                upsert(SessionRow)
                .values(id=sid, title=None, created_at=now, updated_at=now)
                .on_conflict_do_update(index_elements=[SessionRow.id], set_={"updated_at": now})
            )
            history = await _history(conn, sid, history_limit)
            await conn.execute(insert(MessageRow), [row])
        return history

    # -- channels ---------------------------------------------------------------------------

    async def bind_channel(self, channel_id: str, session_id: str) -> None:
        """Make ``channel_id`` (a chat, e.g. ``telegram:42``) talk to ``session_id``.

        Replaces an earlier binding of the channel; the session is created (untitled) when
        it does not exist. Both happen in one transaction.
        """
        cid = _check_channel_id(channel_id)
        sid = _check_session_id(session_id)
        now = self._now()
        async with self._transaction(f"binding channel {cid!r}", write=True) as conn:
            upsert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
            await conn.execute(
                upsert(SessionRow)
                .values(id=sid, title=None, created_at=now, updated_at=now)
                .on_conflict_do_nothing(index_elements=[SessionRow.id])
            )
            bind = upsert(ChannelSessionRow).values(channel_id=cid, session_id=sid, updated_at=now)
            await conn.execute(
                bind.on_conflict_do_update(
                    index_elements=[ChannelSessionRow.channel_id],
                    set_={"session_id": sid, "updated_at": now},
                )
            )

    async def ensure_channel(self, channel_id: str, session_id: str) -> str:
        """The session ``channel_id`` is bound to; if it is not bound yet, it is bound to
        ``session_id`` (created when missing) and that is returned.

        Atomic: of several tasks or processes that ensure one channel at the same time,
        all get the same session, and no session is left behind by the losers.
        """
        cid = _check_channel_id(channel_id)
        sid = _check_session_id(session_id)
        query = select(ChannelSessionRow.session_id).where(ChannelSessionRow.channel_id == cid)
        now = self._now()
        async with self._transaction(f"binding channel {cid!r}", write=True) as conn:
            bound = await conn.scalar(query)
            if bound is not None:
                return bound
            upsert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
            created = await conn.execute(
                upsert(SessionRow)
                .values(id=sid, title=None, created_at=now, updated_at=now)
                .on_conflict_do_nothing(index_elements=[SessionRow.id])
            )
            bind = await conn.execute(
                upsert(ChannelSessionRow)
                .values(channel_id=cid, session_id=sid, updated_at=now)
                .on_conflict_do_nothing(index_elements=[ChannelSessionRow.channel_id])
            )
            if bind.rowcount:
                return sid
            # Another process bound the channel in between (PostgreSQL; SQLite serializes
            # writers): use its session and drop the one made here for nothing.
            if created.rowcount:
                await conn.execute(delete(SessionRow).where(SessionRow.id == sid))
            winner = await conn.scalar(query)
        if winner is None:
            raise MemoryStoreError(f"channel {cid!r} was bound and unbound meanwhile; try again")
        return winner

    async def session_for_channel(self, channel_id: str) -> str | None:
        """The session ``channel_id`` is bound to, or ``None`` if it is not bound."""
        cid = _check_channel_id(channel_id)
        query = select(ChannelSessionRow.session_id).where(ChannelSessionRow.channel_id == cid)
        async with self._transaction(f"reading channel {cid!r}", write=False) as conn:
            return await conn.scalar(query)

    async def channels_of(self, session_ids: Sequence[str]) -> dict[str, list[str]]:
        """The chats (channel ids such as ``telegram:42``) bound to each of ``session_ids``,
        sorted; a session without a chat is left out."""
        if not session_ids:
            return {}
        query = (
            select(ChannelSessionRow.session_id, ChannelSessionRow.channel_id)
            .where(ChannelSessionRow.session_id.in_(list(session_ids)))
            .order_by(ChannelSessionRow.channel_id)
        )
        found: dict[str, list[str]] = {}
        async with self._transaction("reading the chats of sessions", write=False) as conn:
            for session_id, channel_id in await conn.execute(query):
                found.setdefault(session_id, []).append(channel_id)
        return found

    # -- tool decisions -----------------------------------------------------------------------

    async def record_decision(
        self,
        session_id: str,
        channel_id: str,
        tool: str,
        arguments: dict[str, Any],
        action: DecisionAction,
        decided_by: DecisionSource,
        detail: str = "",
    ) -> ToolDecision:
        """Append a tool-policy decision to the session's audit trail and return it.

        Raises :class:`SessionNotFoundError` if the session does not exist.
        """
        sid = _check_session_id(session_id)
        row: dict[str, Any] = {
            "session_id": sid,
            "channel_id": _check_channel_id(channel_id),
            "tool": _check_tool_name(tool),
            "arguments": dict(_check_arguments(arguments)),
            "action": _check_choice(action, DECISION_ACTIONS, "decision action"),
            "decided_by": _check_choice(decided_by, DECISION_SOURCES, "decided_by"),
            "detail": _check_detail(detail),
        }
        async with self._transaction(f"recording a decision in {sid!r}", write=True) as conn:
            found = await conn.scalar(select(SessionRow.id).where(SessionRow.id == sid))
            if found is None:
                raise SessionNotFoundError(
                    f"cannot record a decision in session {sid!r}: no such session"
                )
            row["created_at"] = self._now()
            result = await conn.execute(insert(ToolDecisionRow).values(**row))
            decision_id = (result.inserted_primary_key or (None,))[0]
        if not isinstance(decision_id, int):
            raise MemoryStoreError(f"the database gave no id for the decision: {decision_id!r}")
        return ToolDecision(id=decision_id, **row)

    async def list_decisions(self, session_id: str) -> list[ToolDecision]:
        """The session's tool-policy decisions, oldest first.

        Raises :class:`SessionNotFoundError` if the session does not exist.
        """
        sid = _check_session_id(session_id)
        query = (
            select(ToolDecisionRow)
            .where(ToolDecisionRow.session_id == sid)
            .order_by(ToolDecisionRow.id)
        )
        async with self._transaction(f"listing decisions of {sid!r}", write=False) as conn:
            found = await conn.scalar(select(SessionRow.id).where(SessionRow.id == sid))
            if found is None:
                raise SessionNotFoundError(
                    f"cannot list decisions of session {sid!r}: no such session"
                )
            rows = (await conn.execute(query)).all()
        return [
            ToolDecision(
                id=row.id,
                session_id=row.session_id,
                channel_id=row.channel_id,
                tool=row.tool,
                arguments=row.arguments,
                action=row.action,
                decided_by=row.decided_by,
                detail=row.detail,
                created_at=row.created_at,
            )
            for row in rows
        ]

    # -- internals --------------------------------------------------------------------------

    def _now(self) -> datetime:
        # Strictly increasing within the store, so that sessions touched one after the other
        # list in that order even when the clock has not advanced in between.
        now = utc_now()
        if now <= self._last_stamp:
            now = self._last_stamp + timedelta(microseconds=1)
        self._last_stamp = now
        return now

    async def _touch(self, conn: AsyncConnection, sid: str, action: str = "cannot touch") -> None:
        result = await conn.execute(
            update(SessionRow).where(SessionRow.id == sid).values(updated_at=self._now())
        )
        if result.rowcount == 0:
            raise SessionNotFoundError(f"{action} session {sid!r}: no such session")

    @asynccontextmanager
    async def _writer_turn(self, write: bool) -> AsyncIterator[None]:
        if write and self._write_lock is not None:
            async with self._write_lock:
                yield
        else:
            yield

    @asynccontextmanager
    async def _transaction(
        self, action: str, *, write: bool, duplicates_expected: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        if self._closed:
            raise MemoryStoreError("the memory store is closed")
        engine = self._writer if write else self._engine
        try:
            async with self._writer_turn(write), engine.begin() as conn:
                yield conn
        except IntegrityError as exc:
            if duplicates_expected:
                raise  # the caller turns it into SessionExistsError
            raise MemoryStoreError(
                f"database constraint violated while {action}: {_describe(exc)}"
            ) from exc
        except (SQLAlchemyError, OSError) as exc:
            raise MemoryStoreError(f"database error while {action}: {_describe(exc)}") from exc


# -- helpers --------------------------------------------------------------------------------


def recent_window(messages: list[Message]) -> list[Message]:
    """The tail ``messages`` with what comes before its first user message left out, so that
    no tool result is separated from the call that asked for it and the conversation starts
    the way every provider accepts. Without a user message, leading tool results go."""
    for start, message in enumerate(messages):
        if message.role == "user":
            return messages[start:]
    start = 0
    while start < len(messages) and messages[start].role == "tool":
        start += 1
    return messages[start:]


async def _history(conn: AsyncConnection, sid: str, limit: int | None = None) -> list[Message]:
    columns = (
        MessageRow.id,
        MessageRow.role,
        MessageRow.content,
        MessageRow.tool_calls,
        MessageRow.tool_result,
        MessageRow.created_at,
    )
    query = select(*columns).where(MessageRow.session_id == sid)
    if limit is None:
        rows = (await conn.execute(query.order_by(MessageRow.id))).all()
        return [_to_message(sid, row) for row in rows]
    tail = (await conn.execute(query.order_by(MessageRow.id.desc()).limit(limit))).all()
    return recent_window([_to_message(sid, row) for row in reversed(tail)])


def _check_limit(limit: object) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise MemoryStoreError(f"limit must be a positive integer, not {limit!r}")


def _parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        # Not echoed: the string may hold a password.
        raise MemoryStoreError(
            "not a valid database URL (expected e.g. sqlite+aiosqlite:///~/.openpista/memory.db "
            "or postgresql+asyncpg://user@host/db)"
        ) from None


def _with_async_driver(url: URL) -> URL:
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        return url.set(drivername="sqlite+aiosqlite")
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        return url.set(drivername="postgresql+asyncpg")
    return url


def _safe(url: URL | str) -> str:
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)


def _describe(exc: BaseException) -> str:
    # The driver's own message, without SQLAlchemy's statement and parameter dump (which
    # may hold a megabyte of message content).
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    return f"{type(exc).__name__}: {exc}".strip()


def _dump_json(value: Any) -> str:
    # ASCII escapes keep any Python string storable, lone surrogates and NUL included
    # (PostgreSQL ``json`` checks escapes only for syntax; raw NUL bytes it cannot store).
    return json.dumps(value, separators=(",", ":"))


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module, which would otherwise not
        # BEGIN before SELECT or DDL (so migrations would not be atomic); see _on_begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            mode = cursor.fetchone()
            if not mode or str(mode[0]).lower() != "wal":
                log.warning("SQLite refused WAL mode (journal_mode=%s); using it anyway", mode)
            # NORMAL in WAL mode: commits survive a process crash, never corrupt; only a power
            # loss may undo the newest ones. FULL would fsync every message.
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = bool(conn.get_execution_options().get(_WRITE_OPTION))
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _current_revision(conn: Connection) -> str | None:
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _upgrade_sync(conn: Connection, revision: str) -> None:
    if conn.dialect.name == "postgresql":
        # Replicas starting together: one migrates, the others wait here, then find the
        # schema at head. Released at the end of the transaction.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, revision)


async def _migrate(engine: AsyncEngine, revision: str) -> None:
    where = _safe(engine.url)
    writer = engine.execution_options(**{_WRITE_OPTION: True})
    try:
        async with writer.begin() as conn:
            await conn.run_sync(_upgrade_sync, revision)
    except CommandError as exc:
        raise MemoryStoreError(
            f"cannot migrate the memory database {where} to {revision}: {exc} "
            "(a database written by a newer openpista needs that version)"
        ) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise MemoryStoreError(
            f"cannot open the memory database {where}: {_describe(exc)}"
        ) from exc


def _check_session_id(session_id: object) -> str:
    return _check_identifier(session_id, "session id", SESSION_ID_MAX_LENGTH)


def _check_channel_id(channel_id: object) -> str:
    return _check_identifier(channel_id, "channel id", CHANNEL_ID_MAX_LENGTH)


def _check_tool_name(tool: object) -> str:
    return _check_identifier(tool, "tool name", TOOL_NAME_MAX_LENGTH)


def _check_identifier(value: object, what: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise MemoryStoreError(f"{what} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise MemoryStoreError(f"{what} must not be empty")
    if len(value) > max_length:
        raise MemoryStoreError(f"{what} is {len(value)} characters long; the limit is {max_length}")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise MemoryStoreError(f"{what} {value!r} contains control characters")
    _check_text(value, what)
    return value


def _check_choice(value: object, choices: tuple[str, ...], what: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise MemoryStoreError(f"{what} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _check_arguments(arguments: object) -> dict[str, Any]:
    if not isinstance(arguments, dict):
        raise MemoryStoreError(f"tool arguments must be a dict, not {type(arguments).__name__}")
    try:
        # Stored as escaped ASCII JSON: any JSON-able value is storable, NUL included.
        json.dumps(arguments, allow_nan=False)  # PostgreSQL's json has no NaN or Infinity
    except (TypeError, ValueError, RecursionError) as exc:
        raise MemoryStoreError(f"tool arguments are not storable as JSON: {exc}") from None
    return arguments


def _check_detail(detail: object) -> str:
    if not isinstance(detail, str):
        raise MemoryStoreError(f"decision detail must be a string, not {type(detail).__name__}")
    _check_text(detail, "decision detail")
    return detail


def _check_title(title: object) -> str | None:
    if title is None:
        return None
    if not isinstance(title, str):
        raise MemoryStoreError(f"session title must be a string, not {type(title).__name__}")
    if len(title) > TITLE_MAX_LENGTH:
        raise MemoryStoreError(
            f"session title is {len(title)} characters long; the limit is {TITLE_MAX_LENGTH}"
        )
    _check_text(title, "session title")
    return title


def _check_text(value: str, what: str) -> None:
    # Checked here so that both backends reject the same input, before any write.
    if "\x00" in value:
        raise MemoryStoreError(
            f"{what} contains a NUL character (at {value.index(chr(0))}), which the database "
            "cannot store; strip or escape it first"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MemoryStoreError(
            f"{what} is not valid Unicode text (a lone surrogate at {exc.start})"
        ) from None


def _message_row(sid: str, message: object, index: int) -> dict[str, Any]:
    if not isinstance(message, Message):
        raise MemoryStoreError(f"message {index} is a {type(message).__name__}, not a Message")
    _check_text(message.content, f"content of message {index}")
    tool_calls = [call.model_dump(mode="json") for call in message.tool_calls]
    # Files are stored by name and path; their inline data is for the turn they came in.
    without_data = {"attachments": {"__all__": {"data"}}}
    tool_result = (
        None
        if message.tool_result is None
        else message.tool_result.model_dump(mode="json", exclude=without_data)
    )
    return {
        "session_id": sid,
        "role": message.role,
        "content": message.content,
        "tool_calls": tool_calls or None,
        "tool_result": tool_result,
        "created_at": message.created_at,
    }


def _to_message(sid: str, row: Row[Any]) -> Message:
    try:
        return Message.model_validate(
            {
                "role": row.role,
                "content": row.content,
                "tool_calls": row.tool_calls or [],
                "tool_result": row.tool_result,
                "created_at": row.created_at,
            }
        )
    except ValidationError as exc:
        raise MemoryStoreError(
            f"stored message {row.id} of session {sid!r} is not a valid message: {exc}"
        ) from exc


def _session_query() -> Select[str, str | None, datetime, datetime, int]:
    message_count = (
        select(func.count(MessageRow.id))
        .where(MessageRow.session_id == SessionRow.id)
        .correlate(SessionRow)
        .scalar_subquery()
    )
    return select(
        SessionRow.id,
        SessionRow.title,
        SessionRow.created_at,
        SessionRow.updated_at,
        message_count.label("message_count"),
    )


def _session_info(row: Row[str, str | None, datetime, datetime, int]) -> SessionInfo:
    sid, title, created_at, updated_at, message_count = row
    return SessionInfo(
        id=sid,
        title=title,
        created_at=created_at,
        updated_at=updated_at,
        message_count=int(message_count),
    )
