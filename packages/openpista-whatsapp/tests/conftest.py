"""Fixtures: the Graph API emulator and a started WhatsApp adapter pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openpista.models import ChannelEvent
from openpista_testing.adapters import QueueContext
from openpista_whatsapp.adapter import WhatsAppAdapter
from openpista_whatsapp.settings import ENV_OVERRIDES, load_whatsapp_config
from openpista_whatsapp.testing import WhatsAppEmulator, signed_post

TOKEN = "EAAG-test-access-token-123"
APP_SECRET = "app-secret-456"
VERIFY_TOKEN = "verify-me-789"
NUMBER = "111111"
USER = "4915550001"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own openpista home and no WHATSAPP_* variables."""
    monkeypatch.setenv("OPENPISTA_HOME", str(tmp_path / "home"))
    for variable in ENV_OVERRIDES:
        monkeypatch.delenv(variable, raising=False)
    return tmp_path / "home"


@pytest.fixture
def graph() -> Iterator[WhatsAppEmulator]:
    """The Graph API emulator, knowing numbers 111111 and 222222."""
    with WhatsAppEmulator(
        access_token=TOKEN, phone_number_ids=[NUMBER, "222222"], templates=["reengage"]
    ) as emulator:
        yield emulator


class Running:
    """A started adapter with its context (where its events land) and an HTTP client for
    its webhook."""

    number = NUMBER
    user = USER
    token = TOKEN
    app_secret = APP_SECRET
    verify_token = VERIFY_TOKEN

    def __init__(self, adapter: WhatsAppAdapter, ctx: QueueContext):
        self.adapter = adapter
        self.ctx = ctx
        self.inbound = ctx.events
        self.http = httpx.AsyncClient(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.adapter.port}/webhook"

    async def post(self, payload: Any, secret: str = APP_SECRET) -> httpx.Response:
        """POST ``payload`` signed as Meta would."""
        body, headers = signed_post(payload, secret)
        return await self.http.post(self.url, content=body, headers=headers)

    async def event(self) -> ChannelEvent:
        """The next event the adapter queued for the gateway."""
        return await asyncio.wait_for(self.inbound.get(), 10)

    async def settle(self) -> None:
        """Wait until the webhook's background work is done."""
        while self.adapter._work:
            await asyncio.gather(*self.adapter._work, return_exceptions=True)


def options(graph: WhatsAppEmulator, **overrides: Any) -> dict[str, Any]:
    """A ``[channels.whatsapp]`` table for the emulator (fast retries, no pacing)."""
    table: dict[str, Any] = {
        "enabled": True,
        "phone_number_id": NUMBER,
        "access_token": TOKEN,
        "verify_token": VERIFY_TOKEN,
        "app_secret": APP_SECRET,
        "webhook_host": "127.0.0.1",
        "webhook_port": 0,
        "base_url": graph.base_url,
        "allowed_numbers": [f"+{USER}"],
        "retry_base_delay": 0.01,
        "retry_max_delay": 0.05,
        "recipient_interval": 0,
        "messages_per_second": 1000,
        "template_name": "reengage",
    }
    table.update(overrides)
    return table


@pytest.fixture
def whatsapp_table(graph: WhatsAppEmulator) -> Callable[..., dict[str, Any]]:
    """``whatsapp_table(**overrides)``: a ``[channels.whatsapp]`` table for the emulator."""
    return lambda **overrides: options(graph, **overrides)


StartAdapter = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_adapter(
    graph: WhatsAppEmulator, isolated_home: Path
) -> AsyncIterator[StartAdapter]:
    """``await start_adapter(**options)``: a started adapter, stopped after the test."""
    running: list[Running] = []

    async def start(ctx: QueueContext | None = None, **overrides: Any) -> Running:
        """``ctx``: the context to start with (default: a new :class:`QueueContext`)."""
        adapter = WhatsAppAdapter(load_whatsapp_config(options(graph, **overrides)))
        ctx = ctx or QueueContext()
        await adapter.start(ctx)
        running.append(Running(adapter, ctx))
        return running[-1]

    yield start
    for item in running:
        await item.http.aclose()
        await item.adapter.stop()
