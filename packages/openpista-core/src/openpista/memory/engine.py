"""Where the memory lives: database URLs, engines set up the way the store uses them, and
:class:`Database`, which runs each of the store's transactions as one function.

SQLite runs on the standard ``sqlite3`` driver in threads of its own: a transaction costs one
hop to its thread (writes go to one thread, in order; reads to a few), where aiosqlite made
a hop of every driver call and cost most of a message's CPU under load. SQLite files are
created readable by their owner only and every connection runs in WAL mode with
``synchronous=NORMAL``, foreign keys and a busy timeout. PostgreSQL runs on asyncpg, in the
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from openpista.memory.checks import MemoryStoreError, describe

if TYPE_CHECKING:
    # PostgreSQL's dialect and the async engines are imported when a PostgreSQL URL (or
    # create_engine_for) needs them: a SQLite store runs without them.
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from openpista.memory.tables import Base

log = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_READERS = 4
"""Threads that read a SQLite database at the same time (WAL readers do not block)."""

# Execution option that marks a write transaction; SQLite transactions started with it take
# the write lock up front (BEGIN IMMEDIATE), so that a read-then-write transaction never
# fails half way with SQLITE_BUSY when another process wrote in between.
WRITE_OPTION = "openpista_write"


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


def safe_url(url: URL | str) -> str:
    """``url`` with its password masked, for messages."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)


def create_engine_for(url: str) -> AsyncEngine:
    """An async engine for ``url`` (aiosqlite for SQLite, asyncpg for PostgreSQL), set up
    like the store's connections: for tools such as Alembic's revision drafting and for
    inspecting a database; the store itself runs on :class:`Database`."""
    from sqlalchemy.ext.asyncio import create_async_engine

    parsed = _prepared(url)
    engine = _engine(parsed, create_async_engine)
    if parsed.get_backend_name() == "sqlite":
        _configure_sqlite(engine.sync_engine)
    return engine


def upsert(conn: Connection, table: type[Base]) -> sqlite.Insert | postgresql.Insert:
    """An ``INSERT`` into ``table`` that can say what to do on a conflict (both dialects
    spell ``ON CONFLICT`` alike, but SQLAlchemy builds it per dialect)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table.__table__)
    return sqlite.insert(table.__table__)


class Database:
    """The store's connections: :meth:`run` runs a function in one transaction."""

    def __init__(self, url: str) -> None:
        """Connect lazily to ``url`` (``~`` expanded, SQLite directory and file created)."""
        parsed = _prepared(url)
        self.url = parsed
        self.dialect = parsed.get_backend_name()
        self._closed = False
        self._async: AsyncEngine | None = None
        self._sync: Engine | None = None
        if self.dialect == "sqlite":
            self._sync = _engine(parsed.set(drivername="sqlite+pysqlite"), create_engine)
            _configure_sqlite(self._sync)
            self._sync_writer = self._sync.execution_options(**{WRITE_OPTION: True})
            # One writer thread queues this process's writers in order, instead of letting
            # them collide on the database lock (SQLite's busy handler sleeps in steps of up
            # to 100 ms).
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="openpista-db-write")
            self._readers = ThreadPoolExecutor(SQLITE_READERS, thread_name_prefix="openpista-db")
        else:
            from sqlalchemy.ext.asyncio import create_async_engine

            self._async = _engine(parsed, create_async_engine)

    async def run(self, work: Callable[[Connection], T], action: str, *, write: bool) -> T:
        """``work(connection)`` in one transaction, committed when it returns; database
        failures become :class:`MemoryStoreError` naming ``action``."""
        try:
            return await self.transaction(work, write=write)
        except (SQLAlchemyError, OSError) as exc:
            raise _failed(exc, action) from exc

    @contextlib.asynccontextmanager
    async def held(self, action: str) -> AsyncIterator[Held]:
        """A :class:`Held` transaction, committed when the block ends (rolled back if it
        raises); database failures become :class:`MemoryStoreError` naming ``action``."""
        if self._async is None:
            yield Held(self, action, None)
            return
        if self._closed:
            raise MemoryStoreError("the memory store is closed")
        try:
            async with self._async.begin() as conn:
                yield Held(self, action, conn)
        except (SQLAlchemyError, OSError) as exc:
            raise _failed(exc, action) from exc

    async def transaction(self, work: Callable[[Connection], T], *, write: bool) -> T:
        """``work(connection)`` in one transaction, errors as the driver raised them."""
        if self._closed:
            raise MemoryStoreError("the memory store is closed")
        if self._sync is not None:
            engine, executor = (
                (self._sync_writer, self._writer) if write else (self._sync, self._readers)
            )
            return await asyncio.get_running_loop().run_in_executor(
                executor, _in_transaction, engine, work
            )
        assert self._async is not None  # noqa: S101  an invariant for mypy, not a check
        async with self._async.begin() as conn:
            return await conn.run_sync(work)

    async def close(self) -> None:
        """Close every connection and thread; idempotent. Work already queued finishes."""
        if self._closed:
            return
        self._closed = True
        if self._sync is not None:
            await asyncio.to_thread(self._shutdown_sqlite, self._sync)
        if self._async is not None:
            await self._async.dispose()

    def _shutdown_sqlite(self, engine: Engine) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        engine.dispose()


class Held:
    """The work of one :meth:`Database.held` block. On PostgreSQL its :meth:`run` calls share
    one transaction, kept open across whatever the block awaits in between: the row locks
    they take (``FOR UPDATE SKIP LOCKED`` claims) hold until the block ends. On SQLite each
    call is a transaction of its own (SQLite has no row locks to hold)."""

    def __init__(self, database: Database, action: str, conn: AsyncConnection | None) -> None:
        self._database = database
        self._action = action
        self._conn = conn

    async def run(self, work: Callable[[Connection], T], *, write: bool) -> T:
        """``work(connection)`` in the block's transaction (see the class documentation);
        ``write`` as in :meth:`Database.run` (SQLite only: a read goes to a reader thread)."""
        if self._conn is None:
            return await self._database.run(work, self._action, write=write)
        try:
            return await self._conn.run_sync(work)
        except (SQLAlchemyError, OSError) as exc:
            raise _failed(exc, self._action) from exc


def _failed(exc: SQLAlchemyError | OSError, action: str) -> MemoryStoreError:
    if isinstance(exc, IntegrityError):
        return MemoryStoreError(f"database constraint violated while {action}: {describe(exc)}")
    return MemoryStoreError(f"database error while {action}: {describe(exc)}")


def dump_json(value: Any) -> str:
    """JSON columns as written: ASCII escapes keep any Python string storable, lone
    surrogates and NUL included (PostgreSQL ``json`` checks escapes only for syntax; raw NUL
    bytes it cannot store)."""
    return json.dumps(value, separators=(",", ":"))


def _in_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    with engine.begin() as conn:
        return work(conn)


def _prepared(url: str) -> URL:
    """The URL expanded, with its async driver, and its SQLite file ready."""
    parsed = _with_async_driver(_parse_url(expand_database_url(url)))
    if parsed.get_backend_name() != "sqlite":
        return parsed
    database = parsed.database or ""
    if not database or ":memory:" in database or parsed.query.get("mode") == "memory":
        raise MemoryStoreError(
            "an in-memory SQLite database cannot be shared by the store's connections; "
            "use a file, e.g. sqlite+aiosqlite:///~/.openpista/memory.db"
        )
    if not database.startswith("file:"):
        try:
            Path(database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # ~/.openpista
        except OSError as exc:
            raise MemoryStoreError(
                f"cannot create the directory of the memory database {database}: {exc}"
            ) from exc
        _create_private(database)
    return parsed


def _engine(url: URL, factory: Callable[..., T]) -> T:
    try:
        return factory(url, json_serializer=dump_json)
    except ImportError as exc:
        hint = (
            "install openpista-core[postgres] (asyncpg)"
            if url.get_backend_name() == "postgresql"
            else "install the driver named in the URL"
        )
        raise MemoryStoreError(f"no database driver for {url.drivername}: {exc}; {hint}") from exc
    except ArgumentError as exc:
        raise MemoryStoreError(f"unusable database URL {safe_url(url)}: {exc}") from exc


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


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
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

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = bool(conn.get_execution_options().get(WRITE_OPTION))
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
