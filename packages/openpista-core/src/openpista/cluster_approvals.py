"""Approvals answered on another replica (docs/scale-out.md).

A tool call waits for its approval on the replica running the turn; the ``/approve ID``
or button press may reach any replica (the load balancer, a webhook). One that has no such
request waiting passes the answer on with ``NOTIFY`` :data:`CHANNEL`; the replica where it
waits resolves it and sends its reply back the same way, and the first replica's chat
command answers with it (:meth:`ClusterApprovals.answer`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg

    from openpista.cluster import ClusterMember
    from openpista.gateway.approvals import ApprovalBroker

__all__ = ["CHANNEL", "ClusterApprovals", "resolves"]

log = logging.getLogger(__name__)

CHANNEL = "openpista_approvals"
REPLY_WAIT = 5.0
"""Seconds an answer passed on waits for the replica that resolves it."""


def resolves(broker: ApprovalBroker, channel_id: str, text: str) -> str | None:
    """``broker.answer(channel_id, text)`` if it resolves a request waiting here (its
    reply), else ``None`` (nothing of ``channel_id`` waits here, or not that one)."""
    before = {r.id for r in broker.pending(channel_id)}
    if not before:
        return None
    reply = broker.answer(channel_id, text)
    return reply if {r.id for r in broker.pending(channel_id)} != before else None


class ClusterApprovals:
    """This replica's side: answers it passes on, and requests of its own it resolves."""

    def __init__(
        self, member: ClusterMember, pool: asyncpg.Pool[Any], broker: ApprovalBroker
    ) -> None:
        self.member = member
        self.pool = pool
        self.broker = broker
        self._replies: dict[str, asyncio.Future[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen for answers and replies."""
        await self.member.listen(CHANNEL, self._heard)

    async def answer(self, channel_id: str, text: str) -> str | None:
        """Pass ``text`` (``/approve ID``, ``/deny ID``) of ``channel_id`` on to the replica
        where the request waits; its reply, or ``None`` when no replica resolved it."""
        token = secrets.token_hex(8)
        reply: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._replies[token] = reply
        try:
            await self._notify({"answer": token, "channel_id": channel_id, "text": text[:1000]})
            async with asyncio.timeout(REPLY_WAIT):
                return await reply
        except TimeoutError:
            return None
        finally:
            self._replies.pop(token, None)

    async def _notify(self, message: dict[str, str]) -> None:
        await self.pool.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps(message))

    def _heard(self, payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if isinstance(message.get("reply"), str):
            waiter = self._replies.get(message["reply"])
            if waiter is not None and not waiter.done():
                waiter.set_result(str(message.get("text", "")))
            return
        token, channel_id, text = (message.get(k) for k in ("answer", "channel_id", "text"))
        if not (isinstance(token, str) and isinstance(channel_id, str) and isinstance(text, str)):
            return
        if token in self._replies:
            return  # our own
        reply = resolves(self.broker, channel_id, text)
        if reply is not None:
            log.info("an approval of %s was answered on another replica", channel_id)
            task = asyncio.create_task(self._notify({"reply": token, "text": reply}))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
