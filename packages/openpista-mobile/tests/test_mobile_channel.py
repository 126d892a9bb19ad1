"""The mobile channel end to end in one process: real aioquic client and server on
loopback, the real gateway, litellm talking to the LLM emulator."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openpista.config import Settings
from openpista.models import Answer, ApprovalPrompt, Attachment, Outbound, TextChunk, ToolProgress
from openpista_mobile.adapter import MobileAdapter
from openpista_mobile.client import MobileClient, MobileError
from openpista_mobile.protocol import AppError, ErrorCode, encode_frame
from openpista_testing.emulator import LlmEmulator

PHONE_TOKEN = "phone-token-0123456789abcdef"
TABLET_TOKEN = "tablet-token-0123456789abcdef"

Connect = Callable[..., Awaitable[MobileClient]]


async def test_a_message_gets_a_streamed_answer_on_its_stream(
    connect: Connect, mobile: MobileAdapter, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("hello from the agent", chunk_size=3)
    client = await connect()
    responses = [r async for r in client.ask("hi")]
    deltas = [r.text for r in responses if isinstance(r, TextChunk)]
    assert len(deltas) > 1
    assert "".join(deltas) == "hello from the agent"
    final = responses[-1]
    assert [r.kind for r in responses] == ["chunk"] * len(deltas) + ["answer"]
    assert isinstance(final, Answer)
    assert (final.text, final.channel_id) == ("hello from the agent", "mobile:phone")
    assert final.session_id


async def test_wrong_token_or_unknown_device_closes_the_connection_without_logging_it(
    connect: Connect,
    llm_emulator: LlmEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-phone-token-xyz"
    for device, token in (("phone", wrong), ("stranger", PHONE_TOKEN)):
        intruder = await connect(device, token)
        with pytest.raises(MobileError) as refused:
            await intruder.answer("rm -rf /")
        assert refused.value.code == AppError.UNAUTHORIZED
    assert not llm_emulator.requests, "a refused device reached the agent"
    assert "refused a connection" in caplog.text
    assert wrong not in caplog.text
    assert PHONE_TOKEN not in caplog.text
    llm_emulator.reply_text("still serving")
    friend = await connect()
    assert (await friend.answer("hi")).text == "still serving"


async def test_a_stream_without_auth_is_reset_and_the_connection_survives(
    connect: Connect, llm_emulator: LlmEmulator
) -> None:
    client = await connect()
    with pytest.raises(MobileError) as refused:
        [f async for f in client.exchange([{"type": "message", "text": "hi", "request_id": "1"}])]
    assert refused.value.code == AppError.AUTH_REQUIRED
    llm_emulator.reply_text("after auth")
    assert (await client.answer("hi")).text == "after auth"
    # Once a stream authenticated the connection, later streams may skip the auth frame.
    llm_emulator.reply_text("no auth frame needed now")
    frames = [f async for f in client.exchange([{"type": "message", "text": "again"}])]
    assert frames[-1]["text"] == "no auth frame needed now"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x00\x00\x00\x05{nope", ErrorCode.BAD_JSON),
        (b"\x00\x00\x00\x02\xff\xfe", ErrorCode.BAD_JSON),
        (encode_frame({"type": "message"}) + b"", ErrorCode.BAD_FRAME),  # empty message
        (b"\x00\x00\x00\x02[]", ErrorCode.BAD_FRAME),
        (encode_frame({"type": "telepathy"}), ErrorCode.UNKNOWN_TYPE),
        (encode_frame({"type": "message", "text": 5}), ErrorCode.BAD_FRAME),
        (
            encode_frame(
                {"type": "message", "text": "x", "attachments": [{"name": "a", "path": "/etc"}]}
            ),
            ErrorCode.BAD_FRAME,
        ),
        (b"\x00\x00\x00\x09{}", ErrorCode.BAD_FRAME),  # the stream ends inside a frame
    ],
)
async def test_malformed_frames_get_an_error_frame_and_the_connection_survives(
    connect: Connect, llm_emulator: LlmEmulator, payload: bytes, code: str
) -> None:
    client = await connect()
    await client.check()
    with pytest.raises(MobileError) as refused:
        [f async for f in client.exchange_raw(payload)]
    assert refused.value.code == code
    llm_emulator.reply_text("fine")
    assert (await client.answer("still there?")).text == "fine"
    assert len(llm_emulator.requests) == 1


async def test_an_oversized_frame_is_refused_and_the_connection_survives(
    serve: Callable[..., Awaitable[MobileAdapter]], tmp_path: Path, llm_emulator: LlmEmulator
) -> None:
    adapter = await serve(max_frame_bytes=2048)
    client = await MobileClient.connect(
        f"quic://127.0.0.1:{adapter.port}",
        PHONE_TOKEN,
        "phone",
        fingerprint=adapter.fingerprint,
        tickets=tmp_path / "t",
    )
    try:
        with pytest.raises(MobileError) as refused:
            await client.answer("x" * 5000)
        assert refused.value.code == ErrorCode.FRAME_TOO_LARGE
        header_only = b"\xff\xff\xff\xff"  # claims 4 GiB: refused before any body arrives
        with pytest.raises(MobileError) as refused:
            [f async for f in client.exchange_raw(header_only)]
        assert refused.value.code == ErrorCode.FRAME_TOO_LARGE
        llm_emulator.reply_text("small is fine")
        assert (await client.answer("small")).text == "small is fine"
    finally:
        await client.close()


async def test_a_slow_tool_does_not_block_another_device(
    connect: Connect, llm_emulator: LlmEmulator, settings: Settings, tmp_path: Path
) -> None:
    settings.policy.remote = "allow"
    flag = tmp_path / "go"
    wait_for_flag = f"while [ ! -e {flag} ]; do sleep 0.05; done; echo released"
    llm_emulator.reply_tool_calls([("system_run", {"command": wait_for_flag})])
    llm_emulator.reply_text("fast answer")
    llm_emulator.reply_text("slow answer")
    phone, tablet = await connect(), await connect("tablet", TABLET_TOKEN)
    progress: list[Outbound] = []
    tool_running = asyncio.Event()

    async def slow_question() -> Answer:
        async for response in phone.ask("slow question"):
            progress.append(response)
            if isinstance(response, ToolProgress):
                tool_running.set()
        assert isinstance(progress[-1], Answer)
        return progress[-1]

    slow = asyncio.create_task(slow_question())
    await asyncio.wait_for(tool_running.wait(), 60)
    fast = await tablet.answer("fast question")
    assert fast.text == "fast answer"
    assert not slow.done()
    flag.touch()
    assert (await slow).text == "slow answer"


async def test_an_approval_is_answered_on_another_stream_of_the_same_connection(
    connect: Connect, llm_emulator: LlmEmulator, tmp_path: Path
) -> None:
    marker = tmp_path / "approved.txt"
    llm_emulator.reply_tool_calls([("system_run", {"command": f"touch {marker}"})])
    llm_emulator.reply_text("touched it")
    client = await connect()
    seen: list[Outbound] = []
    confirmations: list[Answer] = []
    async for response in client.ask("touch the file"):
        seen.append(response)
        if isinstance(response, ApprovalPrompt):
            confirmations.append(await client.answer(f"/approve {response.request.id}"))
    assert confirmations[0].text.startswith("✅ approved system.run")
    assert isinstance(seen[-1], Answer)
    assert seen[-1].text == "touched it"
    results = [r.result for r in seen if isinstance(r, ToolProgress) and r.result is not None]
    assert [result.is_error for result in results] == [False]
    assert marker.exists()


async def test_reconnecting_and_migrating_keep_the_session(
    connect: Connect, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("noted")
    llm_emulator.reply_text("it was 42")
    llm_emulator.reply_text("still here")
    first = await connect()
    first_answer = await first.answer("remember 42")
    await first.close()
    second = await connect(early_data=False)
    second_answer = await second.answer("what was the number?")
    assert second_answer.session_id == first_answer.session_id
    history = [m["content"] for m in llm_emulator.requests[1].json["messages"]]
    assert "remember 42" in history
    assert "noted" in history
    # Connection migration: the phone changes network (new UDP socket, new address and
    # connection id) in the middle of the conversation.
    await migrate(second)
    third_answer = await second.answer("still there?")
    assert (third_answer.text, third_answer.session_id) == ("still here", first_answer.session_id)


async def migrate(client: MobileClient) -> None:
    """Move the client's connection to a fresh UDP socket (what a network change does)."""
    protocol: Any = client._protocol
    old = protocol._transport
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", 0, 0, 0))
    await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
    protocol.change_connection_id()
    old.close()
    await protocol.ping()


VANISHING_PHONE = """
import asyncio, sys
from openpista_mobile.client import MobileClient

async def main(port, fingerprint, token):
    client = await MobileClient.connect(
        f"quic://127.0.0.1:{port}", token, "phone", fingerprint=fingerprint, early_data=False
    )
    async for response in client.ask("tell me a story"):
        print("streaming", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_client_that_vanishes_mid_answer_does_not_disturb_others(
    serve: Callable[..., Awaitable[MobileAdapter]],
    llm_emulator: LlmEmulator,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO)
    mobile = await serve(idle_timeout=1)
    llm_emulator.reply_text("a long answer nobody reads " * 20, chunk_size=5)
    llm_emulator.reply_text("tablet answer")
    phone = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        VANISHING_PHONE,
        str(mobile.port),
        mobile.fingerprint,
        PHONE_TOKEN,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert phone.stdout is not None
        assert await asyncio.wait_for(phone.stdout.readline(), 60) == b"streaming\n"
    finally:
        phone.kill()  # the phone is gone mid-answer: no goodbye, its socket just disappears
        await phone.wait()

    async def tablet_says(text: str) -> str:
        async with await MobileClient.connect(
            f"quic://127.0.0.1:{mobile.port}",
            TABLET_TOKEN,
            "tablet",
            fingerprint=mobile.fingerprint,
            tickets=tmp_path / "tickets",
        ) as tablet:
            return (await tablet.answer(text)).text

    assert await tablet_says("hello") == "tablet answer"
    # The dead phone's connection times out (its pending answer kept it alive until then).
    for _ in range(400):
        if "device phone disconnected" in caplog.text:
            break
        await asyncio.sleep(0.05)
    assert "device phone disconnected" in caplog.text
    llm_emulator.reply_text("still serving")
    assert await tablet_says("again") == "still serving"


async def test_attachments_are_saved_for_the_agent(
    connect: Connect, llm_emulator: LlmEmulator, home: Path
) -> None:
    llm_emulator.reply_text("got the file")
    client = await connect()
    note = Attachment(
        name="../../notes.txt", mime_type="text/plain", data=base64.b64encode(b"hi").decode()
    )
    final = await client.answer("read this", attachments=[note])
    assert final.text == "got the file"
    (saved,) = (home / "mobile" / "uploads" / "phone").iterdir()
    assert saved.read_bytes() == b"hi"
    assert saved.name.endswith("notes.txt")
    assert ".." not in saved.name
    prompt = llm_emulator.requests[0].json["messages"][-1]["content"]
    assert str(saved) in json.dumps(prompt)


@pytest.mark.parametrize(
    "hostile",
    [
        {"type": "response", "kind": "bogus", "text": "?"},
        {"type": "response", "text": "a response without its kind"},
        {"type": "response", "kind": "tool", "call": {"name": "no id"}},
    ],
)
async def test_a_response_that_is_no_outbound_kind_raises_one_clear_error(
    connect: Connect,
    mobile: MobileAdapter,
    llm_emulator: LlmEmulator,
    settings: Settings,
    tmp_path: Path,
    hostile: dict[str, Any],
) -> None:
    settings.policy.remote = "allow"
    flag = tmp_path / "go"
    wait_for_flag = f"while [ ! -e {flag} ]; do sleep 0.05; done; echo released"
    llm_emulator.reply_tool_calls([("system_run", {"command": wait_for_flag})])
    llm_emulator.reply_text("done")
    llm_emulator.reply_text("fine")
    client = await connect()
    kinds: list[str] = []

    async def ask() -> None:
        async for response in client.ask("slow question", request_id="hostile-1"):
            kinds.append(response.kind)
            if response.kind == "tool":  # the server's stream is still open: write on it
                mobile._streams[("mobile:phone", "hostile-1")].send(hostile, end=False)

    with pytest.raises(MobileError) as raised:
        await ask()
    flag.touch()
    assert kinds == ["tool"]
    assert raised.value.code == ErrorCode.BAD_FRAME
    assert raised.value.message.startswith("not an outbound message: ")
    assert "\n" not in raised.value.message
    assert (await client.answer("still usable?")).text == "fine"
