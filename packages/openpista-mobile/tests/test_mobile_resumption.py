"""0-RTT session resumption and replay safety."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from openpista.config import Settings
from openpista_mobile.adapter import MobileAdapter
from openpista_mobile.client import MobileClient, MobileError
from openpista_mobile.protocol import ErrorCode
from openpista_testing.emulator import LlmEmulator

Connect = Callable[..., Awaitable[MobileClient]]


async def test_a_reconnecting_client_sends_its_first_request_as_0rtt(
    connect: Connect, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    llm_emulator.reply_text("first")
    llm_emulator.reply_text("second")
    first = await connect()
    assert not first.resumed_with_ticket
    assert (await first.answer("one")).text == "first"
    await first.close()
    assert list((tmp_path / "tickets").glob("*.json")), "no session ticket was kept"

    second = await connect()
    assert second.resumed_with_ticket
    assert (await second.answer("two")).text == "second"
    assert await second.handshake() == (True, True)
    assert second.early_data_accepted is True


async def test_a_ticket_works_once(
    connect: Connect, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    llm_emulator.reply_text("a")
    llm_emulator.reply_text("b")
    llm_emulator.reply_text("c")
    first = await connect()
    await first.answer("one")
    await first.close()
    tickets = tmp_path / "tickets"
    (stored,) = tickets.glob("*.json")
    shutil.copy(stored, tmp_path / "copy.json")
    second = await connect()
    assert (await second.answer("two")).text == "b"
    await second.close()
    for leftover in tickets.glob("*.json"):
        leftover.unlink()
    shutil.copy(tmp_path / "copy.json", stored)
    replay = await connect()
    assert replay.resumed_with_ticket
    answer = await asyncio.wait_for(replay.answer("three"), 10)
    assert answer.text == "c"
    assert await replay.handshake() == (False, False)


async def test_a_replayed_request_never_runs_its_tool_twice(
    connect: Connect,
    llm_emulator: LlmEmulator,
    settings: Settings,
    mobile: MobileAdapter,
    tmp_path: Path,
) -> None:
    settings.policy.remote = "allow"
    marks = tmp_path / "ran.txt"
    llm_emulator.reply_tool_calls([("system_run", {"command": f"echo ran >> {marks}"})])
    llm_emulator.reply_text("done once")
    warm = await connect()
    await warm.check()
    await warm.close()  # leaves a ticket: the next request goes as 0-RTT early data

    client = await connect()
    assert client.resumed_with_ticket
    final = await client.answer("run it", request_id="req-0001")
    assert final.text == "done once"
    assert client.early_data_accepted is True
    await client.close()

    again = await connect()  # e.g. a retry after a lost answer, or a replayed flight
    with pytest.raises(MobileError) as refused:
        await again.answer("run it", request_id="req-0001")
    assert refused.value.code == ErrorCode.DUPLICATE_REQUEST
    assert marks.read_text() == "ran\n"
    assert len(llm_emulator.requests) == 2
