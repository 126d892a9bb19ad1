"""Fixtures: the Slack emulator, and a real gateway (SQLite, litellm against the LLM emulator)
serving the real slack-bolt based channel against it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from openpista.config import PolicySettings, Settings
from openpista_slack.adapter import SlackAdapter
from openpista_slack.settings import parse_settings
from openpista_slack.testing import SlackEmulator, User
from openpista_testing.cli import channel_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways
from openpista_testing.ports import free_port

ALICE = User("U0ALICE", "alice")  # allowed by user id
BOB = User("U0BOB", "bob", team="T0FRIENDS")  # allowed by workspace
MALLORY = User("U0MALLORY", "mallory", team="T0STRANGE")  # a stranger

Serve = Callable[..., Awaitable[SlackAdapter]]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pairing files go to a per-test home; no token from the environment."""
    state = tmp_path / "home"
    monkeypatch.setenv("OPENPISTA_HOME", str(state))
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return state


@pytest.fixture
def slack() -> Iterator[SlackEmulator]:
    with SlackEmulator() as emulator:
        yield emulator


def slack_table(slack: SlackEmulator, **options: Any) -> dict[str, Any]:
    """A ``[channels.slack]`` table pointing at the emulator (``mode="http"``: a free port
    and the emulator's events posted to it)."""
    table: dict[str, Any] = {
        "enabled": True,
        "bot_token": slack.bot_token,
        "app_token": slack.app_token,
        "signing_secret": slack.signing_secret,
        "api_base": slack.api_url,
        "allowed_users": [ALICE.id],
        "allowed_teams": ["T0FRIENDS"],
        "stream_interval": 0.05,
        "retry_base_delay": 0.01,
        "ping_interval": 1,
    }
    if options.get("mode") == "http" and "http_port" not in options:
        table["http_port"] = free_port()
    table.update(options)
    if table.get("mode") == "http":
        slack.events_url = f"http://127.0.0.1:{table['http_port']}/slack/events"
    return table


@pytest.fixture
def table(slack: SlackEmulator) -> Callable[..., dict[str, Any]]:
    """``table(**options)``: a ``[channels.slack]`` table pointing at the emulator."""
    return lambda **options: slack_table(slack, **options)


@pytest.fixture
def settings(tmp_path: Path, llm_emulator: LlmEmulator) -> Settings:
    return channel_settings(llm_emulator, tmp_path)


@pytest.fixture
def serve(settings: Settings, slack: SlackEmulator, gateways: Gateways) -> Serve:
    """Start a gateway with a Slack adapter built from ``slack_table(**options)``;
    ``policy=`` replaces the tool policy."""

    async def start(policy: PolicySettings | None = None, **options: Any) -> SlackAdapter:
        if policy is not None:
            settings.policy = policy
        adapter = SlackAdapter(parse_settings(slack_table(slack, **options)))
        await gateways.start(settings, adapter)
        return adapter

    return start


@pytest.fixture
def alice() -> User:
    """Allowed by user id."""
    return ALICE


@pytest.fixture
def bob() -> User:
    """Allowed as a member of an allowed workspace."""
    return BOB


@pytest.fixture
def mallory() -> User:
    """A stranger."""
    return MALLORY
