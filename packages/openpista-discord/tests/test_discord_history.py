"""The emulator's ``GET /channels/{id}/messages`` answers as Discord documents it (``before``,
``after``, ``around``, ``limit`` 1..100, newest first), read by discord.py unchanged and
over raw HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import discord
import httpx
import pytest

from openpista_discord.testing import DiscordEmulator, User


def message(channel_id: int, n: int, user: User) -> dict[str, Any]:
    """Message ``n`` of ``channel_id`` (ids grow with ``n``), as REST has it."""
    return {
        "id": str(1300000000000000000 + n),
        "channel_id": str(channel_id),
        "author": user.as_json(),
        "content": f"m{n}",
        "timestamp": "2026-12-03T10:00:00.000000+00:00",
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
    }


@pytest.fixture
async def client(discord_emulator: DiscordEmulator) -> AsyncIterator[discord.Client]:
    discord.http.Route.BASE = f"{discord_emulator.base_url}/api/v10"
    bot = discord.Client(intents=discord.Intents.none())
    await bot.login(discord_emulator.token)
    try:
        yield bot
    finally:
        await bot.close()
        discord.http.Route.BASE = "https://discord.com/api/v10"


async def test_history_before_after_and_limit_as_discord_py_reads_them(
    discord_emulator: DiscordEmulator, client: discord.Client, alice: User
) -> None:
    dm = discord_emulator.dm_channel(alice)
    for n in range(250):
        discord_emulator.store(dm, message(dm, n, alice))
    channel = await client.fetch_channel(dm)
    assert isinstance(channel, discord.DMChannel)

    def contents(messages: list[discord.Message]) -> list[str]:
        return [m.content for m in messages]

    after = discord.Object(id=1300000000000000000 + 9)
    caught = [m async for m in channel.history(after=after, limit=150, oldest_first=True)]
    assert contents(caught) == [f"m{n}" for n in range(10, 160)]  # two pages, in order
    newest = [m async for m in channel.history(limit=3)]
    assert contents(newest) == ["m249", "m248", "m247"]
    before = discord.Object(id=1300000000000000000 + 5)
    assert contents([m async for m in channel.history(before=before)]) == [
        "m4",
        "m3",
        "m2",
        "m1",
        "m0",
    ]
    around = discord.Object(id=1300000000000000000 + 100)
    assert contents([m async for m in channel.history(around=around, limit=5)]) == [
        "m102",
        "m101",
        "m100",
        "m99",
        "m98",
    ]
    raw = await client.http.logs_from(dm, 4, after=1300000000000000000 + 200)
    assert [m["content"] for m in raw] == ["m204", "m203", "m202", "m201"]  # newest first


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "limit=ten", "after=abc", "before=1&after=2", "around=-1"],
)
async def test_a_bad_query_is_400_invalid_form_body(
    discord_emulator: DiscordEmulator, alice: User, query: str
) -> None:
    dm = discord_emulator.dm_channel(alice)
    headers = {"Authorization": f"Bot {discord_emulator.token}"}
    url = f"{discord_emulator.base_url}/api/v10/channels/{dm}/messages?{query}"
    async with httpx.AsyncClient() as http:
        response = await http.get(url, headers=headers)
    assert response.status_code == 400
    assert response.json()["code"] == 50035


async def test_an_unreadable_or_unknown_channel_is_refused(
    discord_emulator: DiscordEmulator, client: discord.Client, alice: User
) -> None:
    dm = discord_emulator.dm_channel(alice)
    discord_emulator.unreadable.add(dm)
    with pytest.raises(discord.Forbidden) as refused:
        await client.http.logs_from(dm, 10)
    assert refused.value.code == 50001
    with pytest.raises(discord.NotFound) as unknown:
        await client.http.logs_from(1999999999999999999, 10)
    assert unknown.value.code == 10003


async def test_a_guild_member_is_answered_as_discord_documents_it(
    discord_emulator: DiscordEmulator, client: discord.Client, bob: User
) -> None:
    guild = discord_emulator.guild_id
    with pytest.raises(discord.NotFound) as unknown:  # never wrote in the guild
        await client.http.get_member(guild, bob.id)
    assert unknown.value.code == 10007
    discord_emulator.join(bob)
    member = await client.http.get_member(guild, bob.id)
    assert member["user"]["id"] == str(bob.id)
    assert member["roles"] == [str(role) for role in bob.roles]
    assert member["joined_at"]
    discord_emulator.leave(bob)
    with pytest.raises(discord.NotFound) as left:
        await client.http.get_member(guild, bob.id)
    assert left.value.code == 10007
    with pytest.raises(discord.NotFound) as no_guild:
        await client.http.get_member(1999999999999999999, bob.id)
    assert no_guild.value.code == 10004
    headers = {"Authorization": f"Bot {discord_emulator.token}"}
    url = f"{discord_emulator.base_url}/api/v10/guilds/{guild}/members/me;DROP"
    async with httpx.AsyncClient() as http:
        response = await http.get(url, headers=headers)
    assert (response.status_code, response.json()["code"]) == (400, 50035)
