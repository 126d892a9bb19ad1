"""The daemon's control channel on a real gateway, driven by a socket client in-process."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from openpista.control.protocol import HEADER, Frame, body_length, decode, encode
from openpista.control.server import ControlChannel, bind_control
from openpista.gateway.daemon import PidFile
from openpista.models import Outbound
from openpista_testing.adapters import LoopbackAdapter, QueueContext
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator
from openpista_testing.gateways import Gateways


class RefusingAdapter(LoopbackAdapter):
    """A channel whose service turns every message down (an unknown chat)."""

    async def send(self, message: Outbound) -> None:
        raise ValueError("Bad Request: chat not found")


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, frame: Frame) -> None:
        self.writer.write(encode(frame))
        await self.writer.drain()

    async def receive(self) -> Frame:
        header = await asyncio.wait_for(self.reader.readexactly(HEADER.size), 30)
        return decode(await self.reader.readexactly(body_length(header)))

    async def until_answer(self) -> list[Frame]:
        frames = [await self.receive()]
        while frames[-1].get("message", {}).get("kind") != "answer":
            frames.append(await self.receive())
        return frames


@pytest.fixture
def loop_adapter() -> LoopbackAdapter:
    return LoopbackAdapter()


@pytest.fixture
async def control(
    tmp_path: Path, llm_emulator: LlmEmulator, gateways: Gateways, loop_adapter: LoopbackAdapter
) -> ControlChannel:
    sock = bind_control(tmp_path / "state" / "control.sock")
    channel = ControlChannel(sock, PidFile(tmp_path / "openpista.pid"))
    settings = emulator_settings(llm_emulator, tmp_path)
    await gateways.start(settings, loop_adapter, RefusingAdapter("refuse:"), channel)
    return channel


@pytest.fixture
async def client(control: ControlChannel) -> AsyncIterator[Client]:
    reader, writer = await asyncio.open_unix_connection(str(control.path))
    yield Client(reader, writer)
    writer.close()


async def test_a_turn_streams_back_as_a_local_chat(
    client: Client, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("streamed answer")
    await client.send({"type": "run", "text": "hi", "session": "s1"})
    frames = await client.until_answer()
    kinds = [f["message"]["kind"] for f in frames]
    assert kinds[-1] == "answer"
    assert "chunk" in kinds
    answer: dict[str, Any] = frames[-1]["message"]
    assert (answer["text"], answer["session_id"]) == ("streamed answer", "s1")
    assert answer["channel_id"].startswith("local:")


async def test_one_turn_at_a_time_per_connection(client: Client, llm_emulator: LlmEmulator) -> None:
    llm_emulator.reply_tool_calls([("system_run", {"command": "sleep 5"})])
    await client.send({"type": "run", "text": "slow", "session": "s2"})
    await client.send({"type": "run", "text": "and another", "session": "s2"})
    error = await client.receive()
    while error["type"] != "error":  # the first turn's progress may come first
        error = await client.receive()
    assert error["message"] == "❌ run: a turn is already running on this connection"
    await client.send({"type": "cancel"})
    while (await client.receive())["type"] != "cancelled":
        pass


async def test_send_reaches_a_served_chat_and_reports_a_refusal(
    client: Client, loop_adapter: LoopbackAdapter, llm_emulator: LlmEmulator
) -> None:
    await client.send({"type": "send", "channel": "loop:ada", "text": "backup done"})
    assert await client.receive() == {
        "type": "result",
        "data": {"channel": "loop:ada", "served_by": "loop"},
    }
    assert loop_adapter.texts("ada") == ["backup done"]
    await client.send({"type": "send", "channel": "refuse:1", "text": "hello"})
    refused = await client.receive()
    assert refused["message"] == (
        "❌ send: refuse could not deliver it: ValueError: Bad Request: chat not found"
    )
    await client.send({"type": "send", "channel": "nowhere:1", "text": "hello"})
    unserved = await client.receive()
    assert "(serving: loop, refuse)" in unserved["message"]
    assert not llm_emulator.requests


async def test_stop_removes_only_its_own_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "control.sock"
    channel = ControlChannel(bind_control(path), PidFile(tmp_path / "pid"))
    path.unlink()  # a later daemon took the path over
    later = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    later.bind(str(path))
    try:
        await channel.stop()
        assert path.exists()
    finally:
        later.close()
    mine = ControlChannel(bind_control(path), PidFile(tmp_path / "pid"))
    await mine.stop()
    assert not path.exists()


async def test_the_channel_serves_only_a_gateway(tmp_path: Path) -> None:
    channel = ControlChannel(bind_control(tmp_path / "s" / "control.sock"), PidFile(tmp_path / "p"))
    with pytest.raises(TypeError, match="daemon's gateway"):
        await channel.start(QueueContext())
    await channel.stop()
