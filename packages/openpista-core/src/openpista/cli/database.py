"""The one-line answer when the memory database cannot be opened: what is wrong, and the fix."""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from openpista.cli.main import CliState


class _Closable(Protocol):
    async def close(self) -> None: ...


D = TypeVar("D", bound=_Closable)
T = TypeVar("T")

SETTING = "[database] url (or $OPENPISTA_DATABASE_URL)"


def on_database(
    state: CliState, open_: Callable[[str], Awaitable[D]], work: Callable[[D], Awaitable[T]]
) -> T:
    """``work(db)`` on ``open_(url)`` of the configured database, closed afterwards; a
    store error is one ❌ line (with the fix when opening failed)."""
    import asyncio

    from openpista.cli.main import fail
    from openpista.memory import MemoryStoreError

    settings = state.settings()

    async def run() -> T:
        database = await open_(settings.database.url)
        try:
            return await work(database)
        finally:
            await database.close()

    try:
        return asyncio.run(run())
    except MemoryStoreError as exc:
        fail(database_problem(exc, settings.database.url) or str(exc))
    raise AssertionError("not reached: fail() exits")


def database_problem(exc: BaseException, url: str) -> str | None:
    """What to tell the user about ``exc`` raised while opening the database at ``url``, with
    the password masked; None when ``exc`` is not a failure to open it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from openpista.memory import expand_database_url

    try:
        parsed = make_url(expand_database_url(url))
    except (ArgumentError, ValueError):
        return None
    masked = parsed.render_as_string(hide_password=True)
    fix = _fix(list(_chain(exc)), parsed)
    if fix is None:
        return None
    reason = " ".join(str(exc).split())
    if masked not in reason:
        reason = f"{reason} (database URL {masked})"
    return f"{reason}. Fix: {fix}"


def _fix(chain: list[BaseException], parsed: URL) -> str | None:
    text = " ".join(str(e) for e in chain).lower()
    names = {type(e).__name__ for e in chain}
    backend, database = parsed.get_backend_name(), parsed.database or ""
    if backend == "postgresql":
        where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
        if "InvalidCatalogNameError" in names or ("database" in text and "does not exist" in text):
            return f"create the database (`createdb {database}`) or name another one in {SETTING}"
        if "InvalidPasswordError" in names or "password authentication failed" in text:
            return f"check the user and password in {SETTING}"
        if any(_unreachable(e) for e in chain):
            return (
                f"is the PostgreSQL server running at {where}? Start it, "
                f"or point {SETTING} at a running one"
            )
        return None
    if backend == "sqlite":
        if "file is not a database" in text:
            return (
                f"{database} is not an SQLite database: move it away (a new one is created) "
                f"or name another file in {SETTING}"
            )
        if "cannot create" in text or "unable to open database file" in text:
            return f"name a file in a directory you can write to in {SETTING}"
    return None


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, socket.gaierror | TimeoutError | ConnectionError):
        return True
    return isinstance(exc, OSError) and exc.errno in (
        errno.ECONNREFUSED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENOENT,  # a Unix socket that is not there
    )


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, its causes and contexts, and the driver errors SQLAlchemy wraps (``orig``)."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        pending += [current.__cause__, current.__context__]
        if isinstance(orig, BaseException):
            pending.append(orig)
