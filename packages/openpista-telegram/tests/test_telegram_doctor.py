"""``openpista doctor``'s online token check (``getMe``) against the Bot API emulator."""

from __future__ import annotations

from typing import Any

from openpista.cli.doctor import Check, run_online
from openpista.config import Settings
from openpista.doctor import DoctorCheck
from openpista_telegram import plugin
from openpista_telegram.testing import DEFAULT_TOKEN, TelegramEmulator
from openpista_testing.ports import free_port, silent_port

NAME = "channel telegram token"


def checks(table: dict[str, Any]) -> list[DoctorCheck]:
    found: list[DoctorCheck] = []
    plugin.doctor_checks(register=found.append, config=Settings(channels={"telegram": table}))
    return found


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
