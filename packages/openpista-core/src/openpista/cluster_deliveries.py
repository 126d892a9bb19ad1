"""Each messenger message is delivered once across a cluster (docs/scale-out.md).

A channel names the messenger's id of a message in ``ChannelEvent.delivery_id`` (Discord's
message id, Telegram's update id, Slack's event id). In cluster mode the replica storing an
event in ``cluster_inbox`` also records ``(channel, delivery_id)`` in ``cluster_deliveries``
(revision 0019) in the same statement, :data:`STORE`: when the pair was recorded before (a
webhook retried, a message fetched again after a gateway hand-over, two replicas given the
same message at once) the insert does nothing, the event is not stored and its turn never
runs. ``channel`` is the channel's name (the part of the chat id before ``:``): a delivery
id is unique within its messenger, not only within one chat, so a message that opens a
Discord thread is still the same message when it is fetched again from its channel.

:class:`ClusterDeliveries` is what plugins see as ``context.deliveries``
(:class:`~openpista.plugin_context.Deliveries`): which chats had deliveries recently and
their newest one, which of some ids were delivered. Records older than :data:`KEPT` seconds
are deleted by the inbox sweep (:meth:`ClusterDeliveries.prune`, at most every
:data:`PRUNE_EVERY` seconds).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from openpista.models import ChannelEvent

if TYPE_CHECKING:
    import asyncpg

__all__ = ["KEPT", "STORE", "ClusterDeliveries", "delivery_key", "dropped"]

log = logging.getLogger(__name__)

KEPT = 7 * 24 * 3600.0
"""Seconds a delivery is remembered: a copy coming later than that runs again."""
PRUNE_EVERY = 600.0
"""Seconds between two deletions of deliveries older than :data:`KEPT`."""
KEY_MAX = 200
"""The longest delivery id stored as it is; a longer one (or one with a NUL, which
PostgreSQL's text cannot hold) is stored as its SHA-256."""

STORE = """
WITH delivered AS (
    INSERT INTO cluster_deliveries (channel, delivery_id, chat)
    SELECT $5, $6, $7 WHERE $6::text IS NOT NULL
    ON CONFLICT DO NOTHING RETURNING 1
)
INSERT INTO cluster_inbox (session_id, event, origin, reply_to)
SELECT $1, $2, $3, $4 WHERE $6::text IS NULL OR EXISTS (SELECT 1 FROM delivered)
RETURNING id
"""
"""Store an event (``$1``..``$4`` as ``cluster_inbox`` columns) and record its delivery
(``$5`` channel, ``$6`` key or NULL, ``$7`` chat) in one statement, so in one transaction
and one round trip; no row comes back when that delivery was recorded before."""
_RECORD = """
INSERT INTO cluster_deliveries (channel, delivery_id, chat) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING RETURNING 1
"""
_NEWEST = """
SELECT DISTINCT ON (chat) chat, delivery_id FROM cluster_deliveries
WHERE channel = $1 AND stored_at > now() - make_interval(secs => $2)
ORDER BY chat, stored_at DESC, delivery_id DESC
"""
_DELIVERED = """
SELECT delivery_id FROM cluster_deliveries WHERE channel = $1 AND delivery_id = ANY($2::text[])
"""
_PRUNE = "DELETE FROM cluster_deliveries WHERE stored_at < now() - make_interval(secs => $1)"


def delivery_key(delivery_id: str) -> str:
    """How ``delivery_id`` is stored: itself, or ``sha256:<hex>`` when it is longer than
    :data:`KEY_MAX` characters or holds a NUL (a forged id never fails the insert)."""
    if len(delivery_id) <= KEY_MAX and "\x00" not in delivery_id:
        return delivery_id
    digest = hashlib.sha256(delivery_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"sha256:{digest}"


def store_arguments(event: ChannelEvent) -> tuple[str, str | None, str]:
    """``$5``, ``$6`` and ``$7`` of :data:`STORE` for ``event``."""
    key = None if event.delivery_id is None else delivery_key(event.delivery_id)
    return _channel(event.channel_id), key, event.channel_id.replace("\x00", "")


def dropped(event: ChannelEvent) -> None:
    """Say (one log line) that ``event`` is dropped: its delivery was recorded before."""
    log.info("%s: message %.80r was delivered before: dropped", event.channel_id, event.delivery_id)


def _channel(channel_id: str) -> str:
    return channel_id.partition(":")[0]


class ClusterDeliveries:
    """The deliveries recorded in ``cluster_deliveries`` (``context.deliveries``)."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self.pool = pool
        self._pruned = 0.0

    async def first(self, event: ChannelEvent) -> bool:
        """Record the delivery of an event that is not stored in the inbox (a chat command,
        a file that cannot travel); ``False`` when it was delivered before. An event with
        no ``delivery_id`` is always a first."""
        channel, key, chat = store_arguments(event)
        if key is None:
            return True
        return await self.pool.fetchval(_RECORD, channel, key, chat) is not None

    async def newest(self, channel: str, within: float) -> dict[str, str]:
        """For each chat (its channel id) of ``channel`` with a delivery recorded in the
        last ``within`` seconds: the delivery id of the newest one recorded."""
        rows = await self.pool.fetch(_NEWEST, channel, within)
        return {row["chat"]: row["delivery_id"] for row in rows}

    async def delivered(self, channel: str, delivery_ids: Sequence[str]) -> set[str]:
        """Those of ``delivery_ids`` (of ``channel``) delivered before."""
        keys = {delivery_key(d): d for d in delivery_ids}
        rows = await self.pool.fetch(_DELIVERED, channel, list(keys))
        return {keys[row["delivery_id"]] for row in rows}

    async def prune(self) -> None:
        """Forget deliveries older than :data:`KEPT` (at most every :data:`PRUNE_EVERY` s)."""
        now = time.monotonic()
        if self._pruned and now - self._pruned < PRUNE_EVERY:
            return
        self._pruned = now
        deleted = await self.pool.execute(_PRUNE, KEPT)
        log.debug("cluster deliveries pruned: %s", deleted)
