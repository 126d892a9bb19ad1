"""Alembic environment of the memory database.

At runtime :func:`openpista.memory.schema.migrate` runs the migrations itself and
hands over an open connection (``config.attributes["connection"]``) whose transaction it
owns. Without one (writing a revision with ``alembic.command.revision``, see ``README.md``),
this module opens its own engine from ``sqlalchemy.url``, configured like the store's.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

import openpista.memory.store
import openpista.memory.worker_reports  # noqa: F401  (with store: every table in Base.metadata)
from openpista.memory.tables import VERSION_TABLE, Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot alter most column properties in place; batch mode rebuilds tables.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    # Inside the caller's transaction this opens nothing and commits nothing.
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    from openpista.memory.engine import create_engine_for

    engine = create_engine_for(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _run_offline(url: str) -> None:
    context.configure(
        url=url, target_metadata=target_metadata, version_table=VERSION_TABLE, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    url = config.get_main_option("sqlalchemy.url") or ""
    if context.is_offline_mode():
        _run_offline(url)
        return
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
    else:
        asyncio.run(_run_with_own_engine(url))


_main()
