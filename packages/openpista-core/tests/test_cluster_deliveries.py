"""Exactly once by the messenger's message id (``ChannelEvent.delivery_id``): real gateways
on one real PostgreSQL, each a replica with its inbox (docs/scale-out.md)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from openpista.cluster import ClusterMember, cluster_dsn
from openpista.cluster_deliveries import KEPT, ClusterDeliveries, delivery_key
from openpista.cluster_handover import Handover
from openpista.config import ClusterSettings, DatabaseSettings, Settings
from openpista.gateway.gateway import Gateway
from openpista.models import ChannelEvent
from openpista_testing.adapters import LoopbackAdapter
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways

pytestmark = pytest.mark.postgres

Replica = tuple[Gateway, LoopbackAdapter]


@pytest.fixture
async def replica(
    tmp_path: Path, llm_emulator: LlmEmulator, fresh_postgres_url: str, gateways: Gateways
) -> AsyncIterator[Callable[[str], Awaitable[Replica]]]:
    """Start replica ``name`` serving the HTTP-like channel ``chat:`` (answered from
    wherever its turn runs)."""
    llm_emulator.default_reply = lambda body: f"answer to {body['messages'][-1]['content']}"
    members: list[ClusterMember] = []

    async def start(name: str) -> Replica:
        settings: Settings = emulator_settings(llm_emulator, tmp_path / name)
        settings.database = DatabaseSettings(url=fresh_postgres_url)
        settings.cluster = ClusterSettings(enabled=True, replica_id=name, heartbeat=0.05)
        member = await ClusterMember.join(settings)
        members.append(member)
        adapter = LoopbackAdapter("chat:")
        adapter.replies_anywhere = True
        gateway = await gateways.start(settings, adapter)
        gateway.router.leases = member
        gateway.handover = await Handover.start(member, gateway, 8)
        return gateway, adapter

    yield start
    for gateway in gateways.opened:
        await gateway.stop(0)
    for member in members:
        await member.close()


async def submit(adapter: LoopbackAdapter, chat: str, text: str, delivery: str | None) -> None:
    assert adapter.ctx is not None
    event = ChannelEvent(channel_id=chat, sender="alice", text=text, delivery_id=delivery)
    await adapter.ctx.submit(event)


def chats(llm_emulator: LlmEmulator) -> list[Any]:
    """The user message of each chat request the LLM got."""
    return [r.json["messages"][-1]["content"] for r in llm_emulator.requests]


async def test_a_message_delivered_twice_runs_one_turn(
    replica: Callable[[str], Awaitable[Replica]],
    llm_emulator: LlmEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    _, chat = await replica("a")
    await submit(chat, "chat:alice", "hello", "m-1")
    assert (await chat.answer("alice")).text == "answer to hello"
    await submit(chat, "chat:alice", "hello", "m-1")  # a webhook retried, say
    await submit(chat, "chat:alice", "hello again", None)  # no id: never dropped
    assert (await chat.answer("alice")).text == "answer to hello again"
    await submit(chat, "chat:bob", "same id, other chat", "m-1")  # unique in the channel
    await submit(chat, "chat:bob", "bob's", None)  # answered after it (chat order)
    assert (await chat.answer("bob")).text == "answer to bob's"
    await submit(chat, "chat:alice", "/help", "m-2")  # a command: recorded apart
    await submit(chat, "chat:alice", "/help", "m-2")
    assert (await chat.answer("alice")).text.startswith("Commands:")
    await submit(chat, "chat:alice", "last", "m-3")
    assert (await chat.answer("alice")).text == "answer to last"
    assert chats(llm_emulator) == ["hello", "hello again", "bob's", "last"]
    assert chat.texts("bob") == ["answer to bob's"]
    assert len([t for t in chat.texts("alice") if t.startswith("Commands:")]) == 1
    assert caplog.text.count("was delivered before: dropped") == 3


async def test_two_replicas_given_the_same_message_at_once_run_one_turn(
    replica: Callable[[str], Awaitable[Replica]], llm_emulator: LlmEmulator
) -> None:
    (_, a_chat), (_, b_chat) = await replica("a"), await replica("b")
    for n in range(5):
        await asyncio.gather(
            submit(a_chat, "chat:alice", f"m{n}", f"id-{n}"),
            submit(b_chat, "chat:alice", f"m{n}", f"id-{n}"),
        )
    for _ in range(1500):
        answers = a_chat.texts("alice") + b_chat.texts("alice")
        if len(answers) >= 5:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # a second turn, if any, would have been asked for by now
    assert sorted(chats(llm_emulator)) == [f"m{n}" for n in range(5)]
    answers = a_chat.texts("alice") + b_chat.texts("alice")
    assert sorted(answers) == [f"answer to m{n}" for n in range(5)]


async def test_forged_delivery_ids_are_stored_safely_and_still_deduplicated(
    replica: Callable[[str], Awaitable[Replica]], llm_emulator: LlmEmulator
) -> None:
    _, chat = await replica("a")
    forged = ["x" * 100_000, "nul\x00inside", "'; DROP TABLE cluster_inbox; --", "", "é" * 200]
    for n, delivery in enumerate(forged):
        await submit(chat, "chat:alice", f"f{n}", delivery)
        await submit(chat, "chat:alice", f"f{n} again", delivery)
    await submit(chat, "chat:alice", "end", None)  # answered after the others (chat order)
    answers = [(await chat.answer("alice")).text for _ in range(len(forged) + 1)]
    assert answers == [f"answer to f{n}" for n in range(len(forged))] + ["answer to end"]
    assert chats(llm_emulator) == [f"f{n}" for n in range(len(forged))] + ["end"]
    assert delivery_key("x" * 100_000).startswith("sha256:")
    assert delivery_key("nul\x00inside").startswith("sha256:")
    assert delivery_key("é" * 200) == "é" * 200


async def test_the_newest_delivery_of_each_chat_and_old_ones_pruned(
    replica: Callable[[str], Awaitable[Replica]], fresh_postgres_url: str
) -> None:
    gateway, chat = await replica("a")
    for chat_id, delivery in [("chat:1", "10"), ("chat:1", "11"), ("chat:2", "20")]:
        await submit(chat, chat_id, f"message {delivery}", delivery)
        await chat.answer(chat_id.removeprefix("chat:"))
    assert gateway.handover is not None
    deliveries = gateway.handover.deliveries
    assert await deliveries.newest("chat", 3600) == {"chat:1": "11", "chat:2": "20"}
    assert await deliveries.newest("other", 3600) == {}
    assert await deliveries.delivered("chat", ["10", "12", "20", "x" * 500]) == {"10", "20"}
    conn = await asyncpg.connect(
        cluster_dsn(Settings(database=DatabaseSettings(url=fresh_postgres_url)))
    )
    try:
        await conn.execute(
            "UPDATE cluster_deliveries SET stored_at = now() - make_interval(secs => $1) "
            "WHERE delivery_id = '10'",
            KEPT + 60,
        )
        assert await deliveries.newest("chat", 2 * KEPT) == {"chat:1": "11", "chat:2": "20"}
        await ClusterDeliveries(gateway.handover.pool).prune()
        assert await deliveries.delivered("chat", ["10", "11"]) == {"11"}
    finally:
        await conn.close()
