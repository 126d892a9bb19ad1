"""The client's aioquic protocol: one QUIC connection's streams, pushes and end.

:class:`~openpista_mobile.client.MobileClient` imports this module on connecting, so that
aioquic is loaded only by code that talks QUIC.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.packet import QuicErrorCode
from cryptography.hazmat.primitives.serialization import Encoding

from openpista.models import Outbound
from openpista_mobile.certs import fingerprint_of
from openpista_mobile.errors import (
    CertificateError,
    ConnectionLost,
    MobileError,
    Unreachable,
    connection_error,
    stream_error,
)
from openpista_mobile.protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    FrameDecoder,
    FrameError,
    read_outbound,
)

log = logging.getLogger(__name__)

PIN_MISMATCH = 0x1FF  # client closes: the server's certificate is not the pinned one
MAX_UNREAD_PUSHES = 1000  # pushes kept for pushed(); beyond it the oldest are dropped
FIRST_PUSH_STREAM = 3  # the server's unidirectional streams are 3, 7, 11, ...
END = None  # ends a stream's queue and the push queue


@dataclass
class _PushStream:
    """One server push stream as it arrives: its decoder and the pushes not yet delivered."""

    decoder: FrameDecoder
    pushes: list[tuple[int | None, Outbound]] = field(default_factory=list)
    done: bool = False


class ClientProtocol(QuicConnectionProtocol):
    """A client connection: every request stream's frames go to its queue (then
    :data:`END`, or the :class:`MobileError` that ended it); pushes go to :attr:`pushes`
    in ``seq`` order; :attr:`terminated` is why the connection ended."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pin: str | None = None
        self.address = ""  # host:port, for error messages
        self.max_frame_bytes = DEFAULT_MAX_FRAME_BYTES
        self.streams: dict[int, tuple[FrameDecoder, asyncio.Queue[Any]]] = {}
        self.handshake: asyncio.Future[tuple[bool, bool]] = asyncio.Future()
        # A failed handshake is raised by connect() or handshake(); never "unretrieved".
        self.handshake.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.terminated: MobileError | None = None
        self.pushes: asyncio.Queue[Outbound | None] = asyncio.Queue()
        self.push_streams: dict[int, _PushStream] = {}
        self._next_push_stream = FIRST_PUSH_STREAM
        self._last_seq = 0
        self.heard = False  # any packet from the server yet
        self.heard_at = self._loop.time()
        self._keepalive: asyncio.TimerHandle | None = None
        self._pushes_ended = False

    # -- the socket ---------------------------------------------------------------------

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        self.heard, self.heard_at = True, self._loop.time()
        super().datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # The socket is connected, so an ICMP error about the server lands here.
        if isinstance(exc, ConnectionRefusedError):
            why = f"nothing listens on udp {self.address}"
        else:
            why = f"cannot reach udp {self.address}: {exc}"
        self.lost(Unreachable("unreachable", why))

    @property
    def silence(self) -> float:
        """Seconds since the last packet from the server (or since the start)."""
        return float(self._loop.time() - self.heard_at)

    def keep_alive(self, interval: float) -> None:
        """Ping the server every ``interval`` seconds from now on, so that its silence
        means something (and the connection does not idle out). The first ping waits an
        interval: a 0-RTT request sent meanwhile still rides in the first flight."""
        self._keepalive = self._loop.call_later(interval, self._ping, interval)

    def _ping(self, interval: float) -> None:
        if self.terminated is not None:
            return
        self._quic.send_ping(0)
        self.transmit()
        self._keepalive = self._loop.call_later(interval, self._ping, interval)

    # -- the end ------------------------------------------------------------------------

    def lost(self, error: MobileError) -> None:
        """End the connection with ``error``: every waiting request raises it, pushes
        end; the server is told (if it is still there) so it pushes what remains."""
        if self.terminated is None:
            self.terminated = error
            self.close(error_code=QuicErrorCode.NO_ERROR, reason_phrase=error.message)
        self._ended(self.terminated)

    def _ended(self, error: MobileError) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        if not self.handshake.done():
            self.handshake.set_exception(error)
        for _, queue in self.streams.values():
            queue.put_nowait(error)
        self.streams.clear()
        self.push_streams.clear()
        if not self._pushes_ended:
            self._pushes_ended = True
            self.pushes.put_nowait(END)

    def _termination_error(self, event: events.ConnectionTerminated) -> MobileError:
        local_tls_failure = (
            event.frame_type is not None
            and QuicErrorCode.CRYPTO_ERROR <= event.error_code <= 0x1FF
            and not self.handshake.done()
        )
        certificate = self._quic.tls._peer_certificate if local_tls_failure else None
        if certificate is not None:
            seen = fingerprint_of(certificate.public_bytes(Encoding.DER))
            reason = event.reason_phrase or "verification failed"
            return CertificateError(
                f"the server's certificate is not trusted ({reason})", seen, pinned=False
            )
        error = connection_error(event.error_code, event.reason_phrase)
        if isinstance(error, ConnectionLost) and not self.heard:
            return Unreachable(error.code, f"no answer from {self.address}")
        return error

    # -- streams ------------------------------------------------------------------------

    def open_stream(self) -> tuple[int, asyncio.Queue[Any]]:
        """A new request stream and the queue its server frames arrive in."""
        if self.terminated is not None:
            raise self.terminated
        stream_id = self._quic.get_next_available_stream_id()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self.streams[stream_id] = (FrameDecoder(self.max_frame_bytes), queue)
        return stream_id, queue

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.HandshakeCompleted):
            self._handshake_completed(event)
        elif isinstance(event, events.StreamDataReceived):
            self._stream_data(event)
        elif isinstance(event, events.StreamReset):
            self._stream_reset(event)
        elif isinstance(event, events.ConnectionTerminated):
            if self.terminated is None:
                self.terminated = self._termination_error(event)
            self._ended(self.terminated)

    def _stream_data(self, event: events.StreamDataReceived) -> None:
        entry = self.streams.get(event.stream_id)
        if entry is None:
            if event.stream_id % 4 == 3:  # server-initiated unidirectional: a push
                self.push_data(event.stream_id, event.data, event.end_stream)
            return
        decoder, queue = entry
        for frame in decoder.feed(event.data):
            if isinstance(frame, FrameError):
                queue.put_nowait(MobileError(frame.code, frame.message))
            else:
                queue.put_nowait(frame)
        if event.end_stream:
            queue.put_nowait(END)
            del self.streams[event.stream_id]

    def _stream_reset(self, event: events.StreamReset) -> None:
        entry = self.streams.pop(event.stream_id, None)
        if entry is not None:
            entry[1].put_nowait(stream_error(event.error_code))
        elif event.stream_id % 4 == 3:
            self.push_data(event.stream_id, b"", True)

    def _handshake_completed(self, event: events.HandshakeCompleted) -> None:
        if self.pin is not None and not event.session_resumed:
            # A resumed session proves the server holds the ticket of a connection whose
            # certificate was checked; a full handshake shows the certificate.
            certificate = self._quic.tls._peer_certificate
            seen = fingerprint_of(certificate.public_bytes(Encoding.DER) if certificate else b"")
            if seen != self.pin:
                self.terminated = CertificateError(
                    f"the server's certificate fingerprint is {seen}, not the pinned one",
                    seen,
                    pinned=True,
                )
                self.close(error_code=PIN_MISMATCH, reason_phrase="certificate mismatch")
                return
        if not self.handshake.done():
            self.handshake.set_result((event.early_data_accepted, event.session_resumed))

    # -- pushes -------------------------------------------------------------------------

    def push_data(self, stream_id: int, data: bytes, end: bool) -> None:
        """Take a push stream's bytes; deliver pushes in the order the server opened
        their streams (which is ``seq`` order), whatever order the streams arrive in."""
        if stream_id < self._next_push_stream:
            return
        entry = self.push_streams.get(stream_id)
        if entry is None:
            entry = self.push_streams[stream_id] = _PushStream(FrameDecoder(self.max_frame_bytes))
        for frame in entry.decoder.feed(data):
            pushed = _pushed(frame)
            if pushed is not None:
                entry.pushes.append(pushed)
        entry.done = entry.done or end or entry.decoder.broken
        while (head := self.push_streams.get(self._next_push_stream)) is not None:
            for seq, message in head.pushes:
                self._deliver(seq, message)
            head.pushes.clear()
            if not head.done:
                break
            del self.push_streams[self._next_push_stream]
            self._next_push_stream += 4

    def _deliver(self, seq: int | None, message: Outbound) -> None:
        if seq is not None:
            if seq <= self._last_seq:
                log.warning("mobile: ignoring push %d: push %d came", seq, self._last_seq)
                return
            self._last_seq = seq
        if self.pushes.qsize() >= MAX_UNREAD_PUSHES:
            dropped = self.pushes.get_nowait()
            log.warning("mobile: nobody reads pushes; dropped %r", dropped)
        self.pushes.put_nowait(message)


def _pushed(frame: dict[str, Any] | FrameError) -> tuple[int | None, Outbound] | None:
    """The ``seq`` and message of a ``push`` frame (None, logged, for anything else)."""
    if isinstance(frame, FrameError) or frame.get("type") != "push":
        log.warning("mobile: ignoring a server stream that is not a push: %r", frame)
        return None
    try:
        message = read_outbound(frame.get("response"))
    except FrameError as exc:
        log.warning("mobile: ignoring a malformed push: %s", exc.message)
        return None
    seq = frame.get("seq")
    return (seq if isinstance(seq, int) and not isinstance(seq, bool) else None), message
