"""Fixtures shared by openpista-core's tests.

The PostgreSQL fixtures start one real server per test session, only when a test asks for
it. Without the server binaries they fail (never skip): the test command installs the
Debian package ``postgresql``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from openpista.memory import MemoryStore
from openpista_testing.postgres import PostgresServer

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL server for the whole test session."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """Async SQLAlchemy URL of the session server's default database (shared by tests)."""
    return postgres_server.url


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """URL of a new, empty database on the session server, dropped after the test."""
    name = f"test_{os.getpid()}_{next(_database_numbers)}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh database on the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/memory.db"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[MemoryStore]:
    """A migrated store on :func:`database_url`, closed after the test."""
    async with await MemoryStore.open(database_url) as opened:
        yield opened


@pytest.fixture
async def memory(tmp_path: Path) -> AsyncIterator[MemoryStore]:
    """A migrated SQLite store in the test's own directory, closed after the test."""
    async with await MemoryStore.open(f"sqlite+aiosqlite:///{tmp_path / 'memory.db'}") as opened:
        yield opened
