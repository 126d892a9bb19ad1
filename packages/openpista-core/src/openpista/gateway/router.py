"""Channel id -> session id, persisted, and one turn at a time per session."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openpista.memory import MemoryStore


class ChannelRouter:
    """Maps each chat (channel id, e.g. ``telegram:42``) to its stored session.

    The mapping lives in memory (the database), so a restarted daemon keeps every chat on
    its session. :meth:`lock` serializes turns of one session; different sessions proceed
    concurrently.
    """

    def __init__(self, memory: MemoryStore) -> None:
        self.memory = memory
        self._cache: dict[str, str] = {}
        self._lookups: dict[str, asyncio.Future[str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    async def session_for(self, channel_id: str) -> str:
        """The session of ``channel_id``; a new one is created and stored on first use.

        Concurrent first messages of a chat share one lookup and resume in the order they
        asked, so they reach the session's turn lock in the order they arrived (separate
        lookups could finish in any order and reorder the chat's first turns).
        """
        session_id = self._cache.get(channel_id)
        if session_id is not None:
            return session_id
        lookup = self._lookups.get(channel_id)
        if lookup is None:
            lookup = asyncio.ensure_future(self._look_up(channel_id))
            self._lookups[channel_id] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(channel_id, None))
        return await asyncio.shield(lookup)  # one waiter cancelled leaves the lookup running

    async def _look_up(self, channel_id: str) -> str:
        # Atomic in the database: concurrent first messages get one session, not two.
        session_id = await self.memory.ensure_channel(channel_id, uuid.uuid4().hex)
        self._cache[channel_id] = session_id
        return session_id

    async def bind(self, channel_id: str, session_id: str) -> None:
        """Move ``channel_id`` to ``session_id`` (created when missing)."""
        await self.memory.bind_channel(channel_id, session_id)
        self._cache[channel_id] = session_id

    async def new_session(self, channel_id: str) -> str:
        """Start a fresh session for ``channel_id`` and return its id."""
        session_id = uuid.uuid4().hex
        await self.bind(channel_id, session_id)
        return session_id

    def lock(self, session_id: str) -> _SessionLock:
        """An async context manager holding the turn lock of ``session_id``."""
        return _SessionLock(self, session_id)


class _SessionLock:
    """Holds a per-session lock; the lock is dropped once nobody uses it (no leak)."""

    def __init__(self, router: ChannelRouter, session_id: str) -> None:
        self.router = router
        self.session_id = session_id

    async def __aenter__(self) -> None:
        router, sid = self.router, self.session_id
        router._users[sid] = router._users.get(sid, 0) + 1
        lock = router._locks.setdefault(sid, asyncio.Lock())
        try:
            await lock.acquire()
        except BaseException:
            self._release_user()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self.router._locks[self.session_id].release()
        self._release_user()

    def _release_user(self) -> None:
        router, sid = self.router, self.session_id
        router._users[sid] -= 1
        if router._users[sid] == 0:
            del router._users[sid]
            del router._locks[sid]
