"""Fixtures of the web channel's tests: a real uvicorn on loopback, a real WebSocket client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openpista.channels import ChannelContext
from openpista.models import ChannelEvent
from openpista_testing.adapters import QueueContext
from openpista_web.adapter import WebAdapter
from openpista_web.settings import WebSettings
from openpista_web.testing import open_socket

TOKEN = "test-token-Zq8vN3kL0pXr"
CLIENT = "client-0001"


class Served:
    """A started web adapter and its context (without a gateway: where its events land)."""

    def __init__(self, adapter: WebAdapter, ctx: ChannelContext) -> None:
        self.adapter = adapter
        self.ctx = ctx

    @property
    def inbound(self) -> asyncio.Queue[ChannelEvent]:
        assert isinstance(self.ctx, QueueContext), "a gateway takes the events"
        return self.ctx.events

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.adapter.port}"

    def connect(
        self,
        client: str = CLIENT,
        *,
        token: str | None = TOKEN,
        query: str = "",
        origin: str | None = None,
    ) -> Any:
        return open_socket(self.adapter.port, client, token, query=query, origin=origin)

    async def event(self) -> ChannelEvent:
        return await asyncio.wait_for(self.inbound.get(), 10)


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
def web_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("OPENPISTA_HOME", str(home))
    monkeypatch.delenv("OPENPISTA_WEB_TOKEN", raising=False)
    monkeypatch.delenv("OPENPISTA_WEB_PORT", raising=False)
    return home


@pytest.fixture
async def serve_web(web_home: Path) -> AsyncIterator[Serve]:
    """Start web adapters on a free port (options as in ``[channels.web]``) with ``ctx``
    (default: a :class:`QueueContext`); stopped after."""
    started: list[WebAdapter] = []

    async def start(ctx: ChannelContext | None = None, **options: Any) -> Served:
        options.setdefault("port", 0)
        settings = WebSettings.from_table({"enabled": True, **options}, environ={})
        adapter = WebAdapter(settings, TOKEN, upload_dir=web_home / "uploads")
        context = ctx or QueueContext()
        await adapter.start(context)
        started.append(adapter)
        return Served(adapter, context)

    yield start
    for adapter in started:
        await adapter.stop()
