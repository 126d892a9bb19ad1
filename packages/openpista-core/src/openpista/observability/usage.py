"""The usage meter: what each LLM request used and cost, stored and measured, and the
budget check that comes before each request.

The agent asks :meth:`UsageMeter.refusal` before every LLM request and reports every
response to :meth:`UsageMeter.llm_done`; the meter stores one usage row per response
(streamed ones included: the providers ask for the usage chunk) with its cost from the
:class:`~openpista.observability.prices.PriceBook`, and tells the metrics recorder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from openpista.memory.checks import MemoryStoreError
from openpista.models import Usage, utc_now
from openpista.observability.budget import BudgetLimits, budget_refusal
from openpista.observability.metrics import Recorder, channel_name
from openpista.observability.prices import PriceBook, litellm_prices

if TYPE_CHECKING:
    from openpista.config import BudgetSettings
    from openpista.memory import MemoryStore

log = logging.getLogger(__name__)


class UsageMeter:
    """Stores and measures the usage of LLM requests and enforces ``[budget]``."""

    def __init__(
        self, memory: MemoryStore, budget: BudgetSettings, recorder: Recorder | None = None
    ) -> None:
        self.memory = memory
        self.budget = budget
        self.recorder = recorder or Recorder()
        self.prices = PriceBook(budget.prices)
        self._prices_read = False
        self._limits: BudgetLimits | None = None
        self._forgotten = 0  # how many times the limits were forgotten (a load started
        # before the last time is not kept)
        self.limits_changed: Callable[[], Awaitable[None]] | None = None
        """Called after :meth:`set_limit` (cluster mode: tells the other replicas)."""

    async def limits(self) -> BudgetLimits:
        """The caps in force: ``[budget]`` and the stored limits (read once, then kept
        up to date by :meth:`set_limit`)."""
        limits = self._limits
        if limits is None:
            forgotten = self._forgotten
            limits = await BudgetLimits.load(self.memory, self.budget)
            if forgotten == self._forgotten:
                self._limits = limits
        return limits

    def forget_limits(self) -> None:
        """Read the stored limits again before the next request (another replica of a
        cluster changed them)."""
        self._limits = None
        self._forgotten += 1

    async def set_limit(self, kind: str, session_id: str, usd: float | None) -> None:
        """Store a ``daily`` or ``session`` limit (``usd`` ``None``: remove it) and apply it
        from the next LLM request on; :class:`MemoryStoreError` when refused."""
        await self.memory.set_budget_limit(kind, session_id, usd)
        (await self.limits()).apply(kind, session_id, usd)
        if self.limits_changed is not None:
            await self.limits_changed()

    async def refusal(self, session_id: str) -> str | None:
        """Why ``session_id`` may not call the LLM now (one ❌ line), or ``None``."""
        limits = await self.limits()
        if not limits.capped:
            return None
        return await budget_refusal(self.memory, limits, session_id, utc_now())

    async def cost(self, provider: str, model: str, usage: Usage) -> float | None:
        """USD of ``usage`` (``None``: price unknown); the first call reads the price map
        in a thread, off the event loop."""
        if not self._prices_read:
            await asyncio.to_thread(litellm_prices)
            self._prices_read = True
        return self.prices.cost(provider, model, usage)

    async def llm_done(
        self, session_id: str, channel_id: str, provider: str, model: str, usage: Usage
    ) -> float | None:
        """Store and measure the usage of one LLM response; returns its cost."""
        cost = await self.cost(provider, model, usage)
        tokens = (usage.prompt_tokens, usage.completion_tokens)
        try:
            await self.memory.record_usage(session_id, channel_id, provider, model, tokens, cost)
        except MemoryStoreError as exc:  # accounting must not break the turn: say so, go on
            log.warning(
                "❌ the usage of a response of %s/%s is not stored: %s", provider, model, exc
            )
        self.recorder.tokens(provider, model, channel_name(channel_id), usage, cost)
        return cost
