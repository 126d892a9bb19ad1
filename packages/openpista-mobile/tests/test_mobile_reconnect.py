"""The client's keep-alive: a server that stops answering one connection while it answers
new ones (what a killed and restarted daemon looks like) ends that connection; a server
that answers nothing (busy) is waited for. A request sent again after a lost connection
runs once: the server refuses a request id it has seen."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from openpista_mobile.adapter import MobileAdapter
from openpista_mobile.client import ConnectionLost, MobileClient, MobileError
from openpista_mobile.protocol import ErrorCode
from openpista_testing.emulator import LlmEmulator
from openpista_testing.polling import eventually

PHONE_TOKEN = "phone-token-0123456789abcdef"
KEEPALIVE = 0.1


async def keepalive_client(mobile: MobileAdapter, tmp_path: Path) -> MobileClient:
    client = await MobileClient.connect(
        f"quic://127.0.0.1:{mobile.port}",
        PHONE_TOKEN,
        "phone",
        fingerprint=mobile.fingerprint,
        tickets=tmp_path / "tickets",
        keepalive=KEEPALIVE,
    )
    await client.check()
    return client


def filter_datagrams(mobile: MobileAdapter, keep: Callable[[int], bool]) -> list[int]:
    """Let the server see only datagrams from client ports ``keep`` accepts; the ports
    of the others, as they come."""
    assert mobile.server is not None
    endpoint: Any = mobile.server._endpoint
    passed_on = endpoint.datagram_received
    dropped: list[int] = []

    def received(data: bytes, addr: Any) -> None:
        if keep(addr[1]):
            passed_on(data, addr)
        else:
            dropped.append(addr[1])

    endpoint.datagram_received = received
    return dropped


def port_of(client: MobileClient) -> int:
    port: int = client._protocol._transport.get_extra_info("sockname")[1]
    return port


async def test_a_connection_the_server_no_longer_answers_is_lost_and_its_request_resent(
    mobile: MobileAdapter, tmp_path: Path, llm_emulator: LlmEmulator
) -> None:
    client = await keepalive_client(mobile, tmp_path)
    old = port_of(client)
    filter_datagrams(mobile, lambda port: port != old)  # new connections are served
    waiting = asyncio.ensure_future(client.answer("are you there?", request_id="q-1"))
    with pytest.raises(ConnectionLost, match="it answers new connections"):
        await asyncio.wait_for(waiting, 60)
    assert client.closed
    await client.close()

    llm_emulator.reply_text("here")
    again = await keepalive_client(mobile, tmp_path)
    assert (await again.answer("are you there?", request_id="q-1")).text == "here"
    with pytest.raises(MobileError) as repeated:  # sent again: refused, never run twice
        await again.answer("are you there?", request_id="q-1")
    assert repeated.value.code == ErrorCode.DUPLICATE_REQUEST
    assert len(llm_emulator.requests) == 1
    await again.close()


async def test_a_server_that_answers_nothing_is_waited_for(
    mobile: MobileAdapter, tmp_path: Path, llm_emulator: LlmEmulator
) -> None:
    client = await keepalive_client(mobile, tmp_path)
    own = port_of(client)
    dropped = filter_datagrams(mobile, lambda port: False)  # busy: answers nobody
    await eventually(lambda: len(set(dropped) - {own}) >= 2, wait=60)  # two probes failed
    assert not client.closed
    assert mobile.server is not None
    endpoint: Any = mobile.server._endpoint
    del endpoint.datagram_received  # the server is back
    llm_emulator.reply_text("sorry, I was busy")
    assert (await client.answer("hello?")).text == "sorry, I was busy"
    await client.close()


async def test_a_port_nobody_listens_on_ends_the_connection_at_once(
    mobile: MobileAdapter, tmp_path: Path
) -> None:
    client = await MobileClient.connect(
        f"quic://127.0.0.1:{mobile.port}",
        PHONE_TOKEN,
        "phone",
        fingerprint=mobile.fingerprint,
        tickets=tmp_path / "tickets",
        keepalive=3600,  # no ping would notice: the refused port does
    )
    await client.check()
    assert mobile.server is not None
    transport: Any = mobile.server._transport
    transport.close()  # the socket goes, no goodbye: what kill -9 does
    await eventually(lambda: transport.get_extra_info("socket").fileno() == -1)
    with pytest.raises(ConnectionLost, match="nothing listens on udp"):
        await asyncio.wait_for(client.check(), 60)
    await client.close()
