"""Gateway replicas on one PostgreSQL database (``[cluster]``, docs/scale-out.md).

Each replica keeps one PostgreSQL connection of its own, its *lease connection*, named
``openpista replica <id>`` (``application_name``). What it owns it holds there as
session-level advisory locks, in key spaces of their own:

* ``(REPLICA_SPACE, key(replica id))`` for its whole life: two running daemons cannot
  share a replica id;
* ``(SESSION_SPACE, key(session id))`` while a turn of that session runs on it, so no
  turn of one session ever runs on two replicas at once (:meth:`ClusterMember.acquire`);
* ``(LEADER_SPACE, key(role))`` while it leads ``role``: ``cron`` (:attr:`ClusterMember.leads`)
  and the roles plugins ask for (Telegram polling: :meth:`ClusterMember.leading`).

``key(x)`` is PostgreSQL's ``hashtext`` of the hex of ``x``'s UTF-8 bytes, computed by the
server: any string is a key (NUL, lone surrogates), and ``status --cluster`` maps the keys
of held leases back to stored session ids. Two sessions sharing a key only wait for each
other.

A replica that gives a session lease back says so on the ``LISTEN/NOTIFY`` channel
:data:`RELEASED`, so that a replica waiting for it asks again at once; one whose holder died
is asked for again every :data:`RETRY_AFTER` seconds.

Advisory locks, not lease rows with an expiry: PostgreSQL drops them itself when the
connection ends (a replica killed, or its peer gone once TCP keepalive gives up), so there is
no expiry to tune, no clock to trust, nothing to renew while a long turn runs and no row left
behind; presence is the connection itself (``pg_stat_activity``). asyncpg is imported only
when a replica joins or the cluster is listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from openpista.config import ConfigError

if TYPE_CHECKING:
    import asyncpg

    from openpista.config import Settings

__all__ = [
    "ClusterError",
    "ClusterMember",
    "ClusterOverview",
    "ReplicaInfo",
    "cluster_dsn",
    "cluster_overview",
    "list_replicas",
]

log = logging.getLogger(__name__)

APPLICATION_PREFIX = "openpista replica "
REPLICA_SPACE = 0x6F700001
SESSION_SPACE = 0x6F700002
LEADER_SPACE = 0x6F700003
CRON = "cron"
CONNECT_TIMEOUT = 10.0
QUERY_TIMEOUT = 10.0
"""A lease query that takes longer means the server is cut off: the connection is lost."""
RETRY_AFTER = 0.25
"""Seconds between attempts to take a session leased elsewhere when no release is announced
(its holder died: PostgreSQL dropped the lease, nobody said so)."""
LEASE_LOST = "openpista: the session's lease is lost"
"""The message of the cancellation of a turn whose lease was lost (the gateway says so)."""
RELEASED = "openpista_leases"
"""The ``LISTEN/NOTIFY`` channel where a replica announces a session lease it gave back
(payload: the md5 of the session id's bytes), so that a waiting replica asks again at once."""
KEEPALIVE = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}
"""The server gives up on a silent replica (a partition), dropping its leases, after ~25 s:
later than the replica itself notices (heartbeat + :data:`QUERY_TIMEOUT`) and stops its turns."""


KEY = "hashtext(encode($2::bytea, 'hex'))"
"""The lock key of the bytes bound to ``$2`` (see :func:`_bytes`)."""


def _bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


def _digest(key: str) -> str:
    """What a release of ``key`` announces (PostgreSQL's ``md5`` of the same bytes)."""
    return hashlib.md5(_bytes(key), usedforsecurity=False).hexdigest()


class ClusterError(ConfigError):
    """The replica cannot join, or has lost, the cluster; the message says why."""


def cluster_dsn(settings: Settings) -> str:
    """The asyncpg DSN of ``[database] url``; :class:`ClusterError` unless it is PostgreSQL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(settings.database.url)
    except ArgumentError:
        raise ClusterError("[database] url is not a valid database URL") from None
    if url.get_backend_name() != "postgresql":
        raise ClusterError(
            "[cluster] enabled = true needs a PostgreSQL [database] url (replicas share one "
            f"database), not {url.get_backend_name()}; set enabled = false to run one daemon"
        )
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _default_replica_id() -> str:
    host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
    return f"{host[:30] or 'host'}-{os.getpid()}"


class ClusterMember:
    """This daemon as one replica: its lease connection, session leases and leadership.

    It is the router's :class:`~openpista.gateway.router.SessionLeases`. A heartbeat checks
    the connection every ``[cluster] heartbeat`` seconds and, when no replica leads, tries
    to become the cron leader. A lost connection loses every lease at once: the replica
    stops leading, cancels the turns that held leases (another replica may take their
    sessions now) and refuses new turns (:class:`ClusterError`) until it has reconnected.
    """

    def __init__(self, settings: Settings) -> None:
        self.dsn = cluster_dsn(settings)
        self.replica_id = settings.cluster.replica_id or _default_replica_id()
        self.heartbeat = settings.cluster.heartbeat
        self._roles: dict[str, asyncio.Event] = {CRON: asyncio.Event()}  # set: led here
        self._role_changes: dict[str, asyncio.Event] = {}
        self._conn: asyncpg.Connection[Any] | None = None
        self._io = asyncio.Lock()  # one query at a time on the lease connection
        self._beat: asyncio.Task[None] | None = None
        self._returning: set[asyncio.Task[None]] = set()
        self._wakers: dict[str, asyncio.Event] = {}  # md5 of a session waited for -> event
        self._holders: dict[str, asyncio.Task[Any]] = {}  # leased session -> its turn's task
        self._listeners: dict[str, _Listener] = {}  # NOTIFY channel -> callback
        self._reconnected: list[Callable[[], object]] = []

    @classmethod
    async def join(cls, settings: Settings) -> ClusterMember:
        """Connect, claim the replica id, try to lead, and start the heartbeat."""
        member = cls(settings)
        await member._connect()
        await member._try_lead()
        member._beat = asyncio.create_task(member._heartbeat(), name="cluster heartbeat")
        return member

    @property
    def leads(self) -> bool:
        """Whether this replica is the cron leader now."""
        return self.leading(CRON)

    def leading(self, role: str) -> bool:
        """Whether this replica plays ``role`` now (one replica at a time does). The first
        call makes it a candidate: it takes the role at the next heartbeat when no other
        replica holds it (when that one dies, for instance)."""
        led = self._roles.setdefault(role, asyncio.Event())
        return led.is_set()

    async def changed(self, role: str) -> None:
        """Return the next time :meth:`leading` of ``role`` changes."""
        self.leading(role)
        change = self._role_changes.setdefault(role, asyncio.Event())
        await change.wait()

    def _set_role(self, role: str, led: bool) -> None:
        event = self._roles.setdefault(role, asyncio.Event())
        if event.is_set() == led:
            return
        if led:
            event.set()
            log.info("replica %s leads %s", self.replica_id, role)
        else:
            event.clear()
        change = self._role_changes.pop(role, None)
        if change is not None:
            change.set()

    async def close(self) -> None:
        """Stop the heartbeat and close the connection: every lease goes with it."""
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
        for role in list(self._roles):
            self._set_role(role, False)
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close(timeout=5)
            except Exception:  # broken already: the server drops it, and its locks
                conn.terminate()

    async def acquire(self, session_id: str) -> None:
        """Return once this replica holds the lease of ``session_id`` (waiting while
        another replica runs a turn of it)."""
        digest = _digest(session_id)
        released = self._wakers[digest] = asyncio.Event()
        waited = False
        try:
            while True:
                released.clear()
                if await self.try_acquire(session_id):
                    break
                if not waited:
                    log.info("session %s is leased by another replica; waiting", session_id)
                    waited = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(released.wait(), RETRY_AFTER)
        finally:
            if self._wakers.get(digest) is released:
                del self._wakers[digest]
        if waited:
            log.info("session %s leased after waiting", session_id)

    async def try_acquire(self, session_id: str) -> bool:
        """Take the lease of ``session_id`` if no replica holds it; whether it was taken.
        The calling task is cancelled if the lease is lost (:class:`ClusterError` when the
        connection is already)."""
        if not await self._try_session(session_id):
            return False
        turn = asyncio.current_task()
        if turn is not None:
            self._holders[session_id] = turn
        return True

    async def listen(self, channel: str, callback: Callable[[str], object]) -> None:
        """Call ``callback(payload)`` for each ``NOTIFY`` on ``channel`` from now on (also
        after a reconnection; notifications sent while disconnected are missed)."""
        self._listeners[channel] = _Listener(callback)
        async with self._io:
            if self.connected:
                await self._live().add_listener(channel, self._listeners[channel])

    def on_reconnect(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` each time the lease connection is back after a loss (what
        was announced meanwhile was missed)."""
        self._reconnected.append(callback)

    @property
    def connected(self) -> bool:
        """Whether the lease connection is up (the leases it holds are valid)."""
        return self._conn is not None and not self._conn.is_closed()

    async def _try_session(self, session_id: str) -> bool:
        attempt = asyncio.ensure_future(self._lock(SESSION_SPACE, session_id))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The turn was cancelled while asking: a lease granted all the same goes back.
            attempt.add_done_callback(lambda done: self._give_back(done, session_id))
            raise

    def _give_back(self, attempt: asyncio.Future[bool], session_id: str) -> None:
        if not attempt.cancelled() and attempt.exception() is None and attempt.result():
            task = asyncio.ensure_future(self._unlock(SESSION_SPACE, session_id))
            self._returning.add(task)
            task.add_done_callback(self._returning.discard)

    async def release(self, session_id: str) -> None:
        """Give the lease of ``session_id`` back (a lost connection has already)."""
        self._holders.pop(session_id, None)
        await asyncio.shield(self._unlock(SESSION_SPACE, session_id))

    def _announced(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        released = self._wakers.get(payload)
        if released is not None:
            released.set()

    # -- the lease connection ---------------------------------------------------------------

    async def _connect(self) -> None:
        import asyncpg

        name = APPLICATION_PREFIX + self.replica_id
        try:
            conn = await asyncpg.connect(
                self.dsn,
                timeout=CONNECT_TIMEOUT,
                server_settings={"application_name": name, **KEEPALIVE},
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the cluster's PostgreSQL: {exc}") from exc
        try:
            taken = await conn.fetchval(
                f"SELECT pg_try_advisory_lock($1, {KEY})",
                REPLICA_SPACE,
                _bytes(self.replica_id),
                timeout=QUERY_TIMEOUT,
            )
            await conn.add_listener(RELEASED, self._announced)
            for channel, listener in self._listeners.items():
                await conn.add_listener(channel, listener)
        except BaseException:
            conn.terminate()
            raise
        if not taken:
            await conn.close()
            raise ClusterError(
                f"replica id {self.replica_id!r} is in use by another running replica; "
                "give each a [cluster] replica_id of its own"
            )
        self._conn = conn

    async def _lock(self, space: int, key: str) -> bool:
        async with self._io:
            conn = self._live()
            try:
                taken = await conn.fetchval(
                    f"SELECT pg_try_advisory_lock($1, {KEY})",
                    space,
                    _bytes(key),
                    timeout=QUERY_TIMEOUT,
                )
            except Exception as exc:  # granted or not: a lock we might hold unknowingly
                self._lost(exc)  # would block its session everywhere; drop them all
                raise self._live_error() from exc
            return bool(taken)

    async def _unlock(self, space: int, key: str) -> None:
        async with self._io:
            conn = self._conn
            if conn is None or conn.is_closed():
                return
            try:
                await conn.fetchval(
                    f"SELECT pg_advisory_unlock($1, {KEY}), pg_notify($3, md5($2::bytea))",
                    space,
                    _bytes(key),
                    RELEASED,
                    timeout=QUERY_TIMEOUT,
                )
            except Exception as exc:  # a lease kept would block its session everywhere:
                self._lost(exc)  # drop the connection, and every lease with it

    async def claim_run(self, key: str, due: datetime) -> bool:
        """Record that the cron run ``due`` of entry ``key`` fires; whether no replica had
        recorded it (or a later one) before. Unreachable database: ``False`` (not fired)."""
        async with self._io:
            try:
                claimed = await self._live().fetchval(
                    "INSERT INTO cluster_cron_runs (entry, due) VALUES ($1, $2) "
                    "ON CONFLICT (entry) DO UPDATE SET due = EXCLUDED.due "
                    "WHERE cluster_cron_runs.due < EXCLUDED.due RETURNING 1",
                    key,
                    due,
                    timeout=QUERY_TIMEOUT,
                )
            except Exception as exc:  # no run rather than one run twice
                log.error("❌ cron run %s not fired: %s", due, exc)
                return False
        return claimed is not None

    def _live(self) -> asyncpg.Connection[Any]:
        conn = self._conn
        if conn is None or conn.is_closed():
            raise self._live_error()
        return conn

    def _live_error(self) -> ClusterError:
        return ClusterError(
            f"replica {self.replica_id} has lost its PostgreSQL connection; "
            "it takes no turn until it reconnects"
        )

    async def _try_lead(self) -> None:
        for role, led in list(self._roles.items()):
            if not led.is_set() and await self._lock(LEADER_SPACE, role):
                self._set_role(role, True)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                if self._conn is None:
                    await self._connect()
                    log.warning("replica %s reconnected to PostgreSQL", self.replica_id)
                    for callback in self._reconnected:
                        callback()
                async with self._io:
                    await self._live().fetchval("SELECT 1", timeout=QUERY_TIMEOUT)
                await self._try_lead()
            except Exception as exc:  # keep beating: the next one reconnects
                log.debug("replica %s: heartbeat failed: %s", self.replica_id, exc)
                self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        """The leases are gone (or soon will be): the turns holding them stop, since
        another replica may take their sessions now."""
        if self._conn is not None:
            log.error("❌ replica %s lost its PostgreSQL connection: %s", self.replica_id, exc)
            self._conn.terminate()
            self._conn = None
        for role in list(self._roles):
            self._set_role(role, False)
        holders, self._holders = self._holders, {}
        for session_id, turn in holders.items():
            log.error("❌ the turn of session %s is cancelled: its lease is lost", session_id)
            turn.cancel(LEASE_LOST)


@dataclass(frozen=True)
class _Listener:
    """An asyncpg notification callback that passes on only the payload."""

    callback: Callable[[str], object]

    def __call__(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.callback(payload)


@dataclass(frozen=True)
class ReplicaInfo:
    """One running replica as ``openpista status --cluster`` lists it."""

    replica_id: str
    address: str
    since: str
    leads: bool
    """Whether it leads cron."""
    sessions: list[str] = field(default_factory=list)
    """Sessions whose turn runs on it now (its load); ``?`` for one not stored yet."""
    roles: list[str] = field(default_factory=list)
    """The roles it leads (``cron``, channels such as ``telegram``), sorted; ``?`` for one
    of a name not configured where the list was asked for."""


@dataclass(frozen=True)
class ClusterOverview:
    """What ``openpista status --cluster`` shows: the replicas and the inbox."""

    replicas: list[ReplicaInfo]
    waiting: int
    """Events stored in the inbox, waiting for (or in) their turn on some replica."""


_REPLICAS = """
SELECT substr(a.application_name, $1) AS replica_id,
       coalesce(host(a.client_addr), 'local') AS address,
       to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"') AS since,
       ARRAY(SELECT l.objid::bigint FROM pg_locks l
             WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted
             AND l.classid = $2::oid) AS led,
       ARRAY(SELECT l.objid::bigint FROM pg_locks l
             WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted
             AND l.classid = $3::oid) AS keys
FROM pg_stat_activity a
WHERE a.application_name LIKE $4
ORDER BY 1
"""
_ROLES = """
SELECT convert_from(r, 'UTF8') AS role, hashtext(encode(r, 'hex'))::bigint & 4294967295 AS key
FROM unnest($1::bytea[]) AS r
"""
"""The lease keys of role names (as ``pg_locks`` shows them)."""
_SESSION_KEY = "(hashtext(encode(convert_to(id, 'UTF8'), 'hex'))::bigint & 4294967295)"
_SESSIONS = f"SELECT {_SESSION_KEY} AS key, id FROM sessions WHERE {_SESSION_KEY} = ANY($1)"  # noqa: S608  only constant SQL fragments; values are bound parameters
"""Stored session ids of lease keys (``pg_locks`` shows a key as an unsigned ``oid``)."""


async def list_replicas(settings: Settings) -> list[ReplicaInfo]:
    """The replicas connected to the cluster's database now, with their leases."""
    return (await cluster_overview(settings)).replicas


async def cluster_overview(settings: Settings) -> ClusterOverview:
    """The replicas connected to the cluster's database now, with their leases and roles
    (``cron`` and the channels configured in ``settings``), and the inbox's depth."""
    import asyncpg

    dsn = cluster_dsn(settings)
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the cluster's PostgreSQL: {exc}") from exc
    candidates = sorted({CRON, *settings.channels})
    try:
        like = APPLICATION_PREFIX + "%"  # no LIKE wildcard in the prefix
        rows = await conn.fetch(
            _REPLICAS, len(APPLICATION_PREFIX) + 1, LEADER_SPACE, SESSION_SPACE, like
        )
        roles = {
            r["key"]: r["role"] for r in await conn.fetch(_ROLES, [_bytes(c) for c in candidates])
        }
        keys = sorted({key for row in rows for key in row["keys"]})
        names: dict[int, str] = {}
        waiting = 0
        # A database no replica has migrated yet has no sessions to name, nor an inbox.
        with contextlib.suppress(asyncpg.UndefinedTableError):
            waiting = int(await conn.fetchval("SELECT count(*) FROM cluster_inbox"))
        if keys:
            with contextlib.suppress(asyncpg.UndefinedTableError):
                names = {r["key"]: r["id"] for r in await conn.fetch(_SESSIONS, keys)}
    except asyncpg.PostgresError as exc:
        raise ClusterError(f"cannot list the replicas: {exc}") from exc
    finally:
        await conn.close()
    cron = next(key for key, role in roles.items() if role == CRON)
    replicas = [
        ReplicaInfo(
            r["replica_id"],
            r["address"],
            r["since"],
            cron in r["led"],
            sorted(names.get(key, "?") for key in r["keys"]),
            sorted(roles.get(key, "?") for key in r["led"]),
        )
        for r in rows
    ]
    return ClusterOverview(replicas, waiting)
