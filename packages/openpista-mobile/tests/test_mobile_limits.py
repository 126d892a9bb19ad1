"""Hostile input on the QUIC port: deep nesting, truncated streams, and the limits that
keep connections which never authenticate from holding the daemon's memory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openpista import jsonsafe
from openpista_mobile.adapter import MobileAdapter
from openpista_mobile.client import MobileClient, MobileError
from openpista_mobile.protocol import HEADER, AppError, ErrorCode, encode_frame
from openpista_mobile.settings import MobileSettings
from openpista_testing.emulator import LlmEmulator

from .conftest import PHONE_TOKEN, Connect

Serve = Callable[..., Awaitable[MobileAdapter]]
AUTH = encode_frame({"type": "auth", "device_id": "phone", "token": PHONE_TOKEN})


def framed(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


async def refusal(client: MobileClient, payload: bytes) -> MobileError:
    """The error the server answers ``payload`` (one stream, ended) with."""
    with pytest.raises(MobileError) as refused:
        await asyncio.wait_for(_drain(client, payload), 30)
    return refused.value


async def _drain(client: MobileClient, payload: bytes) -> list[dict[str, Any]]:
    return [frame async for frame in client.exchange_raw(payload)]


async def wait_closed(client: MobileClient) -> MobileError:
    """Wait until the server closes ``client``'s connection; the error it closed with."""
    for _ in range(600):
        if client.closed:
            break
        await asyncio.sleep(0.05)
    with pytest.raises(MobileError) as closed:
        await client.check()
    return closed.value


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"type":"auth","device_id":' + b'{"a":' * 1000 + b"1" + b"}" * 1001,
    ],
)
async def test_deeply_nested_json_before_login_gets_bad_json_and_one_log_line(
    connect: Connect,
    llm_emulator: LlmEmulator,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
) -> None:
    jsonsafe.REJECTIONS.reset()  # a fresh rate-limit window
    caplog.set_level(logging.INFO)
    client = await connect()
    for _ in range(3):
        error = await refusal(client, framed(body))
        assert error.code == ErrorCode.BAD_JSON
        assert "nested too deeply" in error.message
    refused = [r for r in caplog.records if "refused a body" in r.getMessage()]
    assert len(refused) == 1
    assert "nested too deeply" in refused[0].getMessage()
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"
    llm_emulator.reply_text("still serving")
    assert (await client.answer("hi")).text == "still serving"


def test_the_default_bind_address_is_loopback() -> None:
    assert MobileSettings.from_table({}).host == "127.0.0.1"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x00\x00", "ended inside a frame"),  # a partial length prefix
        (b"\x00\x00\x00\x09{}", "ended inside a frame"),  # a partial body
        (AUTH + b"\x00", "ended inside a frame"),
        (AUTH + b"\x00\x00\x00\x40" + b'{"type":"message"', "ended inside a frame"),
        (b"", "ended before a request"),
    ],
)
async def test_a_stream_ending_mid_frame_gets_bad_frame(
    connect: Connect, llm_emulator: LlmEmulator, payload: bytes, message: str
) -> None:
    client = await connect(early_data=False)
    error = await refusal(client, payload)
    assert (error.code, message in error.message) == (ErrorCode.BAD_FRAME, True)
    llm_emulator.reply_text("fine")
    assert (await client.answer("still there?")).text == "fine"


async def test_a_connection_that_does_not_authenticate_in_time_is_closed(
    serve: Serve, tmp_path: Path
) -> None:
    mobile = await serve(auth_timeout=0.5)
    url = f"quic://127.0.0.1:{mobile.port}"
    options: dict[str, Any] = {"fingerprint": mobile.fingerprint, "early_data": False}
    async with (
        await MobileClient.connect(url, PHONE_TOKEN, "phone", **options) as idle,
        await MobileClient.connect(url, PHONE_TOKEN, "phone", **options) as phone,
    ):
        await phone.check()
        closed = await wait_closed(idle)
        assert closed.code == AppError.AUTH_TIMEOUT
        assert not phone.closed
        assert (await phone.check())["device_id"] == "phone"


async def test_unauthenticated_connections_are_capped(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    mobile = await serve(max_unauthenticated_connections=2)
    url = f"quic://127.0.0.1:{mobile.port}"
    options: dict[str, Any] = {"fingerprint": mobile.fingerprint, "early_data": False}
    clients = [await MobileClient.connect(url, PHONE_TOKEN, "phone", **options) for _ in range(3)]
    try:
        turned_away = await wait_closed(clients[2])
        assert turned_away.code == AppError.TOO_MANY_UNAUTHENTICATED
        assert "turned away" in caplog.text
        await clients[0].check()  # one authenticates: a place is free again
        clients.append(await MobileClient.connect(url, PHONE_TOKEN, "phone", **options))
        assert (await clients[3].check())["device_id"] == "phone"
        assert (await clients[1].check())["device_id"] == "phone"
    finally:
        for client in clients:
            await client.close()


async def test_unfinished_frames_of_an_unauthenticated_connection_are_bounded(
    serve: Serve, llm_emulator: LlmEmulator
) -> None:
    mobile = await serve(max_unauthenticated_bytes=4096)
    async with await MobileClient.connect(
        f"quic://127.0.0.1:{mobile.port}", fingerprint=mobile.fingerprint, early_data=False
    ) as worker:
        protocol: Any = worker._protocol
        # A stream the client resets gives its buffered bytes back ...
        stream_id, _ = protocol.open_stream()
        protocol._quic.send_stream_data(stream_id, HEADER.pack(100_000) + b"x" * 3000)
        protocol.transmit()
        await protocol.ping()
        protocol._quic.reset_stream(stream_id, 0)
        protocol.transmit()
        await protocol.ping()
        # ... so another 3000 bytes fit: that stream just ended inside its frame.
        partial = HEADER.pack(100_000) + b"x" * 3000
        assert (await refusal(worker, partial)).code == ErrorCode.BAD_FRAME
        # Together two unfinished frames exceed the limit.
        stream_id, _ = protocol.open_stream()
        protocol._quic.send_stream_data(stream_id, partial)
        protocol.transmit()
        too_much = await refusal(worker, partial)
        assert too_much.code == ErrorCode.FRAME_TOO_LARGE
        assert "before it authenticates" in too_much.message
    async with await MobileClient.connect(
        f"quic://127.0.0.1:{mobile.port}",
        PHONE_TOKEN,
        "phone",
        fingerprint=mobile.fingerprint,
        early_data=False,
    ) as phone:
        await phone.check()  # authenticated: frames up to max_frame_bytes again
        assert (await refusal(phone, HEADER.pack(100_000) + b"x" * 8000)).code == (
            ErrorCode.BAD_FRAME
        )
        llm_emulator.reply_text("ok")
        assert (await phone.answer("y" * 6000)).text == "ok"
