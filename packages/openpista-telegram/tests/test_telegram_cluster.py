"""Cluster mode: only the replica that leads ``telegram`` polls (``context.leadership``);
the leadership itself (PostgreSQL advisory locks) is tested in core's test_cluster.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from openpista.config import Settings
from openpista.plugin_context import PluginContext
from openpista_telegram.adapter import TelegramAdapter
from openpista_telegram.settings import parse_settings
from openpista_telegram.testing import TelegramEmulator, User
from openpista_testing.cluster import Election
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways
from openpista_testing.polling import eventually


async def test_only_the_leading_replica_polls_and_a_new_leader_takes_over(
    settings: Settings,
    telegram: TelegramEmulator,
    gateways: Gateways,
    llm_emulator: LlmEmulator,
    table: Any,
    alice: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="openpista_telegram")
    llm_emulator.default_reply = lambda body: "polled"
    election = Election("telegram")
    context = PluginContext(settings)
    context.leadership = election.replica("a")
    adapter = TelegramAdapter(parse_settings(table()), context=context)
    await gateways.start(settings, adapter)
    await eventually(lambda: election.candidates == {"a"})  # a candidate, waiting
    telegram.send_text(alice.id, "hello", user=alice)
    assert "getUpdates" not in telegram.requests  # another replica leads: it polls
    assert "deleteWebhook" not in telegram.requests
    election.elect("a")
    await telegram.wait_for_sent(1, chat_id=alice.id)
    assert telegram.texts(alice.id) == ["polled"]
    election.elect(None)  # lost (its PostgreSQL connection): it stops polling
    await eventually(lambda: "another replica polls now" in caplog.text)
    polls = telegram.requests.count("getUpdates")
    telegram.send_text(alice.id, "again", user=alice)
    await asyncio.sleep(0)
    assert telegram.requests.count("getUpdates") == polls
    assert telegram.pending_updates() == 1
    election.elect("a")  # leads again: the waiting message is read
    await telegram.wait_for_sent(2, chat_id=alice.id)
    assert telegram.texts(alice.id) == ["polled", "polled"]


async def test_without_a_cluster_the_channel_polls_at_once(
    settings: Settings, telegram: TelegramEmulator, gateways: Gateways, table: Any, alice: User
) -> None:
    adapter = TelegramAdapter(parse_settings(table()), context=PluginContext(settings))
    await gateways.start(settings, adapter)
    telegram.send_text(alice.id, "hello", user=alice)
    await telegram.wait_for_sent(1, chat_id=alice.id)
