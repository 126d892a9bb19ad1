"""An LLM provider that answers at once, for tests and benchmarks that measure or exercise
openpista itself rather than an LLM (no HTTP, no litellm)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from openpista.models import Message, ToolCall
from openpista.providers.base import ChatResult, StreamEvent, ToolSpec


class InstantProvider:
    """Answers every request at once: after each text answer come ``rounds`` requests
    answered with a call to ``tool``, then the text ``reply`` again.

    With ``warm_up``, :meth:`prepare` (the start-up cost a real provider pays, such as
    importing its client library) lasts until that event is set; :attr:`prepared` counts
    finished warm-ups.
    """

    name = "instant"
    model = "instant"

    def __init__(
        self,
        rounds: int = 0,
        *,
        tool: str = "bench.noop",
        reply: str = "done",
        warm_up: asyncio.Event | None = None,
    ) -> None:
        self.rounds = rounds
        self.tool = tool
        self.reply = reply
        self.warm_up = warm_up
        self.calls = 0
        self.prepared = 0

    async def prepare(self) -> None:
        if self.warm_up is not None:
            await self.warm_up.wait()
        self.prepared += 1

    async def stream(
        self, messages: list[Message], tools: list[ToolSpec]
    ) -> AsyncIterator[StreamEvent]:
        yield await self.complete(messages, tools)

    async def complete(self, messages: list[Message], tools: list[ToolSpec]) -> ChatResult:
        self.calls += 1
        if self.rounds and self.calls % (self.rounds + 1):
            return ChatResult(tool_calls=[ToolCall(id=f"c{self.calls}", name=self.tool)])
        return ChatResult(text=self.reply)

    async def list_models(self) -> list[str]:
        return [self.model]
