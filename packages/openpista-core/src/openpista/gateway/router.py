"""Channel id -> session id, persisted, and one turn at a time per session."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from openpista.memory import MemoryStore


class SessionLeases(Protocol):
    """Who else may run a session's turn: another gateway replica on the same database
    (:class:`openpista.cluster.ClusterMember`). Taken after the local turn lock."""

    async def acquire(self, session_id: str) -> None:
        """Return once this process may run a turn of ``session_id``."""

    async def release(self, session_id: str) -> None:
        """Let other processes run turns of ``session_id`` again; never raises."""


class ChannelRouter:
    """Maps each chat (channel id, e.g. ``telegram:42``) to its stored session.

    The mapping lives in memory (the database), so a restarted daemon keeps every chat on
    its session. :meth:`lock` serializes turns of one session, in the order their messages
    arrived (:meth:`ticket`); different sessions proceed concurrently. With ``leases``
    (cluster mode), the lock also holds the session's lease across replicas.
    """

    def __init__(self, memory: MemoryStore, leases: SessionLeases | None = None) -> None:
        self.memory = memory
        self.leases = leases
        self._cache: dict[str, str] = {}
        self._lookups: dict[str, asyncio.Future[str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}
        self._last_tickets: dict[str, asyncio.Future[None]] = {}

    def ticket(self, channel_id: str) -> TurnTicket:
        """A place in line for a message of ``channel_id`` that has just arrived: its turn
        queues on the session's lock only after the chat's earlier messages did, however
        long each took to get there (a session lookup, a command, an attachment)."""
        return TurnTicket(self, channel_id)

    async def session_for(self, channel_id: str) -> str:
        """The session of ``channel_id``; a new one is created and stored on first use
        (concurrent first messages of a chat share one lookup). With ``leases`` the database
        is asked every time: another replica may have moved the chat (``/new``)."""
        session_id = self._cache.get(channel_id) if self.leases is None else None
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

    def lock(self, session_id: str, ticket: TurnTicket | None = None) -> _SessionLock:
        """An async context manager holding the turn lock of ``session_id``; with a
        ``ticket``, it queues for the lock only after the ticket's predecessors did."""
        return _SessionLock(self, session_id, ticket)


class TurnTicket:
    """A message's place in its chat's line (:meth:`ChannelRouter.ticket`).

    Each ticket is "passed" once its message has queued on the session lock (or will not:
    a command, a failure); the next ticket waits for that. A ticket passed early (a
    command) still passes only after the tickets before it, so the line stays in order.
    """

    def __init__(self, router: ChannelRouter, channel_id: str) -> None:
        self._router = router
        self._channel_id = channel_id
        self._before = router._last_tickets.get(channel_id)
        self._passed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        router._last_tickets[channel_id] = self._passed

    async def wait(self) -> None:
        """Return once every earlier message of the chat has queued for its turn."""
        before = self._before
        if before is not None and not before.done():
            await asyncio.wait({before})  # a cancelled waiter leaves ``before`` alone

    def pass_on(self) -> None:
        """Let the next message of the chat go (once the earlier ones have); idempotent."""
        before, self._before = self._before, None
        if before is not None and not before.done():
            before.add_done_callback(lambda _: self._mark_passed())
        else:
            self._mark_passed()

    def _mark_passed(self) -> None:
        if not self._passed.done():
            self._passed.set_result(None)
        tickets = self._router._last_tickets
        if tickets.get(self._channel_id) is self._passed:
            del tickets[self._channel_id]


class _SessionLock:
    """Holds a per-session lock; the lock is dropped once nobody uses it (no leak)."""

    def __init__(self, router: ChannelRouter, session_id: str, ticket: TurnTicket | None) -> None:
        self.router = router
        self.session_id = session_id
        self.ticket = ticket

    async def __aenter__(self) -> None:
        if self.ticket is not None:
            await self.ticket.wait()
            self.ticket.pass_on()  # the next message queues after us: no await till acquire()
        router, sid = self.router, self.session_id
        router._users[sid] = router._users.get(sid, 0) + 1
        lock = router._locks.setdefault(sid, asyncio.Lock())
        try:
            await lock.acquire()
        except BaseException:
            self._release_user()
            raise
        if router.leases is not None:
            try:
                await router.leases.acquire(sid)
            except BaseException:
                lock.release()
                self._release_user()
                raise

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.router.leases is not None:
                await self.router.leases.release(self.session_id)
        finally:
            self.router._locks[self.session_id].release()
            self._release_user()

    def _release_user(self) -> None:
        router, sid = self.router, self.session_id
        router._users[sid] -= 1
        if router._users[sid] == 0:
            del router._users[sid]
            del router._locks[sid]
