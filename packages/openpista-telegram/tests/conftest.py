"""Fixtures: the Telegram Bot API emulator, and a real gateway (SQLite, litellm against the
LLM emulator) serving the real aiogram-based channel against it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from openpista.config import PolicySettings, Settings
from openpista_telegram.adapter import TelegramAdapter
from openpista_telegram.settings import parse_settings
from openpista_telegram.testing import TelegramEmulator, User
from openpista_testing.cli import channel_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways

ALICE = User(4201, "alice", "Alice")  # allowed by id
BOB = User(4202, "bob", "Bob")  # allowed by username
MALLORY = User(6666, "mallory", "Mallory")  # a stranger

Serve = Callable[..., Awaitable[TelegramAdapter]]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pairing files, downloads and the bot's name go to a per-test home."""
    state = tmp_path / "home"
    monkeypatch.setenv("OPENPISTA_HOME", str(state))
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    return state


@pytest.fixture
def alice() -> User:
    """Allowed by numeric id."""
    return ALICE


@pytest.fixture
def bob() -> User:
    """Allowed by @username."""
    return BOB


@pytest.fixture
def mallory() -> User:
    """A stranger."""
    return MALLORY


@pytest.fixture
def telegram() -> Iterator[TelegramEmulator]:
    with TelegramEmulator() as emulator:
        yield emulator


def telegram_table(telegram: TelegramEmulator, **options: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "enabled": True,
        "token": telegram.token,
        "api_base": telegram.base_url,
        "allowed_users": [ALICE.id, "@bob"],
        "poll_timeout": 5,
        "retry_base_delay": 0.01,
        "typing_interval": 0.2,
    }
    table.update(options)
    return table


@pytest.fixture
def table(telegram: TelegramEmulator) -> Callable[..., dict[str, Any]]:
    """``table(**options)``: a ``[channels.telegram]`` table pointing at the emulator."""
    return lambda **options: telegram_table(telegram, **options)


@pytest.fixture
def settings(tmp_path: Path, llm_emulator: LlmEmulator) -> Settings:
    return channel_settings(llm_emulator, tmp_path)


@pytest.fixture
def serve(settings: Settings, telegram: TelegramEmulator, gateways: Gateways) -> Serve:
    """Start a gateway with a Telegram adapter built from ``telegram_table(**options)``;
    ``policy=`` replaces the tool policy."""

    async def start(policy: PolicySettings | None = None, **options: Any) -> TelegramAdapter:
        if policy is not None:
            settings.policy = policy
        adapter = TelegramAdapter(parse_settings(telegram_table(telegram, **options)))
        await gateways.start(settings, adapter)
        return adapter

    return start
