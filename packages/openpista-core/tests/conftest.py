"""Fixtures shared by openpista-core's tests.

The PostgreSQL fixtures start one real server per test session, only when a test asks for
it. Without the server binaries they fail (never skip): the test command installs the
Debian package ``postgresql``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from openpista.testing.postgres import PostgresServer

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
