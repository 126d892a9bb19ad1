"""What goes wrong on Discord: 429s, gateway disconnects, a refused token or intent, and
malformed or oversized events; real discord.py against the emulator, the real gateway."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from openpista import ConfigError
from openpista.config import Settings
from openpista_discord.adapter import TOO_LONG, DiscordAdapter
from openpista_discord.settings import parse_settings
from openpista_discord.testing import DiscordEmulator, User
from openpista_testing.adapters import QueueContext
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways
from openpista_testing.polling import eventually

Serve = Callable[..., Awaitable[DiscordAdapter]]


def echo(llm_emulator: LlmEmulator) -> None:
    llm_emulator.default_reply = lambda body: "echo: " + body["messages"][-1]["content"]


@pytest.mark.parametrize("is_global", [False, True])
async def test_429_is_waited_out_and_the_answer_arrives(
    serve: Serve,
    discord_emulator: DiscordEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    is_global: bool,
) -> None:
    echo(llm_emulator)
    await serve(edit_interval=600)
    discord_emulator.rate_limit(0.5, times=2, is_global=is_global)
    dm = discord_emulator.dm_channel(alice)
    discord_emulator.send_message(dm, "hello", alice)
    await eventually(lambda: discord_emulator.texts(dm) == ["echo: hello"])
    assert discord_emulator.rate_limited == 2
    assert discord_emulator.early_retries == 0  # discord.py waited retry_after each time


async def test_429_longer_than_max_retry_after_drops_that_send_only(
    serve: Serve,
    discord_emulator: DiscordEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    echo(llm_emulator)
    await serve(max_retry_after=30, edit_interval=600)
    discord_emulator.rate_limit(3600, times=1)  # an hour: not waited for
    dm = discord_emulator.dm_channel(alice)
    discord_emulator.send_message(dm, "first", alice)
    [line] = await eventually(
        lambda: [r for r in caplog.records if "delivery to" in r.getMessage()]
    )
    assert line.levelno == logging.WARNING
    assert line.exc_info is None
    assert discord_emulator.texts(dm) == []
    shown = discord_emulator.slash(dm, alice, "help")  # the channel still serves
    [reply] = await discord_emulator.wait_for_responses(shown)
    assert "/model" in reply["data"]["content"]


async def test_disconnect_resumes_and_missed_events_are_replayed(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    echo(llm_emulator)
    await serve()
    dm = discord_emulator.dm_channel(alice)
    discord_emulator.disconnect(4000)
    discord_emulator.send_message(dm, "sent while away", alice)  # kept for the RESUME
    await eventually(lambda: discord_emulator.texts(dm) == ["echo: sent while away"], wait=30)
    assert discord_emulator.resumes == 1
    assert discord_emulator.identifies == 1  # resumed, not a new session
    discord_emulator.send_message(dm, "and after", alice)
    await eventually(lambda: discord_emulator.texts(dm)[-1:] == ["echo: and after"])


async def test_a_session_discord_forgot_is_started_afresh(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    echo(llm_emulator)
    await serve()
    discord_emulator.forget_sessions()
    discord_emulator.disconnect(4000)
    await eventually(lambda: discord_emulator.identifies == 2 and discord_emulator.connected())
    dm = discord_emulator.dm_channel(alice)
    discord_emulator.send_message(dm, "new session", alice)
    await eventually(lambda: discord_emulator.texts(dm) == ["echo: new session"])
    assert discord_emulator.resumes == 0


async def test_invalid_token_is_one_clear_config_error(
    discord_emulator: DiscordEmulator, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GWrong.not-the-right-token-at-all_0000"
    table = {"token": wrong, "api_base": discord_emulator.base_url}
    adapter = DiscordAdapter(parse_settings(table))
    with pytest.raises(ConfigError) as raised:
        await adapter.start(QueueContext())
    message = str(raised.value)
    assert "refused the bot token" in message
    assert "[channels.discord] token" in message
    assert "\n" not in message
    assert wrong not in message
    async with Gateways() as gateways:
        caplog.set_level(logging.ERROR)
        await gateways.start(settings, DiscordAdapter(parse_settings(table)))
        [line] = await eventually(
            lambda: [r.getMessage() for r in caplog.records if "not served" in r.getMessage()]
        )
    assert line.startswith("❌ channel discord is not served: Discord refused the bot token")
    assert wrong not in caplog.text


async def test_missing_message_content_intent_explains_the_fix(
    discord_emulator: DiscordEmulator, alice: User, llm_emulator: LlmEmulator, serve: Serve
) -> None:
    discord_emulator.granted_intents = 0
    table = {"token": discord_emulator.token, "api_base": discord_emulator.base_url}
    adapter = DiscordAdapter(parse_settings(table))
    with pytest.raises(ConfigError) as raised:
        await adapter.start(QueueContext())
    assert "Privileged Gateway Intents" in str(raised.value)
    assert "message_content = false" in str(raised.value)
    echo(llm_emulator)
    await serve(message_content=False)  # works without the intent: DMs and mentions
    dm = discord_emulator.dm_channel(alice)
    discord_emulator.send_message(dm, "still here", alice)
    await eventually(lambda: discord_emulator.texts(dm) == ["echo: still here"])


async def test_malformed_events_cost_a_reconnect_not_the_channel(
    serve: Serve,
    discord_emulator: DiscordEmulator,
    llm_emulator: LlmEmulator,
    alice: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """discord.py ends the connection on a frame it cannot parse; the channel reconnects
    (a new session) and goes on serving. Unknown event types are ignored."""
    echo(llm_emulator)
    caplog.set_level(logging.INFO)
    await serve()
    dm = discord_emulator.dm_channel(alice)
    discord_emulator.send_raw("{this is not json")
    await eventually(lambda: discord_emulator.identifies == 2 and discord_emulator.connected())
    discord_emulator.dispatch("MESSAGE_CREATE", {"id": "1", "channel_id": "2"})  # no author
    await eventually(lambda: discord_emulator.identifies == 3 and discord_emulator.connected())
    discord_emulator.dispatch("NO_SUCH_EVENT", {"x": 1})
    discord_emulator.send_message(dm, "are you there?", alice)
    await eventually(lambda: discord_emulator.texts(dm) == ["echo: are you there?"], wait=30)
    assert discord_emulator.identifies == 3
    assert all(r.exc_info is None for r in caplog.records), "a traceback was logged"
    assert any("Expecting property name" in r.getMessage() for r in caplog.records)


async def test_oversized_message_is_refused_not_forwarded(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    await serve()
    dm = discord_emulator.dm_channel(alice)
    discord_emulator.send_message(dm, "A" * 3_000_000, alice)  # a 3 MB gateway frame
    await eventually(lambda: discord_emulator.texts(dm) == [TOO_LONG])
    await asyncio.sleep(0.3)
    assert llm_emulator.requests == []
