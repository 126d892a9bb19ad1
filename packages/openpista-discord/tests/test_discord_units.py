"""Settings, the config example, and the plugin module's import cost."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from openpista import ConfigError
from openpista_discord.settings import DiscordSettings, parse_settings
from openpista_discord.testing import DEFAULT_TOKEN


def test_config_example_documents_every_option() -> None:
    """The ``[channels.discord]`` section of config.example.toml names every option, and
    its values (uncommented) are valid."""
    example = Path(__file__).resolve().parents[3] / "config.example.toml"
    text = example.read_text()
    start = text.index("# --- openpista-discord ")
    section = text[start : text.index("# --- ", start + 10)]
    lines = [
        line.removeprefix("# ") for line in section.splitlines() if re.match(r"^# [a-z_]+ = ", line)
    ]
    table = tomllib.loads("\n".join(lines))
    assert set(table) == set(DiscordSettings.model_fields)
    table["token"] = DEFAULT_TOKEN  # the example's is elided
    settings = parse_settings(table)
    assert settings.rest_base == "https://discord.com/api/v10"


def test_the_environment_token_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_BOT_TOKEN", DEFAULT_TOKEN)
    settings = parse_settings({"token": "x.y.z"})
    assert settings.secret("token") == DEFAULT_TOKEN


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({}, "[channels.discord] token: missing"),
        ({"token": "   "}, "[channels.discord] token: missing"),
        ({"token": "not a token"}, "does not look like a bot token"),
        ({"token": DEFAULT_TOKEN, "allowed_users": ["@alice"]}, "not a numeric Discord id"),
        ({"token": DEFAULT_TOKEN, "allowed_roles": ["12; DROP"]}, "not a numeric Discord id"),
        ({"token": DEFAULT_TOKEN, "api_base": "discord.com"}, "api_base: "),
        ({"token": DEFAULT_TOKEN, "max_retry_after": 5}, "max_retry_after: "),
        ({"token": DEFAULT_TOKEN, "edit_interval": 0}, "edit_interval: "),
        ({"token": DEFAULT_TOKEN, "tokne": "x"}, "tokne: unknown option"),
    ],
)
def test_bad_settings_are_one_clear_line(table: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(table)
    message = str(caught.value)
    assert problem in message
    assert "\n" not in message
    assert DEFAULT_TOKEN not in message


def test_api_base_moves_the_rest_root() -> None:
    settings = parse_settings({"token": DEFAULT_TOKEN, "api_base": "http://127.0.0.1:9/"})
    assert settings.rest_base == "http://127.0.0.1:9/api/v10"


def test_the_plugin_module_does_not_import_discord_py() -> None:
    code = (
        "import sys, openpista_discord.plugin, openpista_discord.settings, "
        "openpista_discord.cli; print('discord' in sys.modules, 'aiohttp' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_the_bot_token_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    from openpista_discord import logs

    token = "MTIz.bot-token-0123456789"
    logs.install(token)
    try:
        try:
            raise ConnectionError(f"refused with Authorization: Bot {token}")
        except ConnectionError:
            logging.getLogger("discord.http").exception("request with %s failed", token)
        logging.getLogger("discord.gateway").warning("IDENTIFY %s%s", token[:6], token[6:])
    finally:
        logs.remove()
    assert len(caplog.records) == 2
    assert token not in caplog.text
    assert all(r.exc_info is None for r in caplog.records)
    assert "[REDACTED]" in caplog.records[1].getMessage()


def test_discord_py_tracebacks_become_one_line(caplog: pytest.LogCaptureFixture) -> None:
    from openpista_discord import logs

    logs.install()
    try:
        try:
            raise ConnectionResetError("peer went away")
        except ConnectionResetError:
            logging.getLogger("discord.shard").exception("Attempting a reconnect in %.2fs", 1.5)
    finally:
        logs.remove()
    [record] = caplog.records
    assert record.exc_info is None
    assert record.getMessage() == (
        "Attempting a reconnect in 1.50s (ConnectionResetError: peer went away)"
    )
    assert "Traceback" not in caplog.text
