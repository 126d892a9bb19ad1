"""Schema migrations of the memory database: the Alembic revisions shipped in
``migrations/versions``, run by the store when it opens a database (see
``migrations/README.md`` for writing one).

Opening a database whose stored revision is already :data:`HEAD_REVISION` costs one query:
Alembic is imported only when there is something to migrate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from openpista.memory.checks import MemoryStoreError, describe
from openpista.memory.engine import Database, expand_database_url, safe_url
from openpista.memory.tables import VERSION_TABLE

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_LOCATION = "openpista.memory:migrations"
HEAD_REVISION = "0019"
"""The newest revision in ``migrations/versions``; a new revision updates it (a test checks
it against Alembic's head)."""
# Arbitrary constant: the key of the PostgreSQL advisory lock held while migrating.
_MIGRATION_LOCK_KEY = 0x6F70_6973_7461


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for the memory migrations shipped in this package.

    No ``alembic.ini`` is needed. ``url`` is only used when Alembic opens its own connection
    (drafting a revision); the store passes its connection in ``attributes["connection"]``.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS_LOCATION)
    if url is not None:
        # ConfigParser interpolation: a literal % (URL-encoded password) must be doubled.
        config.set_main_option("sqlalchemy.url", expand_database_url(url).replace("%", "%%"))
    return config


async def migrate(database: Database, revision: str) -> None:
    """Upgrade ``database`` to ``revision``, in one transaction; ``"head"`` when the stored
    revision is :data:`HEAD_REVISION` already does nothing more than read it."""
    if revision == "head" and await stored_revisions(database) == {HEAD_REVISION}:
        return
    from alembic import command
    from alembic.util import CommandError

    where = safe_url(database.url)

    def run(conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            # Replicas starting together: one migrates, the others wait here, then find the
            # schema at head. Released at the end of the transaction.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, revision)

    try:
        await database.transaction(run, write=True)
    except CommandError as exc:
        raise MemoryStoreError(
            f"cannot migrate the memory database {where} to {revision}: {exc} "
            "(a database written by a newer openpista needs that version)"
        ) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise MemoryStoreError(f"cannot open the memory database {where}: {describe(exc)}") from exc


async def stored_revisions(database: Database) -> set[str]:
    """The revisions stamped in ``database`` (none for a new database, or one that cannot be
    read: migrating it reports why)."""

    def read(conn: Connection) -> set[str]:
        rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608  only constant SQL fragments; values are bound parameters
        return {str(row[0]) for row in rows}

    try:
        return await database.transaction(read, write=False)
    except (SQLAlchemyError, OSError):
        return set()
