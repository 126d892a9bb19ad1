"""Options, reply splitting, file names and the cost of importing the plugin."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from openpista.config import ConfigError
from openpista_telegram.settings import parse_settings
from openpista_telegram.text import split_message, utf16_length

TOKEN = "123:abcDEF_-ghi"


def test_split_counts_utf16_units() -> None:
    text = "🙂" * 3000  # 6,000 UTF-16 units
    parts = split_message(text)
    assert [utf16_length(p) for p in parts] == [4096, 1904]
    assert "".join(parts) == text


def test_token_from_environment_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    settings = parse_settings({"enabled": True, "token": "1:overridden"})
    assert settings.secret("token") == TOKEN
    assert settings.mode == "polling"
    assert not settings.open_to_all
    assert settings.downloads.name == "files"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "[channels.telegram] token: missing"),
        ({"token": "not a token"}, "token: does not look like a bot token"),
        ({"token": TOKEN, "mode": "push"}, "[channels.telegram] mode: Input should be"),
        ({"token": TOKEN, "mode": "webhook"}, 'webhook_url: mode = "webhook" needs the public'),
        (
            {"token": TOKEN, "mode": "webhook", "webhook_url": "http://bot.example.org/t"},
            "webhook_url: Telegram posts only to https:// URLs",
        ),
        ({"token": TOKEN, "webhook_secret": "has space"}, "webhook_secret: Value error, must be"),
        ({"token": TOKEN, "webhook_path": "hook"}, "webhook_path: Value error, must start"),
        ({"token": TOKEN, "max_webhook_bytes": 10}, "max_webhook_bytes: Input should be"),
        ({"token": TOKEN, "tokn": "x"}, "tokn: unknown option"),
        ({"token": TOKEN, "api_base": "ftp://x"}, "api_base: Value error, must be an http(s)"),
        ({"token": TOKEN, "allowed_users": ["a b"]}, "neither a numeric user id nor a @username"),
        ({"token": TOKEN, "poll_timeout": 0}, "poll_timeout: Input should be greater"),
    ],
)
def test_bad_options_are_named(
    monkeypatch: pytest.MonkeyPatch, table: dict[str, object], message: str
) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    with pytest.raises(ConfigError) as failure:
        parse_settings(table)
    assert message in str(failure.value)
    assert "not a token" not in str(failure.value)


def test_plugin_module_does_not_import_aiogram() -> None:
    code = (
        "import sys, openpista_telegram.plugin, openpista_telegram.cli; "
        "sys.exit('aiogram' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_config_example_documents_every_option() -> None:
    """The ``[channels.telegram]`` section of config.example.toml names every option, and its
    values (uncommented) are valid."""
    from openpista_telegram.settings import TelegramSettings

    example = Path(__file__).resolve().parents[3] / "config.example.toml"
    text = example.read_text()
    start = text.index("# --- openpista-telegram ")
    section = text[start : text.index("# --- ", start + 10)]
    lines = [
        line.removeprefix("# ") for line in section.splitlines() if re.match(r"^# [a-z_]+ = ", line)
    ]
    table = tomllib.loads("\n".join(lines))
    assert set(table) == set(TelegramSettings.model_fields)
    table["mode"] = "webhook"  # the webhook options are checked too
    table["token"] = TOKEN  # the example's is elided
    settings = parse_settings(table)
    assert settings.webhook_url == "https://bot.example.org/telegram/webhook"
