"""Fixtures: the Discord emulator (REST + gateway), and a real gateway (SQLite, litellm
against the LLM emulator) serving the real discord.py-based channel against it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from openpista.config import PolicySettings, Settings
from openpista_discord.adapter import DiscordAdapter
from openpista_discord.settings import parse_settings
from openpista_discord.testing import DiscordEmulator, User
from openpista_testing.cli import channel_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways
from openpista_testing.polling import eventually

ALICE = User(4201, "alice")  # allowed by id
ROLE = 5555
BOB = User(4202, "bob", roles=(ROLE,))  # allowed by role
MALLORY = User(6666, "mallory")  # a stranger

Serve = Callable[..., Awaitable[DiscordAdapter]]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pairing files and downloads go to a per-test home."""
    state = tmp_path / "home"
    monkeypatch.setenv("OPENPISTA_HOME", str(state))
    monkeypatch.delenv("DISCORD_BOT_TOKEN", raising=False)
    return state


@pytest.fixture
def alice() -> User:
    """Allowed by id."""
    return ALICE


@pytest.fixture
def bob() -> User:
    """Allowed by role."""
    return BOB


@pytest.fixture
def mallory() -> User:
    """A stranger."""
    return MALLORY


@pytest.fixture
def discord_emulator() -> Iterator[DiscordEmulator]:
    with DiscordEmulator(roles=(ROLE,)) as emulator:
        yield emulator


def discord_table(emulator: DiscordEmulator, **options: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "enabled": True,
        "token": emulator.token,
        "api_base": emulator.base_url,
        "allowed_users": [ALICE.id],
        "allowed_roles": [ROLE],
        "typing_interval": 0.2,
        "edit_interval": 0.05,
    }
    table.update(options)
    return table


@pytest.fixture
def settings(tmp_path: Path, llm_emulator: LlmEmulator) -> Settings:
    return channel_settings(llm_emulator, tmp_path)


@pytest.fixture
def serve(settings: Settings, discord_emulator: DiscordEmulator, gateways: Gateways) -> Serve:
    """Start a gateway with a Discord adapter built from ``discord_table(**options)``;
    ``policy=`` replaces the tool policy."""

    async def start(policy: PolicySettings | None = None, **options: Any) -> DiscordAdapter:
        if policy is not None:
            settings.policy = policy
        adapter = DiscordAdapter(parse_settings(discord_table(discord_emulator, **options)))
        await gateways.start(settings, adapter)
        await eventually(lambda: adapter.bot_id is not None and discord_emulator.connected())
        return adapter

    return start
