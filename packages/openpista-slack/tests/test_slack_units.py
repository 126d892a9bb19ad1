"""Markdown to mrkdwn, message cutting, settings and retry-after parsing."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from openpista import ConfigError
from openpista_slack.api import retry_after
from openpista_slack.settings import SlackSettings, parse_settings
from openpista_slack.text import MESSAGE_LIMIT, split, to_mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __also__", "*bold* and *also*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("~~gone~~", "~gone~"),
        (
            "[the docs](https://example.org/a?b=1&c=2)",
            "<https://example.org/a?b=1&amp;c=2|the docs>",
        ),
        ("# Title\n## Sub", "*Title*\n*Sub*"),
        ("- one\n* two\n  + three", "• one\n• two\n  • three"),
        ("<!channel> & <@U123>", "&lt;!channel&gt; &amp; &lt;@U123&gt;"),
        ("`a **b** <c>`", "`a **b** &lt;c&gt;`"),
        (
            "```python\nx = 1 < 2  # **no**\n```",
            "```\nx = 1 < 2  # **no**\n```".replace("<", "&lt;"),
        ),
        ("2 * 3 * 4", "2 * 3 * 4"),
        ("snake_case_name", "snake_case_name"),
        ("[x](javascript:alert(1))", "[x](javascript:alert(1))"),
        ("[a|b](https://e.org/|x)", "<https://e.org/%7Cx|a¦b>"),
    ],
)
def test_markdown_becomes_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_long_answers_are_cut_with_code_blocks_closed() -> None:
    text = "intro\n\n```\n" + "\n".join(f"line {i} <x>" for i in range(900)) + "\n```\nend"
    parts = split(text)
    assert len(parts) > 1
    assert all(len(part) <= MESSAGE_LIMIT for part in parts)
    assert all(part.count("```") % 2 == 0 for part in parts)
    assert "&lt;x&gt;" in parts[1]
    assert split("") == [" "]


def test_settings_need_the_tokens_of_their_mode() -> None:
    with pytest.raises(ConfigError, match=r"bot_token: missing.*SLACK_BOT_TOKEN"):
        parse_settings({"enabled": True})
    with pytest.raises(ConfigError, match=r"app_token: missing"):
        parse_settings({"bot_token": "xoxb-1"})
    with pytest.raises(ConfigError, match=r"signing_secret"):
        parse_settings({"bot_token": "xoxb-1", "mode": "http"})
    with pytest.raises(ConfigError, match=r"does not look like") as caught:
        parse_settings({"bot_token": "xapp-secret-value", "app_token": "xapp-1"})
    assert "secret-value" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"allowed_users"):
        parse_settings({"allowed_users": ["@alice"]}, need_tokens=False)
    with pytest.raises(ConfigError, match=r"allowed_teams"):
        parse_settings({"allowed_teams": ["U123"]}, need_tokens=False)
    with pytest.raises(ConfigError, match=r"colour: "):
        parse_settings({"colour": "red"}, need_tokens=False)
    settings = parse_settings(
        {"bot_token": "xoxb-1", "signing_secret": "s", "mode": "http", "api_base": "http://h/api"}
    )
    assert settings.api_base == "http://h/api/"


def test_tokens_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-env")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-env")
    settings = parse_settings({"enabled": True})
    assert (settings.secret("bot_token"), settings.secret("app_token")) == ("xoxb-env", "xapp-env")
    assert "xoxb-env" not in repr(settings)


def test_retry_after() -> None:
    assert retry_after({"Retry-After": ["3"]}) == 3.0
    assert retry_after({"retry-after": "2.5"}) == 2.5
    assert retry_after({"Retry-After": ["soon"]}) == 1.0
    assert retry_after({"Retry-After": ["-5"]}) == 0.0
    assert retry_after({}) == 1.0


def test_config_example_documents_every_option() -> None:
    """The ``[channels.slack]`` section of config.example.toml names every option, and its
    values (uncommented) are valid."""
    example = Path(__file__).resolve().parents[3] / "config.example.toml"
    text = example.read_text()
    start = text.index("# --- openpista-slack ")
    section = text[start : text.index("# --- ", start + 10)]
    lines = [
        line.removeprefix("# ").split("  #")[0]
        for line in section.splitlines()
        if re.match(r"^# [a-z_]+ = ", line)
    ]
    table = tomllib.loads("\n".join(lines))
    assert set(table) == set(SlackSettings.model_fields)
    table.update(bot_token="xoxb-1", app_token="xapp-1")  # the example's are elided
    settings = parse_settings(table)
    assert settings.mode == "socket"
    assert settings.http_path == "/slack/events"


def test_plugin_module_imports_no_slack_sdk() -> None:
    """``openpista --help`` must not pay for slack-bolt: plugin.py and settings.py import
    neither slack_sdk nor slack_bolt."""
    code = (
        "import sys, openpista_slack.plugin, openpista_slack.settings, openpista_slack.cli\n"
        "assert not [m for m in sys.modules if m.startswith(('slack_sdk', 'slack_bolt'))]"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
