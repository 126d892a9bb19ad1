"""The WebSocket endpoint on a real uvicorn: auth, frames, limits, heartbeat, resume."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from openpista import jsonsafe
from openpista.models import Answer, ApprovalPrompt, ApprovalRequest, Attachment, TextChunk
from openpista_web.testing import greeted
from openpista_web.testing import next_frame as frame

CLIENT = "client-0001"
TOKEN = "test-token-Zq8vN3kL0pXr"
Serve = Callable[..., Awaitable[Any]]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()


async def test_token_in_subprotocol_is_accepted_and_protocol_selected(serve_web: Serve) -> None:
    served = await serve_web()
    async with served.connect() as ws:
        assert ws.subprotocol == "openpista.v1"
        hello, history = await greeted(ws)
    assert hello["client_id"] == CLIENT
    assert hello["channel_id"] == f"web:{CLIENT}"
    assert hello["max_frame_bytes"] == served.adapter.settings.max_frame_bytes
    assert history["messages"] == []


async def test_token_in_query_is_accepted(serve_web: Serve) -> None:
    served = await serve_web()
    async with served.connect(token=None, query=f"&token={TOKEN}") as ws:
        hello, _ = await greeted(ws)
    assert hello["client_id"] == CLIENT


@pytest.mark.parametrize(
    ("token", "client", "query"),
    [
        (None, CLIENT, ""),  # missing
        ("wrong-token", CLIENT, ""),  # wrong
        (TOKEN[:-1], CLIENT, ""),  # a prefix of the right one
        (None, CLIENT, "&token=nope"),  # wrong, in the query
        (TOKEN, "short", ""),  # invalid client id
        (TOKEN, "bad/../id!", ""),
    ],
)
async def test_refused_before_upgrade(
    serve_web: Serve, token: str | None, client: str, query: str
) -> None:
    served = await serve_web()
    with pytest.raises(InvalidStatus) as refused:
        async with served.connect(client, token=token, query=query):
            pass
    assert refused.value.response.status_code == 403
    assert served.inbound.empty()


async def test_foreign_origin_is_refused_unless_listed(serve_web: Serve) -> None:
    served = await serve_web(cors_origins=["https://app.example"])
    with pytest.raises(InvalidStatus):
        async with served.connect(origin="https://evil.example"):
            pass
    async with served.connect(origin="https://app.example") as ws:
        await greeted(ws)
    async with served.connect(origin=served.http) as ws:  # the page the server itself serves
        await greeted(ws)


async def test_tokens_never_logged(serve_web: Serve, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="uvicorn.error")  # other tests' servers raise it
    served = await serve_web()
    async with served.connect(token=None, query=f"&token={TOKEN}") as ws:
        await greeted(ws)
    async with served.connect() as ws:
        await greeted(ws)
    for wrong in ("wrong-secret-1", None):
        with pytest.raises(InvalidStatus):
            async with served.connect(token=wrong, query="&token=wrong-secret-2"):
                pass
    with pytest.raises(InvalidStatus):
        async with served.connect("x", query=f"&token={TOKEN}"):
            pass
    # Everything the server side logged (the test's own client logs its requests: left out).
    logged = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("websockets.client")
    )
    assert "WebSocket" in logged  # uvicorn did log the requests...
    for secret in (TOKEN, "wrong-secret-1", "wrong-secret-2"):
        assert secret not in logged  # ...without the tokens


async def test_message_becomes_event_and_responses_stream_back(serve_web: Serve) -> None:
    served = await serve_web()
    async with served.connect() as ws:
        await greeted(ws)
        await ws.send('{"type": "message", "text": "  hello agent  "}')
        event = await served.event()
        assert (event.channel_id, event.sender, event.text) == (
            f"web:{CLIENT}",
            CLIENT,
            "hello agent",
        )
        for part in ("Hel", "lo"):
            await served.adapter.send(TextChunk(channel_id=event.channel_id, text=part))
        await served.adapter.send(Answer(channel_id=event.channel_id, text="Hello"))
        frames = [await frame(ws, "response") for _ in range(3)]
    assert [f["response"]["text"] for f in frames] == ["Hel", "lo", "Hello"]
    assert [f["response"]["kind"] for f in frames] == ["chunk", "chunk", "answer"]
    assert [f["seq"] for f in frames] == [1, 2, 3]


async def test_approval_buttons_become_approve_and_deny_commands(serve_web: Serve) -> None:
    served = await serve_web()
    async with served.connect() as ws:
        await greeted(ws)
        request = ApprovalRequest(id="a1b2", tool="system.run", arguments={"command": "ls"})
        await served.adapter.send(ApprovalPrompt(channel_id=f"web:{CLIENT}", request=request))
        shown = await frame(ws, "response")
        assert shown["response"]["kind"] == "approval"
        assert shown["response"]["request"]["id"] == "a1b2"
        await ws.send('{"type": "approval", "id": "a1b2", "approve": true}')
        assert (await served.event()).text == "/approve a1b2"
        await ws.send('{"type": "approval", "id": "a1b2", "approve": false}')
        assert (await served.event()).text == "/deny a1b2"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{not json", "malformed frame: malformed JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": "teleport"}', "unknown frame type 'teleport'"),
        ('{"type": "message", "text": 5}', "'text' must be a string"),
        ('{"type": "message", "text": "   "}', "empty"),
        ('{"type": "approval", "id": "x y", "approve": true}', "'id'"),
        ('{"type": "approval", "id": "x", "approve": "yes"}', "'approve'"),
    ],
)
async def test_bad_frames_get_an_error_and_the_connection_survives(
    serve_web: Serve, raw: str, expected: str
) -> None:
    served = await serve_web()
    async with served.connect() as ws:
        await greeted(ws)
        await ws.send(raw)
        error = await frame(ws)
        assert error["type"] == "error"
        assert expected in error["message"]
        await ws.send('{"type": "ping"}')
        assert (await frame(ws))["type"] == "pong"
        await ws.send(b'{"type": "message", "text": "binary frames work too"}')
        assert (await served.event()).text == "binary frames work too"


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 1000 + "]" * 1000,
        '{"type": "message", "text": "hi", "attachments": ' + "[" * 1000 + "]" * 1000 + "}",
        '{"a":' * 1000 + "1" + "}" * 1000,
        "[" * 100_000,  # unterminated too
    ],
)
async def test_deeply_nested_json_gets_an_error_frame_and_the_connection_stays(
    serve_web: Serve, raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    jsonsafe.REJECTIONS.reset()  # this test's line is not rate-limited away
    served = await serve_web()
    async with served.connect() as ws:
        await greeted(ws)
        with caplog.at_level(logging.WARNING, logger="openpista_web.adapter"):
            await ws.send(raw)
            error = await frame(ws)
        assert error["type"] == "error"
        assert error["message"].startswith("malformed frame:")
        await ws.send('{"type": "message", "text": "after the nesting"}')
        assert (await served.event()).text == "after the nesting"
    assert served.inbound.empty()
    [line] = [r.getMessage() for r in caplog.records if r.name == "openpista_web.adapter"]
    assert line.startswith("web channel: refused a body: malformed frame:")
    assert "\n" not in line


async def test_frame_over_the_limit_is_refused_and_the_connection_survives(
    serve_web: Serve,
) -> None:
    served = await serve_web(max_frame_bytes=4096)
    async with served.connect() as ws:
        await greeted(ws)
        await ws.send('{"type": "message", "text": "' + "x" * 5000 + '"}')
        error = await frame(ws, "error")
        assert "frame too large" in error["message"]
        await ws.send('{"type": "message", "text": "still here"}')
        assert (await served.event()).text == "still here"


async def test_huge_frame_closes_only_that_connection(serve_web: Serve) -> None:
    served = await serve_web(max_frame_bytes=4096)
    async with served.connect() as ws:
        await greeted(ws)
        await ws.send("x" * 100_000)  # past the protocol limit (4 x max_frame_bytes)
        with pytest.raises(ConnectionClosed) as closed:
            await frame(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
    async with served.connect() as ws:  # the server is fine
        await greeted(ws)


async def test_images_are_saved_and_sent_inline(serve_web: Serve, web_home: Path) -> None:
    served = await serve_web()
    async with served.connect() as ws:
        await greeted(ws)
        image = {"name": "cat photo.png", "mime_type": "image/png", "data": PNG}
        await ws.send(
            '{"type": "message", "text": "", "attachments": [' + str(image).replace("'", '"') + "]}"
        )
        event = await served.event()
    [attachment] = event.attachments
    assert attachment.mime_type == "image/png"
    assert attachment.name == "cat_photo.png"
    assert attachment.data == PNG
    assert attachment.path is not None
    saved = Path(attachment.path)
    assert saved.parent == web_home / "uploads" / CLIENT
    assert await asyncio.to_thread(saved.read_bytes) == base64.b64decode(PNG)
    assert (await asyncio.to_thread(saved.stat)).st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("attachment", "expected"),
    [
        ({"name": "a", "mime_type": "image/png", "data": "!!notbase64"}, "not valid base64"),
        ({"name": "a", "mime_type": "text/html", "data": PNG}, "only images"),
        ({"name": "a", "mime_type": "image/png", "data": "A" * 8000}, "image too large"),
        ({"name": "a", "mime_type": "image/png"}, "must be strings"),
        ("just a string", "expected an object"),
    ],
)
async def test_bad_images_are_refused(serve_web: Serve, attachment: object, expected: str) -> None:
    import json

    served = await serve_web(max_image_bytes=4096)
    async with served.connect() as ws:
        await greeted(ws)
        await ws.send(json.dumps({"type": "message", "text": "hi", "attachments": [attachment]}))
        error = await frame(ws, "error")
    assert expected in error["message"]
    assert served.inbound.empty()


async def test_protocol_pongs_alone_keep_a_client_connected(serve_web: Serve) -> None:
    """A client that never sends an app ``ping`` but answers WebSocket pings stays."""
    served = await serve_web(ping_interval=0.2, ping_timeout=0.2)
    url = f"ws://127.0.0.1:{served.adapter.port}/ws?client={CLIENT}&token={TOKEN}"
    async with connect(url, ping_interval=None, open_timeout=10) as ws:  # no pings of its own
        await greeted(ws)
        await asyncio.sleep(2.0)  # five ping intervals, far past ping_interval + ping_timeout
        await ws.send('{"type": "message", "text": "still connected"}')
        assert (await served.event()).text == "still connected"


async def test_client_that_never_answers_pings_is_closed(serve_web: Serve) -> None:
    """A raw socket that completes the handshake and then never answers: closed with 1011."""
    served = await serve_web(ping_interval=0.2, ping_timeout=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.adapter.port)
    key = base64.b64encode(b"0123456789abcdef").decode()
    writer.write(
        (
            f"GET /ws?client={CLIENT}&token={TOKEN} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{served.adapter.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101")
    received = await asyncio.wait_for(reader.read(), 10)  # until the server closes the TCP
    writer.close()
    frames = server_frames(received)
    assert 0x9 in [opcode for opcode, _ in frames]  # it was pinged...
    closes = [payload for opcode, payload in frames if opcode == 0x8]
    assert closes, frames  # ...and, never answering, closed
    assert int.from_bytes(closes[0][:2], "big") == 1011


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked frame in ``data`` (RFC 6455 section 5.2)."""
    frames, at = [], 0
    while at + 2 <= len(data):
        opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if length == 126:
            length, at = int.from_bytes(data[at : at + 2], "big"), at + 2
        elif length == 127:
            length, at = int.from_bytes(data[at : at + 8], "big"), at + 8
        frames.append((opcode, data[at : at + length]))
        at += length
    return frames


async def test_client_pings_keep_the_connection_alive(serve_web: Serve) -> None:
    served = await serve_web(ping_interval=0.3, ping_timeout=0.3)
    async with served.connect() as ws:
        await greeted(ws)
        for _ in range(6):  # 6 x 0.2 s > the 0.6 s idle timeout
            await asyncio.sleep(0.2)
            await ws.send('{"type": "ping"}')
            assert (await frame(ws))["type"] == "pong"
        await ws.send('{"type": "message", "text": "alive"}')
        assert (await served.event()).text == "alive"


async def test_reconnect_resumes_missed_frames(serve_web: Serve) -> None:
    served = await serve_web()
    channel = f"web:{CLIENT}"
    async with served.connect() as ws:
        hello, _ = await greeted(ws)
        await served.adapter.send(Answer(channel_id=channel, text="one"))
        seen = await frame(ws, "response")
    # Offline: these wait in the backlog.
    await served.adapter.send(TextChunk(channel_id=channel, text="two"))
    await served.adapter.send(Answer(channel_id=channel, text="two"))
    query = f"&since={seen['seq']}&epoch={hello['epoch']}"
    async with served.connect(query=query) as ws:
        again = await frame(ws, "hello")
        replayed = [await frame(ws) for _ in range(2)]
    assert again["seq"] == 3
    assert [(f["type"], f["response"]["text"]) for f in replayed] == [
        ("response", "two"),
        ("response", "two"),
    ]
    # From another server run (epoch), nothing is replayed: the history is sent instead.
    async with served.connect(query="&since=1&epoch=other") as ws:
        await frame(ws, "hello")
        assert (await frame(ws))["type"] == "history"


async def test_every_tab_of_a_client_gets_the_answer(serve_web: Serve) -> None:
    served = await serve_web()
    async with served.connect() as one, served.connect() as two:
        await greeted(one)
        await greeted(two)
        await served.adapter.send(Answer(channel_id=f"web:{CLIENT}", text="to both"))
        assert (await frame(one, "response"))["response"]["text"] == "to both"
        assert (await frame(two, "response"))["response"]["text"] == "to both"


async def test_image_files_from_tools_are_sent_inline(serve_web: Serve, tmp_path: Path) -> None:
    served = await serve_web()
    shot = tmp_path / "shot.png"
    shot.write_bytes(base64.b64decode(PNG))
    async with served.connect() as ws:
        await greeted(ws)
        answer = Answer(
            channel_id=f"web:{CLIENT}",
            text="here",
            attachments=[Attachment(name="shot.png", mime_type="image/png", path=str(shot))],
        )
        await served.adapter.send(answer)
        shown = await frame(ws, "response")
    assert shown["response"]["attachments"][0]["data"] == PNG


async def test_stop_closes_connections_and_frees_the_port(serve_web: Serve) -> None:
    served = await serve_web()
    port = served.adapter.port
    async with served.connect() as ws:
        await greeted(ws)
        await served.adapter.stop()
        with pytest.raises(ConnectionClosed):
            await frame(ws)
    again = await serve_web(port=port)
    async with again.connect() as ws:
        await greeted(ws)
