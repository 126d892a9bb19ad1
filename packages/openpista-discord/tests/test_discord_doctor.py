"""``openpista doctor``'s online token check (``GET /users/@me``) against the emulator."""

from __future__ import annotations

from functools import partial

from openpista.cli.doctor import Check, run_online
from openpista_discord import plugin
from openpista_discord.testing import DEFAULT_TOKEN, DiscordEmulator
from openpista_testing.doctor import channel_checks
from openpista_testing.ports import free_port, silent_port

NAME = "channel discord token"
WRONG = "MTA5ODc2NTQzMjEwOTg3NjU0.GWrong.wrong-token-wrong-token_0123456789"


checks = partial(channel_checks, plugin, "discord")


async def doctor(api_base: str, token: str = DEFAULT_TOKEN, seconds: float = 10) -> Check:
    table = {"enabled": True, "token": token, "allowed_users": [42], "api_base": api_base}
    (check,) = await run_online(checks(table), seconds)
    return check


async def test_a_valid_token_names_the_bot(discord_emulator: DiscordEmulator) -> None:
    check = await doctor(discord_emulator.base_url)

    bot = discord_emulator.bot
    assert check == Check(NAME, True, f"valid: bot {bot.username} (id {bot.id})")
    assert discord_emulator.requests == [("GET", "/users/@me")]


async def test_a_refused_token_is_a_cross_with_the_fix_and_no_secret(
    discord_emulator: DiscordEmulator,
) -> None:
    check = await doctor(discord_emulator.base_url, token=WRONG)

    assert check.ok is False
    assert check.detail == "Discord refused the token: HTTP 401 401: Unauthorized"
    assert "Reset Token" in check.fix
    assert "DISCORD_BOT_TOKEN" in check.fix
    assert "wrong-token" not in check.detail + check.fix


async def test_an_unreachable_api_names_where_without_the_token() -> None:
    port = free_port()

    check = await doctor(f"http://127.0.0.1:{port}")

    assert check.ok is False
    assert check.detail.startswith(f"cannot reach http://127.0.0.1:{port}: ")
    assert "api_base" in check.fix


async def test_a_hung_api_is_cut_by_the_timeout() -> None:
    with silent_port() as port:
        check = await doctor(f"http://127.0.0.1:{port}", seconds=0.5)

    assert check == Check(
        NAME, False, "no answer within 0.5 s", "check the network, or [channels.discord] api_base"
    )


def test_nothing_is_checked_for_a_disabled_or_invalid_table() -> None:
    assert checks({"token": DEFAULT_TOKEN}) == []
    assert checks({"enabled": True, "token": "not a token", "allowed_users": [42]}) == []
