"""``openpista doctor``'s online token check (``getMe``) against the Bot API emulator."""

from __future__ import annotations

from functools import partial

import httpx

from openpista.cli.doctor import Check, run_online
from openpista_telegram import plugin
from openpista_telegram.testing import DEFAULT_TOKEN, TelegramEmulator
from openpista_testing.doctor import channel_checks
from openpista_testing.polling import eventually
from openpista_testing.ports import free_port, silent_port

NAME = "channel telegram token"


checks = partial(channel_checks, plugin, "telegram")


async def doctor(api_base: str, token: str = DEFAULT_TOKEN, seconds: float = 10) -> Check:
    table = {"enabled": True, "token": token, "allowed_users": [42], "api_base": api_base}
    (check,) = await run_online(checks(table), seconds)
    return check


async def test_a_valid_token_names_the_bot(telegram: TelegramEmulator) -> None:
    check = await doctor(telegram.base_url)

    assert check == Check(NAME, True, "valid: bot @openpista_test_bot (id 123456789)")
    assert telegram.requests == ["getMe"]


async def test_a_refused_token_is_a_cross_with_the_fix_and_no_secret(
    telegram: TelegramEmulator,
) -> None:
    wrong = "123456789:AAWrongTokenWrongTokenWrongToken"

    check = await doctor(telegram.base_url, token=wrong)

    assert check.ok is False
    assert check.detail == "Telegram refused the token: HTTP 401 Unauthorized"
    assert "@BotFather" in check.fix
    assert "TELEGRAM_BOT_TOKEN" in check.fix
    assert "WrongToken" not in check.detail + check.fix


async def test_an_unreachable_api_names_where_without_the_token() -> None:
    port = free_port()

    check = await doctor(f"http://127.0.0.1:{port}")

    assert check.ok is False
    assert check.detail.startswith(f"cannot reach http://127.0.0.1:{port}: ")
    assert DEFAULT_TOKEN not in check.detail
    assert "api_base" in check.fix


async def test_a_hung_api_is_cut_by_the_timeout() -> None:
    with silent_port() as port:
        check = await doctor(f"http://127.0.0.1:{port}", seconds=0.5)

    assert check == Check(
        NAME,
        False,
        "no answer within 0.5 s",
        "check the network, or [channels.telegram] api_base (the Bot API server)",
    )


def test_nothing_is_checked_for_a_disabled_or_invalid_table() -> None:
    assert checks({"token": DEFAULT_TOKEN}) == []
    assert checks({"enabled": True, "token": "not a token", "allowed_users": [42]}) == []


async def webhook_check(telegram: TelegramEmulator, url: str) -> Check:
    table = {
        "enabled": True,
        "token": DEFAULT_TOKEN,
        "allowed_users": [42],
        "api_base": telegram.base_url,
        "mode": "webhook",
        "webhook_url": url,
    }
    token, webhook = await run_online(checks(table), 10)
    assert token.ok is True
    return webhook


def set_webhook(telegram: TelegramEmulator, url: str) -> None:
    done = httpx.post(f"{telegram.base_url}/bot{DEFAULT_TOKEN}/setWebhook", data={"url": url})
    assert done.json() == {"ok": True, "result": True}


async def test_a_webhook_not_set_yet_is_left_to_start(telegram: TelegramEmulator) -> None:
    url = "http://127.0.0.1:8443/telegram/webhook"

    check = await webhook_check(telegram, url)

    assert check == Check(
        "channel telegram webhook", None, f"no webhook is set; `openpista start` sets {url}"
    )


async def test_the_webhook_telegram_posts_to_is_ours(telegram: TelegramEmulator) -> None:
    url = f"http://127.0.0.1:{free_port()}/telegram/webhook"
    set_webhook(telegram, url)

    check = await webhook_check(telegram, url)

    assert check == Check(
        "channel telegram webhook", True, f"Telegram posts to {url} (0 update(s) pending)"
    )


async def test_a_webhook_telegram_cannot_deliver_to_is_a_cross(
    telegram: TelegramEmulator,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/telegram/webhook"  # nothing listens there
    set_webhook(telegram, url)
    telegram.send_text(42, "hello")
    await eventually(lambda: telegram.deliveries, wait=30)

    check = await webhook_check(telegram, url)

    assert check.ok is False
    assert check.detail.startswith(f"Telegram's last delivery to {url} failed: Wrong response: 0")
    assert "webhook_host:webhook_port" in check.fix
