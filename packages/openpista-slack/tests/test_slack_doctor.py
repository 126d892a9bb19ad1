"""``openpista doctor``'s online token checks (``auth.test``, ``apps.connections.open``)
against the Slack emulator."""

from __future__ import annotations

from functools import partial
from typing import Any

from openpista.cli.doctor import Check, run_online
from openpista_slack import plugin
from openpista_slack.testing import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET, SlackEmulator
from openpista_testing.doctor import channel_checks
from openpista_testing.ports import free_port, silent_port

FIX = "check the network, or [channels.slack] api_base"


checks = partial(channel_checks, plugin, "slack")


async def doctor(api_base: str, seconds: float = 10, **options: Any) -> list[Check]:
    table = {
        "enabled": True,
        "bot_token": BOT_TOKEN,
        "app_token": APP_TOKEN,
        "api_base": api_base,
        "allowed_users": ["U0ALICE"],
        **options,
    }
    return await run_online(checks(table), seconds)


async def test_valid_tokens_name_the_bot_and_open_socket_mode(slack: SlackEmulator) -> None:
    found = await doctor(slack.api_url)

    assert found == [
        Check("channel slack bot token", True, "valid: bot openpista in Emulator"),
        Check("channel slack app token", True, "valid: Socket Mode open"),
    ]
    assert sorted(slack.calls) == ["apps.connections.open", "auth.test"]


async def test_http_mode_has_no_app_token_to_check(slack: SlackEmulator) -> None:
    found = await doctor(slack.api_url, mode="http", signing_secret=SIGNING_SECRET)

    assert [check.name for check in found] == ["channel slack bot token"]
    assert slack.calls == ["auth.test"]


async def test_refused_tokens_are_crosses_with_the_fix_and_no_secret(slack: SlackEmulator) -> None:
    bot, app = await doctor(
        slack.api_url, bot_token="xoxb-wrong-wrong-wrong", app_token="xapp-1-wrong-wrong"
    )

    assert bot.ok is False
    assert bot.detail == "Slack refused the token: auth.test invalid_auth"
    assert "OAuth & Permissions" in bot.fix
    assert "SLACK_BOT_TOKEN" in bot.fix
    assert app.ok is False
    assert app.detail == "Slack refused the token: apps.connections.open invalid_auth"
    assert "SLACK_APP_TOKEN" in app.fix
    assert "wrong" not in bot.detail + bot.fix + app.detail + app.fix


async def test_an_unreachable_api_names_where() -> None:
    port = free_port()

    found = await doctor(f"http://127.0.0.1:{port}/api/")

    for check in found:
        assert check.ok is False
        assert check.detail.startswith(f"cannot reach http://127.0.0.1:{port}: ")
        assert check.fix == FIX


async def test_a_hung_api_is_cut_by_the_timeout() -> None:
    with silent_port() as port:
        found = await doctor(f"http://127.0.0.1:{port}/api/", seconds=0.5)

    assert found == [
        Check("channel slack bot token", False, "no answer within 0.5 s", FIX),
        Check("channel slack app token", False, "no answer within 0.5 s", FIX),
    ]


def test_nothing_is_checked_for_a_disabled_or_invalid_table() -> None:
    assert checks({"bot_token": BOT_TOKEN, "app_token": APP_TOKEN}) == []
    assert checks({"enabled": True, "bot_token": "not-a-token", "app_token": APP_TOKEN}) == []
