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

from openpista.access import REFUSAL
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
    cluster: ClusterReplicas,
    name: str,
    discord: DiscordEmulator,
    alice: User,
    more: str = "",
    limit: int = 3,
) -> Replica:
    extra = f"""
[channels.discord]
enabled = true
token = "{discord.token}"
api_base = "{discord.base_url}"
allowed_users = [{alice.id}]
catch_up_limit = {limit}
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
    deadline = time.monotonic() + 30  # not wait_until: it gives up once the daemon's output ends
    while discord.connected():
        assert time.monotonic() < deadline, "the killed replica's gateway connection stayed"
        time.sleep(0.05)


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


def test_a_missed_message_of_a_user_let_in_by_a_role_is_answered_after_a_member_lookup(
    cluster: ClusterReplicas,
    llm_emulator: LlmEmulator,
    discord_emulator: DiscordEmulator,
    alice: User,
    bob: User,
) -> None:
    discord, general = discord_emulator, discord_emulator.text_channel
    role = bob.roles[0]  # the emulator's guild has it
    roles = f"allowed_roles = [{role}]"
    carol = User(4203, "carol")  # a member without the role
    dave = User(4204, "dave", roles=(role,))  # leaves the guild meanwhile
    eve = User(4205, "eve", roles=(role,))  # her lookup is answered malformed
    a = leader(cluster, discord, alice, roles)
    discord.send_message(general, "bob live", bob, mention_bot=True)
    a.daemon.wait_until(lambda: discord.texts(general) == ["echo: bob live"])
    kill(cluster, a, discord)
    discord.send_message(general, "bob missed 1", bob, mention_bot=True)
    discord.send_message(general, "carol missed", carol, mention_bot=True)
    discord.send_message(general, "dave missed", dave, mention_bot=True)
    discord.leave(dave)
    discord.send_message(general, "eve missed", eve, mention_bot=True)
    discord.member_answers[eve.id] = {"user": eve.as_json(), "roles": f"{role}"}
    discord.send_message(general, "bob missed 2", bob, mention_bot=True)

    b = discord_replica(cluster, "b", discord, alice, roles, limit=10)
    b.daemon.wait_for("discord: caught up on 1 channel(s), 5 message(s)")
    want = ["echo: bob live", "echo: bob missed 1", "echo: bob missed 2"]
    b.daemon.wait_until(lambda: [t for t in discord.texts(general) if t != REFUSAL] == want)
    assert discord.texts(general).count(REFUSAL) == 1  # carol's, as the gateway refuses her
    output = b.daemon.output()
    assert f"a missed message of {dave.id} is not handled: no member of guild" in output
    assert "Unknown Member" in output
    assert f"a missed message of {eve.id} is not handled: no member of guild" in output
    assert f"refused user {carol.id}" in output
    lookups = [path for _, path in discord.requests if "/members/" in path]
    assert sorted(lookups) == sorted(
        f"/guilds/{discord.guild_id}/members/{user.id}" for user in (bob, carol, dave, eve)
    )  # one per user
    assert answered(llm_emulator) == ["bob live", "bob missed 1", "bob missed 2"]
    assert "Traceback" not in output


def test_a_live_message_of_a_chat_being_caught_up_is_answered_after_its_missed_ones(
    cluster: ClusterReplicas,
    llm_emulator: LlmEmulator,
    discord_emulator: DiscordEmulator,
    alice: User,
) -> None:
    discord = discord_emulator
    dm, general = discord.dm_channel(alice), discord.text_channel
    a = leader(cluster, discord, alice)
    discord.send_message(dm, "one", alice)
    discord.send_message(general, "two", alice, mention_bot=True)
    a.daemon.wait_until(lambda: discord.texts(dm) == ["echo: one"])
    a.daemon.wait_until(lambda: discord.texts(general) == ["echo: two"])
    kill(cluster, a, discord)
    discord.send_message(dm, "missed", alice)
    discord.held_history.add(dm)  # the catch-up's history call of the DM hangs

    b = discord_replica(cluster, "b", discord, alice)
    b.daemon.wait_until(lambda: ("GET", f"/channels/{dm}/messages") in discord.requests)
    discord.send_message(dm, "live", alice)
    b.daemon.wait_for(f"discord: a live message in {dm} waits until its chat is caught up")
    discord.send_message(general, "elsewhere", alice, mention_bot=True)  # does not wait
    b.daemon.wait_until(lambda: discord.texts(general) == ["echo: two", "echo: elsewhere"])
    assert discord.texts(dm) == ["echo: one"]
    discord.held_history.discard(dm)
    b.daemon.wait_until(lambda: discord.texts(dm) == ["echo: one", "echo: missed", "echo: live"])
    b.daemon.wait_for("discord: caught up on 2 channel(s)")
    asked = answered(llm_emulator)
    assert sorted(asked[:2]) == ["one", "two"]  # two chats of the first leader: any order
    assert asked[2:] == ["elsewhere", "missed", "live"]
    assert "takes over" not in b.daemon.output()
    assert "Traceback" not in b.daemon.output()


def test_a_catch_up_stuck_on_rest_lets_live_messages_go_after_catch_up_wait(
    cluster: ClusterReplicas,
    llm_emulator: LlmEmulator,
    discord_emulator: DiscordEmulator,
    alice: User,
) -> None:
    discord, short = discord_emulator, "catch_up_wait = 0.5"
    dm = discord.dm_channel(alice)
    a = leader(cluster, discord, alice, short)
    discord.send_message(dm, "one", alice)
    a.daemon.wait_until(lambda: discord.texts(dm) == ["echo: one"])
    kill(cluster, a, discord)
    discord.send_message(dm, "missed", alice)
    discord.held_history.add(dm)

    b = discord_replica(cluster, "b", discord, alice, short)
    b.daemon.wait_until(lambda: ("GET", f"/channels/{dm}/messages") in discord.requests)
    discord.send_message(dm, "live", alice)
    b.daemon.wait_for(f"discord: the catch-up of {dm} takes over 0 s")
    b.daemon.wait_until(lambda: discord.texts(dm) == ["echo: one", "echo: live"])
    discord.held_history.discard(dm)
    b.daemon.wait_until(lambda: discord.texts(dm) == ["echo: one", "echo: live", "echo: missed"])
    b.daemon.wait_for("discord: caught up on 1 channel(s), 2 message(s)")  # live: not again
    assert answered(llm_emulator) == ["one", "live", "missed"]
    assert "Traceback" not in b.daemon.output()
