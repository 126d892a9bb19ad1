"""Budget limits set at run time shared by the replicas of a cluster (docs/scale-out.md).

``openpista budget set`` reaches one replica, which stores the limit in ``budget_limits``
(the shared database) and announces it with ``NOTIFY`` :data:`CHANNEL`; every other replica
then reads the stored limits again before its next LLM request, so the change applies on all
of them at once, not only at their next start. A replica that lost its connection to
PostgreSQL reads them again once it is back (it may have missed an announcement).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg

    from openpista.cluster import ClusterMember
    from openpista.observability.usage import UsageMeter

__all__ = ["CHANNEL", "share_budget_limits"]

log = logging.getLogger(__name__)

CHANNEL = "openpista_budget"
"""``NOTIFY`` channel of a budget limit changed (payload: the replica id that changed it)."""


async def share_budget_limits(
    member: ClusterMember, pool: asyncpg.Pool[Any], meter: UsageMeter
) -> None:
    """Announce the limits ``meter`` sets, and take those set on other replicas."""

    async def announce() -> None:
        try:
            await pool.execute("SELECT pg_notify($1, $2)", CHANNEL, member.replica_id)
        except Exception as exc:  # stored all the same: the others read it when they start
            log.warning("❌ the other replicas were not told of the budget change: %s", exc)

    def heard(replica_id: str) -> None:
        if replica_id != member.replica_id:
            meter.forget_limits()

    meter.limits_changed = announce
    member.on_reconnect(meter.forget_limits)
    await member.listen(CHANNEL, heard)
