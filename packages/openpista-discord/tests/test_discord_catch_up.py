"""Cluster mode end to end: messages written while no replica holds Discord's gateway are
fetched over REST by the replica that takes it over and answered once (docs/scale-out.md,
"A replica dies mid-turn"). Real ``openpista start`` replicas on one real PostgreSQL, the
real discord.py against the emulator (REST + gateway), the LLM emulator answering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from openpista_discord.testing import DiscordEmulator, User
from openpista_testing.emulator import LlmEmulator
from openpista_testing.postgres import PostgresServer
from openpista_testing.replicas import ClusterReplicas, Replica, fresh_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def cluster(
    tmp_path: Path, llm_emulator: LlmEmulator, postgres: PostgresServer
) -> Iterator[ClusterReplicas]:
    llm_emulator.default_reply = lambda body: "echo: " + body["messages"][-1]["content"]
    with fresh_cluster(postgres, tmp_path, llm_emulator, "discord") as replicas:
        yield replicas


def discord_replica(
    cluster: ClusterReplicas, name: str, discord: DiscordEmulator, alice: User, more: str = ""
) -> Replica:
    extra = f"""
[channels.discord]
enabled = true
token = "{discord.token}"
api_base = "{discord.base_url}"
allowed_users = [{alice.id}]
catch_up_limit = 3
{more}
"""
    return cluster.start(name, extra=extra, plugins="discord")


def leader(
    cluster: ClusterReplicas, discord: DiscordEmulator, alice: User, more: str = ""
) -> Replica:
    """Replica ``a``, once it holds the gateway."""
    replica = discord_replica(cluster, "a", discord, alice, more)
    replica.daemon.wait_until(discord.connected)
    return replica


def kill(cluster: ClusterReplicas, replica: Replica, discord: DiscordEmulator) -> None:
    """SIGKILL ``replica`` once its turns are over: its gateway connection and its leases
    go with it."""
    settle(cluster)
    replica.daemon.kill()
    replica.daemon.wait_until(lambda: not discord.connected())


def settle(cluster: ClusterReplicas) -> None:
    """Wait until no stored event waits in ``cluster_inbox``: every turn is over (a replica
    killed between sending an answer and deleting its event sends it again elsewhere)."""
    dsn = cluster.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    async def waiting() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM cluster_inbox"))
        finally:
            await conn.close()

    deadline = time.monotonic() + 30
    while asyncio.run(waiting()):
        assert time.monotonic() < deadline, "the inbox never emptied"
        time.sleep(0.05)


def answered(llm_emulator: LlmEmulator) -> list[str]:
    """The user message of each chat request, in order."""
    return [
        r.json["messages"][-1]["content"]
        for r in llm_emulator.requests
        if r.path.endswith("/completions")
    ]


def test_messages_written_while_no_replica_holds_the_gateway_are_answered_once(
    cluster: ClusterReplicas,
    llm_emulator: LlmEmulator,
    discord_emulator: DiscordEmulator,
    alice: User,
) -> None:
    discord = discord_emulator
    a = leader(cluster, discord, alice)
    dm, general = discord.dm_channel(alice), discord.text_channel
    thread = discord.open_thread(alice, "ours")
    discord.send_message(dm, "one", alice)
    discord.send_message(general, "in general", alice, mention_bot=True)
    discord.send_message(thread, "in the thread", alice, mention_bot=True)
    a.daemon.wait_until(lambda: discord.texts(dm) == ["echo: one"])
    a.daemon.wait_until(lambda: discord.texts(general) == ["echo: in general"])
    a.daemon.wait_until(lambda: discord.texts(thread) == ["echo: in the thread"])

    kill(cluster, a, discord)
    for n in range(2, 7):  # written while no replica holds the gateway
        discord.send_message(dm, f"missed {n}", alice)
    discord.send_message(general, "not for the bot", alice)  # no mention: not answered
    discord.send_message(general, "missed mention", alice, mention_bot=True)
    discord.unreadable.add(thread)  # the bot lost access to it meanwhile: 403 over REST
    discord.send_message(thread, "unreadable", alice, mention_bot=True)

    b = discord_replica(cluster, "b", discord, alice)
    b.daemon.wait_for("discord: caught up on 3 channel(s)")
    assert "over 3 messages were written in" in b.daemon.output()  # cut at catch_up_limit
    assert f"cannot fetch the messages missed in {thread}: 403 Forbidden" in b.daemon.output()
    caught_up = ["echo: one", "echo: missed 2", "echo: missed 3", "echo: missed 4"]
    b.daemon.wait_until(lambda: discord.texts(dm) == caught_up)
    b.daemon.wait_until(
        lambda: discord.texts(general) == ["echo: in general", "echo: missed mention"]
    )
    assert discord.texts(thread) == ["echo: in the thread"]

    discord.send_message(dm, "live", alice)  # the gateway works on
    b.daemon.wait_until(lambda: discord.texts(dm)[-1] == "echo: live")
    assert "Traceback" not in b.daemon.output()
    asked = answered(llm_emulator)
    assert sorted(asked) == sorted(set(asked))  # each message answered once
    assert len(asked) == 8


def test_a_malformed_message_in_the_history_stops_only_its_channels_catch_up(
    cluster: ClusterReplicas,
    llm_emulator: LlmEmulator,
    discord_emulator: DiscordEmulator,
    alice: User,
) -> None:
    discord = discord_emulator
    a = leader(cluster, discord, alice)
    dm, general = discord.dm_channel(alice), discord.text_channel
    discord.send_message(dm, "one", alice)
    discord.send_message(general, "two", alice, mention_bot=True)
    a.daemon.wait_until(lambda: discord.texts(dm) == ["echo: one"])
    a.daemon.wait_until(lambda: discord.texts(general) == ["echo: two"])
    kill(cluster, a, discord)
    forged = discord.send_message(general, "forged", alice, mention_bot=True)
    discord.store(general, forged | {"id": "1e400; DROP TABLE cluster_deliveries"})
    discord.store(general, forged | {"id": "9" * 400})
    discord.send_message(dm, "missed", alice)

    b = discord_replica(cluster, "b", discord, alice)
    b.daemon.wait_for("discord: caught up on 2 channel(s)")
    b.daemon.wait_until(lambda: discord.texts(dm)[-1:] == ["echo: missed"])
    assert f"cannot fetch the messages missed in {general}" in b.daemon.output()
    discord.send_message(dm, "live", alice)
    b.daemon.wait_until(lambda: discord.texts(dm)[-1] == "echo: live")
    assert "Traceback" not in b.daemon.output()
    assert answered(llm_emulator).count("missed") == 1


def test_with_a_thread_per_conversation_the_channel_threads_were_opened_from_is_caught_up(
    cluster: ClusterReplicas,
    llm_emulator: LlmEmulator,
    discord_emulator: DiscordEmulator,
    alice: User,
) -> None:
    discord, threads = discord_emulator, "thread_per_conversation = true"
    a = leader(cluster, discord, alice, threads)
    general = discord.text_channel
    first = int(discord.send_message(general, "first", alice, mention_bot=True)["id"])
    a.daemon.wait_until(lambda: discord.texts(first) == ["echo: first"])  # its thread
    kill(cluster, a, discord)
    second = int(discord.send_message(general, "second", alice, mention_bot=True)["id"])
    discord.send_message(first, "more", alice)  # in the bot's thread: no mention needed

    b = discord_replica(cluster, "b", discord, alice, threads)
    b.daemon.wait_for("discord: caught up on 2 channel(s)")  # the thread and its channel
    b.daemon.wait_until(lambda: discord.texts(second) == ["echo: second"])  # a new thread
    b.daemon.wait_until(lambda: discord.texts(first) == ["echo: first", "echo: more"])
    assert sorted(discord.threads) == sorted([first, second])
    assert sorted(answered(llm_emulator)) == ["first", "more", "second"]
    assert discord.texts(general) == []
