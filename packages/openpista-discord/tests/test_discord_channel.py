"""The Discord channel end to end in one process: real discord.py against the Discord
emulator (REST and gateway on loopback), the real gateway, litellm against the LLM
emulator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from openpista_discord.adapter import DiscordAdapter
from openpista_discord.testing import DiscordEmulator, User

from openpista_testing.emulator import LlmEmulator
from openpista_testing.polling import eventually

Serve = Callable[..., Awaitable[DiscordAdapter]]


async def test_dm_round_trip(
    serve: Serve, discord_emulator: DiscordEmulator, llm_emulator: LlmEmulator, alice: User
) -> None:
    llm_emulator.reply_text("hello Alice", delay=0.5)
    await serve()
    dm = discord_emulator.dm_channel(alice)
    discord_emulator.send_message(dm, "hi there", alice)
    await eventually(lambda: discord_emulator.texts(dm) == ["hello Alice"])
    assert dm in discord_emulator.typing
    assert llm_emulator.requests[0].json["messages"][-1]["content"] == "hi there"
    assert discord_emulator.identifies == 1
