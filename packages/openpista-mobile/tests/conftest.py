"""Fixtures: a real gateway (SQLite, litellm against the LLM emulator) serving the mobile
channel on loopback, and real aioquic clients pinned to its certificate."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openpista.config import GatewaySettings, Settings
from openpista_mobile.adapter import MobileAdapter
from openpista_mobile.client import MobileClient
from openpista_mobile.settings import MobileSettings
from openpista_testing.cli import Cli, emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways
from openpista_testing.ports import free_port

PHONE_TOKEN = "phone-token-0123456789abcdef"
TABLET_TOKEN = "tablet-token-0123456789abcdef"

Connect = Callable[..., Awaitable[MobileClient]]


def free_udp_port() -> int:
    """A UDP port of 127.0.0.1 that nothing listens on (just now)."""
    return free_port(udp=True)


def mobile_daemon_cli(
    tmp_path: Path, llm_emulator: LlmEmulator, port: int, token: str, extra_config: str = ""
) -> Cli:
    """A CLI whose ``openpista start`` serves only the mobile channel on ``port``, with
    device ``laptop`` signing in with ``token``."""
    cli = Cli.isolated(tmp_path, llm_emulator)
    cli.env.update(OPENPISTA_LOAD_PLUGINS="mobile", OPENPISTA_HOME=str(tmp_path / "state"))
    cli.write_config(
        cli.config.read_text()
        + f"""
[gateway]
pid_file = "{tmp_path / "openpista.pid"}"

[channels.mobile]
enabled = true
host = "127.0.0.1"
port = {port}
tokens = {{ laptop = "{token}" }}
"""
        + extra_config
    )
    return cli


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Certificates, tickets and uploads go to a per-test home."""
    state = tmp_path / "home"
    monkeypatch.setenv("OPENPISTA_HOME", str(state))
    monkeypatch.delenv("OPENPISTA_MOBILE_TOKEN", raising=False)
    return state


def mobile_table(**options: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": 0,
        "tokens": {"phone": PHONE_TOKEN, "tablet": TABLET_TOKEN},
    }
    table.update(options)
    return table


@pytest.fixture
def settings(tmp_path: Path, llm_emulator: LlmEmulator) -> Settings:
    settings = emulator_settings(llm_emulator, tmp_path)
    settings.gateway = GatewaySettings(restart_max_delay=1)
    return settings


@pytest.fixture
def serve(settings: Settings, gateways: Gateways) -> Callable[..., Awaitable[MobileAdapter]]:
    """Start a gateway with a mobile adapter built from ``mobile_table(**options)``."""

    async def start(**options: Any) -> MobileAdapter:
        adapter = MobileAdapter(MobileSettings.from_table(mobile_table(**options)))
        await gateways.start(settings, adapter)
        return adapter

    return start


@pytest.fixture
async def mobile(serve: Callable[..., Awaitable[MobileAdapter]]) -> MobileAdapter:
    return await serve()


@pytest.fixture
async def connect(mobile: MobileAdapter, tmp_path: Path) -> AsyncIterator[Connect]:
    """Open clients to the ``mobile`` adapter (pinned; the phone's token by default)."""
    clients: list[MobileClient] = []

    async def open_(
        device: str = "phone", token: str = PHONE_TOKEN, **options: Any
    ) -> MobileClient:
        options.setdefault("fingerprint", mobile.fingerprint)
        options.setdefault("tickets", tmp_path / "tickets")
        client = await MobileClient.connect(
            f"quic://127.0.0.1:{mobile.port}", token, device, **options
        )
        clients.append(client)
        return client

    yield open_
    for client in clients:
        await client.close()
