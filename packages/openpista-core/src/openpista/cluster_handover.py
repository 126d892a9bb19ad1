"""Turns handed over between replicas through PostgreSQL (docs/scale-out.md).

In cluster mode every inbound event is first written to the durable ``cluster_inbox``
table (revision 0010); then the replica it arrived at tries to take its session's lease.
The replica holding the lease (this one, or the one whose turn of the session runs now)
*drains* the session (reading the table after each turn, and once more after letting the
lease go, so no ``NOTIFY`` is needed): it runs the session's
events one by one in the order they were stored, and deletes each only after its turn
(and answer) is stored. A replica that dies mid-turn leaves its events in the table, and
its lease goes with its connection: every replica looks for such leftovers each
``[cluster] heartbeat`` (events of sessions nobody leases) and the first to take the lease
runs them. Nothing stored is lost; a turn cut short is continued by the new owner when its
user message was stored (each event remembers where its turn began, ``mark``): the agent
stores each tool call before it runs and each result as it comes, so a finished call never
runs again and one cut short is shown to the LLM as interrupted; a turn cut before storing
anything runs from the start.

Answers go back through the replica that holds the user's connection (the control socket,
web, QUIC): the event names it (``reply_to``) and the replica running the turn writes the
answer and its approval prompts to ``cluster_outbox`` and announces each row's id on that
replica's own ``NOTIFY`` channel (:func:`outbox_channel`), which delivers them. The turn's
text chunks and tool progress go the same way as they come, in the ``NOTIFY`` payload itself
(:class:`_Stream`: what comes while one is on its way is sent with the next, adjacent chunks
joined; a batch over :data:`NOTIFY_MAX` bytes is stored as an outbox row instead). One
channel read by one task keeps them in order, the answer last. Channels that answer over
HTTP (Telegram, WhatsApp, Slack, Discord:
:attr:`~openpista.channels.ChannelAdapter.replies_anywhere`) are answered by whichever
replica runs the turn, streaming included.

A turn its user cancels on the replica holding their connection (Ctrl-C of ``openpista
run``) is deleted from the inbox if it has not begun, and stopped where it runs: that
replica is told on ``NOTIFY`` :data:`CANCEL`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import TypeAdapter, ValidationError

from openpista.cluster import APPLICATION_PREFIX, QUERY_TIMEOUT, SESSION_SPACE, ClusterError
from openpista.cluster_deliveries import STORE, ClusterDeliveries, dropped, store_arguments
from openpista.cluster_media import unpack
from openpista.models import Answer, ChannelEvent, Outbound, TextChunk
from openpista.outbox import inlined

if TYPE_CHECKING:
    from pathlib import Path

    import asyncpg

    from openpista.cluster import ClusterMember
    from openpista.gateway.router import TurnTicket

__all__ = ["CANCEL", "OUTBOX", "Handover", "Turns", "outbox_channel"]

log = logging.getLogger(__name__)

OUTBOX = "openpista_outbox"
"""The prefix of each replica's ``NOTIFY`` channel of what it delivers (:func:`outbox_channel`)."""
NOTIFY_MAX = 7999
"""Bytes a ``NOTIFY`` payload may hold (PostgreSQL's limit: shorter than 8000)."""
CANCEL = "openpista_cancel"
"""``NOTIFY`` channel of a turn its user cancelled (payload: its stored event's id)."""
OFFERED = "openpista_offered"
"""``NOTIFY`` channel of a session whose stored events wait for a turn slot on a busy replica
(payload: its id as a JSON string): a replica with a free slot takes its lease and runs them."""
OFFERS_KEPT = 1000
"""Sessions offered while this replica's slots were full that it remembers, to look at once
one frees (the oldest forgotten first: their replica runs them, or the sweep)."""
FILE_MAX = 20 * 1024 * 1024
"""The largest file an answer (or a tool's progress) takes along to the replica holding its
user's connection: that replica cannot open this one's files, so their bytes travel."""
POOL_SIZE = 4
"""Connections for the inbox and outbox (the lease connection is kept for the leases)."""


async def _unchanged(_conn: asyncpg.Connection[Any]) -> None:
    """What the pool runs on a connection given back instead of asyncpg's reset query (a
    round trip per query): the pool runs single statements only, which leave no session
    state (no ``LISTEN``, lock or ``SET``; asyncpg rolls back an open transaction itself)."""


_OUTBOUNDS: TypeAdapter[list[Outbound]] = TypeAdapter(list[Outbound])
Send = Callable[[Outbound], Awaitable[None]]


def outbox_channel(replica_id: str) -> str:
    """The ``NOTIFY`` channel of what replica ``replica_id`` delivers: an outbox row's id,
    or a JSON ``{"stored": id, "messages": [...]}`` of streamed messages (an identifier
    fits in 63 bytes whatever the replica id)."""
    return f"{OUTBOX}_{hashlib.sha256(replica_id.encode()).hexdigest()[:32]}"


_KEY = "(hashtext(encode(convert_to(i.session_id, 'UTF8'), 'hex'))::bigint & 4294967295)"
_LEFTOVERS = f"""
SELECT DISTINCT i.session_id FROM cluster_inbox i
WHERE i.created_at < now() - make_interval(secs => $2)
AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted
                AND l.classid = $1::oid AND l.objid = {_KEY}::oid)
"""  # noqa: S608  only constant SQL fragments; values are bound parameters
"""Sessions with events stored a while ago whose lease nobody holds (their replica died)."""
LEFTOVER_AFTER = 5.0
"""Seconds an event is left to the replica that stored it: it takes the lease right after
(a sweep taking it first would run the turn away from its user's connection)."""
_OFFERS = f"""
SELECT i.session_id FROM cluster_inbox i
WHERE i.session_id = ANY($2::text[])
AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted
                AND l.classid = $1::oid AND l.objid = {_KEY}::oid)
GROUP BY i.session_id ORDER BY min(i.id)
"""  # noqa: S608  only constant SQL fragments; values are bound parameters
"""Of the sessions offered, those with events still stored and nobody holding their lease,
the longest waiting first."""
_NEXT = """
WITH finished AS (DELETE FROM cluster_inbox WHERE id = $3)
SELECT i.id, i.event, i.reply_to, i.mark, m.session_id IS NOT NULL AS chosen, m.provider, m.model,
       i.reply_to IS NULL OR EXISTS (SELECT 1 FROM pg_stat_activity a
                                     WHERE a.application_name = $2 || i.reply_to) AS connected
FROM cluster_inbox i LEFT JOIN cluster_session_models m ON m.session_id = i.session_id
WHERE i.session_id = $1 AND i.id IS DISTINCT FROM $3 ORDER BY i.id LIMIT 1
"""
"""Delete the event ``$3`` whose turn is over (if any) and read the session's next stored
event, whether the replica holding its connection is there, and the session's ``/model``:
one round trip per turn."""
_FINISH = """
WITH finished AS (DELETE FROM cluster_inbox WHERE id = $2)
SELECT EXISTS (SELECT 1 FROM cluster_inbox WHERE session_id = $1 AND id IS DISTINCT FROM $2)
"""
"""Delete the event ``$2`` whose turn is over (if any); whether the session has more stored."""
_ORPHANS = """
DELETE FROM cluster_outbox o
WHERE o.created_at < now() - make_interval(secs => $2)
AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = $1 || o.replica_id)
"""
"""Answers for a replica that has been gone a while (with it, the connections they were for)."""
ORPHANED_AFTER = 60.0
MISSED_AFTER = 2.0
"""Seconds after which the sweep delivers an outbox row it was never told of (its ``NOTIFY``
was missed while the connection was down); earlier, its announcement may still be on its way
behind the chunks before it."""
_MARK = """
UPDATE cluster_inbox SET mark = coalesce(
    (SELECT max(m.id) FROM messages m WHERE m.session_id = $2), 0)
WHERE id = $1 RETURNING id
"""
"""Record where the event's turn begins (the session's newest message id, 0 for none)."""
_BEGUN = """
SELECT EXISTS (SELECT 1 FROM cluster_inbox WHERE id = $1) AS stored,
       EXISTS (SELECT 1 FROM messages WHERE session_id = $2 AND id > $3 AND role = 'user')
       AS begun
"""
"""Whether event ``$1`` is still stored, and whether its turn, begun after message ``$3``,
stored its user message (then it is continued; if not, it was refused or cut short before
storing, and runs from the start)."""


class Turns(Protocol):
    """What the hand-over needs of the gateway."""

    async def run_turn(
        self, event: ChannelEvent, session_id: str, send: Send, stream: Send, *, resume: bool
    ) -> Answer:
        """Run the turn of ``event`` now: its answer and approval prompts go to ``send``,
        its text chunks and tool progress to ``stream``; with ``resume``, continue it from
        what an earlier run of it stored."""

    async def deliver(self, message: Outbound) -> None:
        """Send ``message`` to the adapter of its channel on this replica."""

    def set_session_model(
        self, session_id: str, provider: str | None, model: str | None
    ) -> tuple[str, str]:
        """Answer ``session_id`` with ``provider``/``model`` (``/model``; raises if unusable)."""

    def handed_over_media(self, channel_id: str) -> tuple[Path, int]:
        """Where files handed over for ``channel_id`` are written here; the largest taken."""


_Over = tuple[int, Answer | None]
"""A stored event whose turn is over, to delete, and its answer (``None``: none to give)."""


@dataclass(frozen=True)
class _Stored:
    id: int
    event: ChannelEvent
    reply_to: str | None
    mark: int | None
    """Where its turn began: the session's newest message id then (``None``: not begun)."""
    connected: bool
    """Whether the replica holding its user's connection (``reply_to``) is there."""
    model: tuple[str | None, str | None] | None
    """The session's ``/model`` (provider, model) chosen on any replica, if any."""


class Handover:
    """This replica's side of the inbox and outbox (see the module documentation)."""

    def __init__(
        self, member: ClusterMember, turns: Turns, pool: asyncpg.Pool[Any], slots: int
    ) -> None:
        self.member = member
        self.turns = turns
        self.pool = pool
        self._slots = _Slots(slots)
        self._offers: OrderedDict[str, None] = OrderedDict()  # offered while our slots were full
        self._pulling: asyncio.Task[None] | None = None  # looking at the offers (a slot is free)
        self._drainers: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()  # sessions stored to here while their drainer ran
        self._waiting: dict[int, asyncio.Future[Answer]] = {}  # stored id -> its answer
        self._running: dict[int, asyncio.Future[Answer | None]] = {}  # stored id -> its turn
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()  # announced; None: sweep
        self._announced: set[int] = set()  # outbox rows announced and not delivered yet
        self._tasks: list[asyncio.Task[None]] = []
        self.deliveries = ClusterDeliveries(pool)
        """Messages delivered across the cluster (``context.deliveries``)."""

    @classmethod
    async def start(cls, member: ClusterMember, turns: Turns, slots: int) -> Handover:
        """Open the pool, listen, drop this replica's stale answers and start sweeping."""
        import asyncpg

        try:
            pool = await asyncpg.create_pool(
                member.dsn,
                min_size=1,
                max_size=POOL_SIZE,
                command_timeout=QUERY_TIMEOUT,
                reset=_unchanged,
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the cluster's PostgreSQL: {exc}") from exc
        handover = cls(member, turns, pool, slots)
        # Answers kept for an earlier run of this replica id: their connections are gone.
        await pool.execute("DELETE FROM cluster_outbox WHERE replica_id = $1", member.replica_id)
        await member.listen(outbox_channel(member.replica_id), handover._answered)
        await member.listen(CANCEL, handover._cancelled)
        await member.listen(OFFERED, handover._offered)
        handover._tasks = [
            asyncio.create_task(handover._sweep(), name="cluster inbox sweep"),
            asyncio.create_task(handover._deliver_outbox(), name="cluster outbox"),
        ]
        return handover

    async def close(self, deadline: float | None) -> None:
        """Let the turns running here end within ``deadline`` seconds, then cancel them
        (their events stay stored: another replica runs them) and close the pool."""
        tasks = [*self._tasks, *([] if self._pulling is None else [self._pulling])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        drainers = set(self._drainers.values())
        if drainers:
            _, late = await asyncio.wait(drainers, timeout=deadline)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for waiter in self._waiting.values():
            waiter.cancel()
        await self.pool.close()

    # -- inbound ----------------------------------------------------------------------------

    async def hand(
        self,
        event: ChannelEvent,
        stored_event: dict[str, Any],
        session_id: str,
        ticket: TurnTicket,
        here: bool,
        *,
        stored_here: Callable[[], object] | None = None,
    ) -> Answer:
        """Store ``event`` as ``stored_event`` (:func:`openpista.cluster_media.pack`), after
        the chat's earlier events (``ticket``), and have its turn run by the session's
        owner. With ``here`` (its channel's connection is on this replica) return its answer
        once it has been delivered; else return once stored. ``stored_here()`` is called
        once it is stored (the gateway's dispatcher gives its slot back)."""
        await ticket.wait()
        try:
            # No NOTIFY: the session's holder reads the inbox after each turn and once it
            # has let the lease go (a NOTIFY per event woke every replica for nothing).
            stored = await self.pool.fetchval(
                STORE,  # and its delivery id, in the same statement
                session_id,
                json.dumps(stored_event),  # ASCII: a NUL is escaped too
                self.member.replica_id,
                self.member.replica_id if here else None,
                *store_arguments(event),
            )
        finally:
            ticket.pass_on()
        if stored is None:  # that message was stored before: its turn ran or runs
            dropped(event)
            return Answer(text="", channel_id=event.channel_id, session_id=session_id)
        if stored_here is not None:
            stored_here()
        answered: asyncio.Future[Answer] | None = None
        if here:
            answered = self._waiting[stored] = asyncio.get_running_loop().create_future()
        self.claim(session_id)
        if answered is None:
            return Answer(text="", channel_id=event.channel_id, session_id=session_id)
        try:
            return await answered
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # its client cancelled it
                await asyncio.shield(self._withdraw(stored))
            raise
        finally:
            self._waiting.pop(stored, None)

    async def _withdraw(self, stored: int) -> None:
        """Cancel the turn of event ``stored``: deleted if it has not begun, stopped on the
        replica where it runs (told on ``NOTIFY`` :data:`CANCEL`)."""
        self._cancelled(str(stored))
        try:
            await self.pool.execute(
                "WITH gone AS (DELETE FROM cluster_inbox WHERE id = $1) SELECT pg_notify($2, $3)",
                stored,
                CANCEL,
                str(stored),
            )
        except Exception as exc:  # the turn runs on, its answer goes nowhere
            log.warning("❌ a cancelled turn could not be stopped in the cluster: %s", exc)

    def _cancelled(self, payload: str) -> None:
        turn = self._running.get(int(payload)) if payload.isdecimal() else None
        if turn is not None:
            turn.cancel()

    def claim(self, session_id: str, *, offer: bool = True) -> None:
        """Drain ``session_id`` here if no replica holds its lease (no-op if this one is).
        With every turn slot here taken, its lease is left alone until one frees, and the
        session is offered (``offer``) to the replicas with a free slot, which may run it
        first (docs/scale-out.md)."""
        if session_id in self._drainers:
            self._again.add(session_id)
            return
        self._start(session_id, held=self._slots.take_now(), offer=offer)

    def _start(self, session_id: str, *, held: bool, offer: bool) -> None:
        drain = self._drain(session_id, held=held, offer=offer)
        task = asyncio.create_task(drain, name=f"drain {session_id}")
        self._drainers[session_id] = task
        task.add_done_callback(lambda _: self._forget(session_id, task))  # cancelled unstarted

    def _forget(self, session_id: str, task: asyncio.Task[None] | None) -> None:
        """``task`` no longer drains ``session_id``: the next claim starts a drainer."""
        if self._drainers.get(session_id) is task:
            del self._drainers[session_id]

    async def _drain(self, session_id: str, *, held: bool, offer: bool) -> None:
        """Run the session's stored events in a turn slot of this replica (``held``: taken
        already), under its lease; wait for a slot without the lease, offered to the other
        replicas (``offer``; always when it lets go of events still stored)."""
        try:
            while True:
                if not held:
                    if offer:
                        await self._offer(session_id)
                    await self._slots.take()
                try:
                    self._again.discard(session_id)
                    drained = await self._drain_leased(session_id)
                finally:
                    self._give()
                # Its holder drains it, and looks again once it lets go (``None``); stored
                # while we let go (its replica saw our lease): ours to run. Claimed here
                # meanwhile (``_again``, read last: after the look), maybe stored after its
                # holder's last look or ours: we look again.
                if (
                    drained is None or (drained and not await self._pending(session_id))
                ) and session_id not in self._again:
                    return
                held, offer = self._slots.take_now(), True
        except ClusterError as exc:  # no lease connection: the sweep resumes it later
            log.warning("session %s waits for the cluster: %s", session_id, exc)
        except Exception:
            log.exception("the hand-over of session %s failed; the sweep retries", session_id)
        finally:  # now, not once the task's callbacks run: a claim until then is lost
            self._forget(session_id, asyncio.current_task())

    async def _drain_leased(self, session_id: str) -> bool | None:
        """Run the session's stored events under its lease, in the slot the caller holds;
        ``None`` when another replica holds the lease, ``False`` when it let the lease go
        with events still stored because other sessions wait for the slot (their turn
        first), ``True`` when none was left."""
        if not await self.member.try_acquire(session_id):
            log.info("session %s is leased by another replica; handed over", session_id)
            return None
        try:
            over: _Over | None = None
            while (stored := await asyncio.shield(self._next(session_id, over))) is not None:
                over = await self._run(session_id, stored)
                if self._slots.waiting:
                    return not await asyncio.shield(self._finish(session_id, over))
            return True
        finally:
            await self.member.release(session_id)

    async def _finish(self, session_id: str, over: _Over | None) -> bool:
        """Delete the event whose turn is ``over`` (then its answer goes to its waiter here);
        whether the session has more events stored."""
        more = await self.pool.fetchval(_FINISH, session_id, None if over is None else over[0])
        if over is not None:
            self._answered_here(*over)
        return bool(more)

    def _give(self) -> None:
        """Give a turn slot back; a free one looks at the sessions offered meanwhile."""
        self._slots.give()
        if self._offers and self._slots.free and self._pulling is None:
            self._pulling = asyncio.create_task(self._pull(), name="cluster offers")

    async def _offer(self, session_id: str) -> None:
        """Tell the replicas with a free turn slot that ``session_id`` waits for one here."""
        payload = json.dumps(session_id)  # ASCII
        if len(payload) > NOTIFY_MAX:  # its turn waits for a slot here, or the sweep
            return
        try:
            await self.pool.execute("SELECT pg_notify($1, $2)", OFFERED, payload)
        except Exception as exc:  # it waits for a slot here
            log.debug("session %s could not be offered: %s", session_id, exc)

    def _offered(self, payload: str) -> None:
        """Another replica has no free slot for ``payload``'s session: run it if one is free
        here, else remember it for when one frees."""
        try:
            session_id = json.loads(payload)
        except (ValueError, RecursionError):
            session_id = None
        if not isinstance(session_id, str):
            log.warning("❌ a malformed cluster offer is dropped: %.200r", payload)
            return
        if session_id in self._drainers:
            return
        if self._slots.take_now():
            self._start(session_id, held=True, offer=False)
            return
        self._offers[session_id] = None
        self._offers.move_to_end(session_id)
        while len(self._offers) > OFFERS_KEPT:
            self._offers.popitem(last=False)

    async def _pull(self) -> None:
        """Run the offered sessions still waiting (stored, nobody holding their lease), the
        longest waiting first, in the slots free here."""
        try:
            offered, self._offers = list(self._offers), OrderedDict()
            rows = await self.pool.fetch(_OFFERS, SESSION_SPACE, offered)
            for row in rows:
                session_id = row["session_id"]
                if session_id in self._drainers:
                    continue
                if self._slots.take_now():
                    self._start(session_id, held=True, offer=True)
                else:  # for the next free slot
                    self._offers[session_id] = None
        except Exception as exc:  # their replicas run them, or the sweep
            log.debug("the offered sessions could not be read: %s", exc)
        finally:
            self._pulling = None

    async def _next(self, session_id: str, over: _Over | None) -> _Stored | None:
        """Delete the event whose turn is ``over`` (then its answer goes to its waiter here)
        and return the session's next stored event, its files written here; a forged one (no
        replica wrote it) is deleted with a log line."""
        while True:
            row = await self.pool.fetchrow(
                _NEXT, session_id, APPLICATION_PREFIX, None if over is None else over[0]
            )
            if over is not None:
                self._answered_here(*over)
                over = None
            if row is None:
                return None
            try:
                stored = json.loads(row["event"])
                event = unpack(stored, self.turns.handed_over_media, str(row["id"]))
            except (ValueError, RecursionError) as exc:  # ForgedEventError, bad JSON
                log.warning("❌ a stored event of session %s is refused: %.200s", session_id, exc)
                over = (row["id"], None)
                continue
            model = (row["provider"], row["model"]) if row["chosen"] else None
            return _Stored(row["id"], event, row["reply_to"], row["mark"], row["connected"], model)

    async def _pending(self, session_id: str) -> bool:
        found = await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM cluster_inbox WHERE session_id = $1)", session_id
        )
        return bool(found)

    async def _run(self, session_id: str, stored: _Stored) -> _Over | None:
        """Run the turn of ``stored``; what to delete once it is over (``None``: its user
        cancelled it, and it is deleted already)."""
        reply_to = stored.reply_to
        send: Send = self.turns.deliver
        stream: Send = self.turns.deliver
        streamed: _Stream | None = None
        if reply_to is not None and reply_to != self.member.replica_id:
            if not stored.connected:
                # Its user's connection went with that replica, and was told so: a turn
                # run now would answer nobody, and run twice when the user sends it again.
                log.warning(
                    "❌ a message of session %s is dropped: replica %s, which held its "
                    "connection, is gone",
                    session_id,
                    reply_to,
                )
                return stored.id, None

            streamed = _Stream(self, reply_to, stored.id)
            stream = streamed.put

            async def send(message: Outbound) -> None:
                await streamed.flush()  # its chunks first
                await self._publish(reply_to, stored.id, [inlined(message, FILE_MAX)])

        if stored.model is not None:
            self._use_model(session_id, *stored.model)
        # A task of its own, which its user's cancel stops (see :meth:`_withdraw`).
        turn = asyncio.ensure_future(self._turn(session_id, stored, send, stream))
        self._running[stored.id] = turn
        try:
            await asyncio.wait({turn})
        except asyncio.CancelledError:  # the lease is lost, or the replica stops
            turn.cancel()
            await asyncio.wait({turn})
            raise
        finally:
            self._running.pop(stored.id, None)
            if streamed is not None:
                streamed.close()
        if turn.cancelled():  # by its user: the event is deleted already
            log.info("session %s: a turn was cancelled by its user", session_id)
            return None
        answer = turn.result()
        # Answered: deleted by the next read of the inbox, which a lost lease does not stop
        # (shielded), so that it never runs again.
        return None if answer is None else (stored.id, answer)

    async def _turn(
        self, session_id: str, stored: _Stored, send: Send, stream: Send
    ) -> Answer | None:
        """Run the turn of ``stored``; ``None`` if its user cancelled it before it began."""
        begun = await self._begin(session_id, stored)
        if begun is None:
            return None
        return await self.turns.run_turn(stored.event, session_id, send, stream, resume=begun)

    async def _begin(self, session_id: str, stored: _Stored) -> bool | None:
        """Mark where the turn of ``stored`` begins; whether it began before and stored its
        user message (its replica died mid-turn: it is continued, see the module
        documentation); ``None`` when it is no longer stored (cancelled by its user)."""
        if stored.mark is None:
            marked = await self.pool.fetchval(_MARK, stored.id, session_id)
            return None if marked is None else False
        row = await self.pool.fetchrow(_BEGUN, stored.id, session_id, stored.mark)
        if row is None or not row["stored"]:
            return None
        if row["begun"]:
            log.warning("session %s: a turn cut short elsewhere continues here", session_id)
        return bool(row["begun"])

    def _answered_here(self, stored: int, answer: Answer | None) -> None:
        """Event ``stored`` is deleted: its answer goes to whoever waits for it here."""
        waiter = self._waiting.get(stored)
        if waiter is not None and answer is not None and not waiter.done():
            waiter.set_result(answer)

    # -- /model ----------------------------------------------------------------------------

    async def store_model(self, session_id: str, provider: str | None, model: str | None) -> None:
        """Keep ``session_id``'s ``/model`` choice for every replica."""
        await self.pool.execute(
            "INSERT INTO cluster_session_models (session_id, provider, model) VALUES ($1, $2, $3) "
            "ON CONFLICT (session_id) DO UPDATE SET provider = $2, model = $3, changed_at = now()",
            session_id,
            provider,
            model,
        )

    async def load_model(self, session_id: str) -> None:
        """Answer ``session_id`` with the model chosen for it on any replica, if any."""
        row = await self.pool.fetchrow(
            "SELECT provider, model FROM cluster_session_models WHERE session_id = $1",
            session_id,
        )
        if row is not None:
            self._use_model(session_id, row["provider"], row["model"])

    def _use_model(self, session_id: str, provider: str | None, model: str | None) -> None:
        try:
            self.turns.set_session_model(session_id, provider, model)
        except Exception as exc:  # configured on another replica only: the default answers
            log.warning("❌ session %s: its model cannot be used here: %s", session_id, exc)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.member.heartbeat)
            self._outbox.put_nowait(None)  # answers announced while the connection was down
            if not self.member.connected:
                continue
            try:
                await self.pool.execute(_ORPHANS, APPLICATION_PREFIX, ORPHANED_AFTER)
                await self.deliveries.prune()
                sessions = await self.leftovers()
            except Exception as exc:  # the next sweep tries again
                log.debug("the inbox sweep failed: %s", exc)
                continue
            for session_id in sessions:
                self.claim(session_id, offer=False)  # every replica's sweep finds it

    async def leftovers(self) -> list[str]:
        """Sessions the sweep runs: with events stored over :data:`LEFTOVER_AFTER` seconds
        ago, and no replica holding their lease (the one that held it died)."""
        rows = await self.pool.fetch(_LEFTOVERS, SESSION_SPACE, LEFTOVER_AFTER)
        return [row["session_id"] for row in rows]

    # -- outbound ---------------------------------------------------------------------------

    async def _publish(self, replica_id: str, stored: int, messages: list[Outbound]) -> None:
        """Store ``messages`` (of event ``stored``) for ``replica_id`` and announce the row."""
        await self.pool.execute(
            "WITH a AS (INSERT INTO cluster_outbox (replica_id, message) VALUES ($1, $2) "
            "RETURNING id) SELECT pg_notify($3, a.id::text) FROM a",
            replica_id,
            _envelope(stored, messages),
            outbox_channel(replica_id),
        )

    async def _stream(self, replica_id: str, stored: int, messages: list[Outbound]) -> None:
        """Send ``messages`` to ``replica_id`` in a ``NOTIFY`` payload, or as an outbox row
        when they do not fit in one; in order with what was announced to it before."""
        payload = _envelope(stored, messages)
        if len(payload) > NOTIFY_MAX:
            await self._publish(replica_id, stored, messages)
            return
        await self.pool.execute("SELECT pg_notify($1, $2)", outbox_channel(replica_id), payload)

    def _answered(self, payload: str) -> None:
        row_id = _row_id(payload)
        if row_id is not None:
            self._announced.add(row_id)
        self._outbox.put_nowait(payload)

    async def _deliver_outbox(self) -> None:
        """Deliver what is announced to this replica, one at a time in announcement order."""
        while True:
            payload = await self._outbox.get()
            try:
                for envelope in await self._fetch(payload):
                    await self._deliver(envelope)
            except Exception as exc:  # the sweep fetches a stored row again
                log.debug("the outbox could not be read: %s", exc)

    async def _fetch(self, payload: str | None) -> list[str]:
        """The envelopes ``payload`` announces: itself, its outbox row, or (``None``, the
        sweep) the rows stored a while ago and never announced (the connection was down)."""
        if payload is None:
            rows = await self.pool.fetch(
                "DELETE FROM cluster_outbox WHERE replica_id = $1 AND NOT id = ANY($2::bigint[]) "
                "AND created_at < now() - make_interval(secs => $3) RETURNING id, message",
                self.member.replica_id,
                list(self._announced),
                MISSED_AFTER,
            )
            return [row["message"] for row in sorted(rows, key=lambda r: r["id"])]
        row_id = _row_id(payload)
        if row_id is None:
            return [payload]
        try:
            message = await self.pool.fetchval(
                "DELETE FROM cluster_outbox WHERE id = $1 AND replica_id = $2 RETURNING message",
                row_id,
                self.member.replica_id,
            )
        finally:
            self._announced.discard(row_id)
        return [] if message is None else [message]

    async def _deliver(self, envelope: str) -> None:
        """Send the messages of ``envelope`` here; a malformed one is dropped with a line."""
        try:
            item = json.loads(envelope)
            stored = item["stored"]
            messages = _OUTBOUNDS.validate_python(item["messages"])
            if not isinstance(stored, int):
                raise TypeError("its event id is not a number")
        except (ValueError, TypeError, KeyError, RecursionError, ValidationError) as exc:
            log.warning("❌ a malformed cluster outbox message is dropped: %.200s", exc)
            return
        for message in messages:
            with contextlib.suppress(Exception):
                await self.turns.deliver(message)
            waiter = self._waiting.get(stored)
            if isinstance(message, Answer) and waiter is not None and not waiter.done():
                waiter.set_result(message)


class _Slots:
    """The turn slots of this replica, given in the order they were asked for; one free
    is taken at once (:meth:`take_now`) or not at all."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """How many wait for a slot."""
        return len(self._waiters)

    def take_now(self) -> bool:
        """Take a slot if one is free (nobody waits then); whether it was taken."""
        if self.free > 0:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        """Return holding a slot, after those that asked before."""
        if self.take_now():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # given one as it was cancelled
                self.give()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def give(self) -> None:
        """Give a slot back: to the first waiting, else free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1


def _row_id(payload: str) -> int | None:
    """The outbox row id ``payload`` announces (``None``: it is no row id)."""
    if payload.isascii() and payload.isdecimal() and len(payload) <= 18:
        return int(payload)
    return None


def _envelope(stored: int, messages: list[Outbound]) -> str:
    """``messages`` of event ``stored`` as ASCII JSON (a NUL or lone surrogate escaped)."""
    dumped = [message.model_dump(mode="json") for message in messages]
    return json.dumps({"stored": stored, "messages": dumped})


class _Stream:
    """The chunks and tool progress of a turn run here for a connection on another replica,
    sent as they come without holding the turn up: what comes while one batch is on its way
    goes with the next, adjacent text chunks joined. Lost ones are lost (the answer holds
    the whole text)."""

    def __init__(self, handover: Handover, replica_id: str, stored: int) -> None:
        self._handover = handover
        self._replica_id = replica_id
        self._stored = stored
        self._pending: list[Outbound] = []
        self._sending: asyncio.Task[None] | None = None

    async def put(self, message: Outbound) -> None:
        """Send ``message`` after those put before."""
        message = inlined(message, FILE_MAX)  # the files of a tool's progress too
        last = self._pending[-1] if self._pending else None
        if isinstance(message, TextChunk) and isinstance(last, TextChunk):
            self._pending[-1] = last.model_copy(update={"text": last.text + message.text})
        else:
            self._pending.append(message)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send())

    async def flush(self) -> None:
        """Return once everything put has been sent (or failed to)."""
        if self._sending is not None:
            await asyncio.shield(self._sending)

    def close(self) -> None:
        """Send nothing more (the turn is over)."""
        self._pending.clear()
        if self._sending is not None:
            self._sending.cancel()

    async def _send(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._handover._stream(self._replica_id, self._stored, batch)
            except Exception as exc:  # deltas are not precious: the answer follows
                log.warning("streamed messages for replica %s lost: %s", self._replica_id, exc)
