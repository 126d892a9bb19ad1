"""Test helpers for the memory database: a session made the way a chat's first message
makes one, the chat a channel is bound to, and a look at the database from outside the store.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from openpista.memory import MemoryStore, create_engine_for
from openpista.memory.engine import Database
from openpista.memory.schema import migrate
from openpista.memory.tables import VERSION_TABLE


async def new_session(store: MemoryStore, session_id: str) -> None:
    """Create the empty session ``session_id`` as a chat's first contact does: the gateway's
    router binds a chat (here ``test:`` and a digest of the id) to it."""
    digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    await store.ensure_channel(f"test:{digest}", session_id)


async def bound_session(store: MemoryStore, channel_id: str) -> str | None:
    """The session ``channel_id`` is bound to, as ``openpista sessions`` finds it."""
    sessions = [info.id for info in await store.list_sessions(limit=10_000)]
    for session_id, channels in (await store.channels_of(sessions)).items():
        if channel_id in channels:
            return session_id
    return None


@asynccontextmanager
async def database(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the database at ``url``, beside the store's own; disposed afterwards."""
    engine = create_engine_for(url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def upgrade_database(url: str, revision: str) -> None:
    """Migrate the database at ``url`` to ``revision``, as an older openpista left it."""
    database = Database(url)
    try:
        await migrate(database, revision)
    finally:
        await database.close()


async def schema_revision(url: str) -> str | None:
    """The Alembic revision the database at ``url`` is at (``None`` before any)."""
    async with database(url) as engine, engine.connect() as conn:
        tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        if VERSION_TABLE not in tables:
            return None
        revision: str | None = await conn.scalar(
            sa.text(f"SELECT version_num FROM {VERSION_TABLE}")
        )
        return revision
