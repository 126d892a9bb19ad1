"""Cluster mode: only the replica that leads ``discord`` holds a gateway connection
(``context.leadership``), every replica sends over REST; the leadership itself (PostgreSQL
advisory locks) is tested in core's test_cluster.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from openpista.models import Answer
from openpista.plugin_context import PluginContext
from openpista_discord.adapter import DiscordAdapter
from openpista_discord.settings import parse_settings
from openpista_discord.testing import DiscordEmulator, User
from openpista_testing.cli import channel_settings
from openpista_testing.cluster import Election
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways
from openpista_testing.polling import eventually

ROLE = "discord"


async def replica(
    name: str,
    election: Election,
    tmp_path: Path,
    llm_emulator: LlmEmulator,
    discord_emulator: DiscordEmulator,
    gateways: Gateways,
    *allowed: int,
) -> DiscordAdapter:
    """A daemon (its own database) whose Discord channel is a candidate for the role and
    lets ``allowed`` users in."""
    settings = channel_settings(llm_emulator, tmp_path / name)
    context = PluginContext(settings)
    context.leadership = election.replica(name)
    table = {
        "token": discord_emulator.token,
        "api_base": discord_emulator.base_url,
        "allowed_users": list(allowed),
    }
    adapter = DiscordAdapter(parse_settings(table), context=context)
    await gateways.start(settings, adapter)
    return adapter


async def test_only_the_leader_connects_and_another_replica_takes_over(
    tmp_path: Path,
    llm_emulator: LlmEmulator,
    discord_emulator: DiscordEmulator,
    gateways: Gateways,
    alice: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="openpista_discord")
    llm_emulator.default_reply = lambda body: "echo: " + body["messages"][-1]["content"]
    election = Election(ROLE)
    serving = (tmp_path, llm_emulator, discord_emulator, gateways, alice.id)
    first = await replica("a", election, *serving)
    second = await replica("b", election, *serving)
    await eventually(lambda: election.candidates == {"a", "b"})
    assert first.bot_id == second.bot_id == discord_emulator.bot.id  # logged in: REST works
    assert discord_emulator.connections == 0  # nobody leads yet: nobody receives

    election.elect("a")
    await eventually(discord_emulator.connected)
    dm = discord_emulator.dm_channel(alice)
    discord_emulator.send_message(dm, "one", alice)
    await eventually(lambda: discord_emulator.texts(dm) == ["echo: one"])

    election.elect(None)  # the leader lost the role (its PostgreSQL connection, say)
    await eventually(lambda: "another replica holds the gateway connection now" in caplog.text)
    await eventually(lambda: discord_emulator.connections == 0)
    election.elect("b")  # the next heartbeat elects the other replica
    await eventually(discord_emulator.connected)
    discord_emulator.send_message(dm, "two", alice)
    await eventually(lambda: discord_emulator.texts(dm) == ["echo: one", "echo: two"])

    assert discord_emulator.identifies == 2
    assert discord_emulator.peak_connections == 1  # never two connections: each event once
    assert len(llm_emulator.requests) == 2
    await first.send(Answer(channel_id=f"discord:{dm}", text="sent by a"))  # REST anywhere
    assert discord_emulator.texts(dm)[-1] == "sent by a"

    election.elect("a")  # and back: the old leader reconnects, the new one lets go
    await eventually(lambda: discord_emulator.identifies == 3)
    await eventually(lambda: discord_emulator.connected() and discord_emulator.connections == 1)
    discord_emulator.send_message(dm, "three", alice)
    await eventually(lambda: discord_emulator.texts(dm)[-1] == "echo: three")
    assert len(llm_emulator.requests) == 3


async def test_a_refused_intent_on_the_leaders_gateway_is_one_clear_error(
    tmp_path: Path,
    llm_emulator: LlmEmulator,
    discord_emulator: DiscordEmulator,
    gateways: Gateways,
    caplog: pytest.LogCaptureFixture,
) -> None:
    election = Election(ROLE)
    adapter = await replica("a", election, tmp_path, llm_emulator, discord_emulator, gateways)
    await eventually(lambda: election.candidates == {"a"})
    discord_emulator.granted_intents = 0  # Message Content not granted: 4014 on IDENTIFY
    election.elect("a")
    await eventually(lambda: "❌ channel discord is not served" in caplog.text)
    assert "Discord refused the Message Content intent" in caplog.text
    assert "Traceback" not in caplog.text
    assert adapter.bot_id == discord_emulator.bot.id
    await eventually(lambda: discord_emulator.connections == 0)
