"""The client delivers pushes in ``seq`` order whatever order their streams arrive in, and
a repeated ``seq`` once: aioquic events fed to the client's real protocol object."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from openpista.models import Answer, Outbound
from openpista_mobile.protocol import HEADER, encode_frame
from openpista_mobile.quic_client import ClientProtocol


def push(seq: Any, text: str | None = None) -> bytes:
    response = Answer(channel_id="mobile:phone", text=text or f"push {seq}")
    return encode_frame({"type": "push", "seq": seq, "response": response.model_dump(mode="json")})


def client_protocol() -> Any:
    connection = QuicConnection(configuration=QuicConfiguration(is_client=True))
    return ClientProtocol(connection)


def arrive(protocol: Any, stream_id: int, data: bytes, end: bool = True) -> None:
    event = events.StreamDataReceived(data=data, end_stream=end, stream_id=stream_id)
    protocol.quic_event_received(event)


def delivered(protocol: Any) -> list[str]:
    queue: asyncio.Queue[Outbound | None] = protocol.pushes
    texts = []
    while not queue.empty():
        item = queue.get_nowait()
        assert isinstance(item, Answer)
        texts.append(item.text)
    return texts


async def test_pushes_are_delivered_in_seq_order_when_their_streams_arrive_out_of_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    protocol = client_protocol()
    arrive(protocol, 11, push(3))
    arrive(protocol, 7, push(2))
    assert delivered(protocol) == [], "push 1 (stream 3) is still on its way"
    half = push(1)
    arrive(protocol, 3, half[:10], end=False)
    assert delivered(protocol) == []
    arrive(protocol, 3, half[10:])
    assert delivered(protocol) == ["push 1", "push 2", "push 3"]

    caplog.set_level(logging.WARNING)
    arrive(protocol, 15, push(2, "a repeat"))  # a seq delivered already: not again
    outbox = push(4) + push(5)  # an outbox delivery: several pushes on one stream, in order
    arrive(protocol, 23, push(6))
    arrive(protocol, 19, outbox[: len(outbox) - 3], end=False)
    assert delivered(protocol) == ["push 4"], "the head stream's whole frames go at once"
    arrive(protocol, 19, outbox[len(outbox) - 3 :])
    assert delivered(protocol) == ["push 5", "push 6"]
    assert "ignoring push 2: push 3 came" in caplog.text


async def test_a_broken_or_reset_push_stream_does_not_hold_up_the_next_ones() -> None:
    protocol = client_protocol()
    arrive(protocol, 7, push(2))
    arrive(protocol, 11, push(3))
    protocol.quic_event_received(events.StreamReset(error_code=0, stream_id=3))
    assert delivered(protocol) == ["push 2", "push 3"]
    arrive(protocol, 19, push(5))
    arrive(protocol, 15, HEADER.pack(2**31))  # an oversized frame: the stream is unusable
    assert delivered(protocol) == ["push 5"]
    arrive(protocol, 23, encode_frame({"type": "hello"}) + push(True) + push(6))
    assert delivered(protocol) == ["push True", "push 6"]  # a seq that is no number: kept


async def test_a_closed_connection_ends_the_pushes() -> None:
    protocol = client_protocol()
    arrive(protocol, 7, push(2))
    protocol.quic_event_received(
        events.ConnectionTerminated(error_code=0x103, frame_type=None, reason_phrase="bye")
    )
    assert protocol.pushes.get_nowait() is None
    assert protocol.terminated is not None


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        ({"kind": "bogus", "text": "x"}, "Input tag 'bogus' found using 'kind'"),
        ({"text": "no kind"}, "Unable to extract tag using discriminator 'kind'"),
        ({"kind": "chunk"}, "chunk.text: Field required"),
        ({"kind": "approval", "request": {"id": "1"}}, "approval.request.tool: Field required"),
        ("not an object", "valid dictionary"),
    ],
)
async def test_a_malformed_push_is_logged_and_left_out(
    response: object, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    protocol = client_protocol()
    hostile = encode_frame({"type": "push", "seq": 1, "response": response})
    arrive(protocol, 3, hostile + push(2))
    assert delivered(protocol) == ["push 2"]
    assert "ignoring a malformed push: not an outbound message" in caplog.text
    assert problem in caplog.text
