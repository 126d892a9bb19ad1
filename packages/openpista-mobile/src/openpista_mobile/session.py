"""One QUIC connection of the mobile channel: :class:`AgentSession`.

A session authenticates streams and turns their frames into requests. It is a plain
object fed the connection's aioquic events by a thin protocol class (built in
``server.py``), so this module imports no QUIC library. A connection that is not
authenticated (an accepted ``auth`` frame, or an accepted worker report) is held to
small limits: it is closed after ``auth_timeout`` seconds, and its unfinished frames may
hold at most ``max_unauthenticated_bytes`` together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openpista.jsonsafe import log_rejected
from openpista.models import Attachment
from openpista.worker_protocol import Ack, ReportEnvelope
from openpista.worker_service import active_reports
from openpista.workers import WorkerReport, worker_hub
from openpista_mobile.protocol import (
    MAX_REQUEST_ID,
    AppError,
    ErrorCode,
    FrameDecoder,
    FrameError,
    encode_frame,
    error_frame,
)

if TYPE_CHECKING:
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.quic.events import QuicEvent

    from openpista.worker_service import WorkerReports
    from openpista_mobile.server import QuicServer

log = logging.getLogger(__name__)


class MessageFrame(BaseModel):
    """A ``message`` frame: the ``ChannelEvent`` fields a client may set."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["message"]
    text: str = ""
    attachments: list[Attachment] = Field(default_factory=list)
    request_id: str | None = Field(default=None, min_length=1, max_length=MAX_REQUEST_ID)


class AuthFrame(BaseModel):
    """An ``auth`` frame."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["auth"]
    device_id: str = Field(min_length=1, max_length=64)
    token: str = Field(min_length=1, max_length=1024)


class WorkerFrame(BaseModel):
    """A ``worker_report`` frame: a sandbox worker's report and its per-task token."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["worker_report"]
    token: str = Field(min_length=1, max_length=1024)
    report: WorkerReport


class EnvelopeFrame(BaseModel):
    """A ``worker_envelope`` frame: a versioned report (:mod:`openpista.worker_protocol`,
    the same JSON as ``POST /api/worker-report``) and its per-task token; answered with a
    ``worker_ack`` frame holding the ACK."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["worker_envelope"]
    token: str = Field(min_length=1, max_length=1024)
    report: ReportEnvelope


@dataclass(frozen=True)
class MessageRequest:
    """An authenticated ``message`` and the stream its answer goes back on."""

    device_id: str
    frame: MessageFrame
    stream: ResponseStream
    early: bool


MessageHandler = Callable[[MessageRequest], Awaitable[None]]


class ResponseStream:
    """The sending side of one request's stream."""

    def __init__(self, session: AgentSession, stream_id: int) -> None:
        self.session = session
        self.stream_id = stream_id
        self._finished = False

    @property
    def finished(self) -> bool:
        """Whether the stream has ended (by us, or by the peer resetting it)."""
        return self._finished

    @finished.setter
    def finished(self, value: bool) -> None:
        if value and not self._finished:
            self._finished = True
            self.session.stream_finished(self.stream_id)

    @property
    def open(self) -> bool:
        """Whether frames can still be sent (the stream is not ended, the peer is there)."""
        return not self.finished and not self.session.closed

    def send(self, frame: dict[str, Any], *, end: bool = False) -> bool:
        """Send ``frame`` (and end the stream with ``end``); False if the stream is gone."""
        if not self.open:
            return False
        try:
            self.session.quic.send_stream_data(self.stream_id, encode_frame(frame), end)
        except (ValueError, AssertionError):  # reset or stopped by the peer meanwhile
            self.finished = True
            return False
        self.finished = end
        self.session.transmit()
        return True

    def finish(self, frame: dict[str, Any] | None = None) -> bool:
        """End the stream, after ``frame`` if given."""
        if frame is not None:
            return self.send(frame, end=True)
        if not self.open:
            return False
        self.session.quic.send_stream_data(self.stream_id, b"", True)
        self.finished = True
        self.session.transmit()
        return True


@dataclass
class _Stream:
    decoder: FrameDecoder
    response: ResponseStream
    requested: bool = False
    got_auth: bool = False
    client_ended: bool = False


class AgentSession:
    """One client connection: authenticates streams and turns frames into requests."""

    def __init__(self, protocol: QuicConnectionProtocol, server: QuicServer) -> None:
        self.protocol = protocol
        self.quic = protocol._quic
        self.server = server
        self.device_id: str | None = None
        self.worker_done = False
        self.closed = False
        self.refusal: tuple[AppError, str] | None = None
        self.handshake_done = False
        self._streams: dict[int, _Stream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        self._keepalive = loop.call_later(self._ping_interval, self._ping)
        self._deadline = loop.call_later(server.options.auth_timeout, self._auth_expired)

    @property
    def authenticated(self) -> bool:
        """Whether the connection proved who it is (a device, or a worker's report)."""
        return self.device_id is not None or self.worker_done

    @property
    def live(self) -> bool:
        """Whether pushes can go to this connection: authenticated as a device, handshake
        done, not closed."""
        return (
            self.device_id is not None
            and self.handshake_done
            and not self.closed
            and self.refusal is None
        )

    def transmit(self) -> None:
        self.protocol.transmit()

    # -- events ----------------------------------------------------------------------

    def handle(self, event: QuicEvent) -> None:
        """React to one aioquic event of this connection."""
        from aioquic.quic import events

        if isinstance(event, events.HandshakeCompleted):
            self._handshake_completed()
        elif isinstance(event, events.StreamDataReceived):
            self._data(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, events.StreamReset | events.StopSendingReceived):
            self._abandoned(event.stream_id, reset=isinstance(event, events.StreamReset))
        elif isinstance(event, events.ConnectionTerminated):
            self.closed = True
            self._keepalive.cancel()
            self._deadline.cancel()
            self.server.sessions.discard(self)
            if self.device_id:
                log.info("mobile: device %s disconnected", self.device_id)

    def _handshake_completed(self) -> None:
        self.handshake_done = True
        if self.refusal is not None:
            self._close(*self.refusal)
        elif self.device_id is not None:  # authenticated in 0-RTT data
            self.server.authenticated(self)

    def _abandoned(self, stream_id: int, *, reset: bool) -> None:
        """The client gave up on a request (reset its side, or stopped reading ours)."""
        state = self._streams.get(stream_id)
        if state is None:
            return
        state.decoder.clear()
        if reset:  # nothing more arrives on it: forget it once our side is done too
            state.client_ended = True
        state.response.finished = True

    def _data(self, stream_id: int, data: bytes, end: bool) -> None:
        state = self._streams.get(stream_id)
        if state is None:
            if stream_id % 4 != 0:  # only client-initiated bidirectional streams
                return
            decoder = FrameDecoder(self.server.options.max_frame_bytes)
            state = _Stream(decoder, ResponseStream(self, stream_id))
            self._streams[stream_id] = state
        if self.refusal is None and not state.response.finished:
            self._feed(state, data)
        if end:
            self._stream_ended(state)

    def _feed(self, state: _Stream, data: bytes) -> None:
        for frame in state.decoder.feed(data):
            self._frame(state, frame)
            if state.response.finished or self.closed or self.refusal is not None:
                state.decoder.clear()  # what follows the answer on this stream is ignored
                break
        stream_id = state.response.stream_id
        if state.decoder.broken and not self.closed:
            self._stop(stream_id, AppError.FRAME_TOO_LARGE)
        elif (
            not self.authenticated and self._held() > self.server.options.max_unauthenticated_bytes
        ):
            limit = self.server.options.max_unauthenticated_bytes
            refusal = FrameError(
                ErrorCode.FRAME_TOO_LARGE,
                f"before it authenticates, a connection may hold at most {limit} bytes "
                "of unfinished frames",
            )
            log_rejected(log, "mobile", refusal)
            state.decoder.clear()
            state.response.finish(refusal.frame())
            self._stop(stream_id, AppError.FRAME_TOO_LARGE)

    def _held(self) -> int:
        """Bytes of unfinished frames buffered for this connection's streams."""
        return sum(state.decoder.pending for state in self._streams.values())

    def _stream_ended(self, state: _Stream) -> None:
        """The client ended its side: answer a stream that carried no whole request."""
        state.client_ended = True
        if not state.response.finished and self.refusal is None:
            if state.decoder.pending:
                state.response.finish(
                    error_frame(ErrorCode.BAD_FRAME, "the stream ended inside a frame")
                )
            elif not state.requested and state.got_auth:
                state.response.finish(
                    {
                        "type": "auth_ok",
                        "device_id": self.device_id,
                        "channel_id": f"mobile:{self.device_id}",
                    }
                )
            elif not state.requested:
                state.response.finish(
                    error_frame(ErrorCode.BAD_FRAME, "the stream ended before a request")
                )
        if state.response.finished or not state.requested:
            self._streams.pop(state.response.stream_id, None)

    def stream_finished(self, stream_id: int) -> None:
        """Forget a stream once both sides are done with it."""
        state = self._streams.get(stream_id)
        if state is not None and state.client_ended:
            del self._streams[stream_id]

    # -- frames ----------------------------------------------------------------------

    def _frame(self, state: _Stream, frame: dict[str, Any] | FrameError) -> None:
        if isinstance(frame, FrameError):
            log_rejected(log, "mobile", frame)
            state.response.finish(frame.frame())
            return
        kind = frame["type"]
        if state.requested:
            state.response.finish(
                error_frame(ErrorCode.BAD_FRAME, "one request per stream: open a new stream")
            )
        elif kind == "auth":
            self._auth(state, frame)
        elif kind == "worker_report":
            self._worker_report(state, frame)
        elif kind == "worker_envelope":
            self._worker_envelope(state, frame)
        elif self.device_id is None:
            self._refuse_stream(state.response.stream_id)
            state.response.finished = True
        elif kind == "message":
            self._message(state, frame)
        else:
            state.response.finish(
                error_frame(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {kind[:40]!r}")
            )

    def _auth(self, state: _Stream, frame: dict[str, Any]) -> None:
        try:
            auth = AuthFrame.model_validate(frame)
        except ValidationError:
            self._unauthorized("a malformed auth frame")
            return
        if not self.server.options.tokens.check(auth.device_id, auth.token):
            self._unauthorized(f"device {auth.device_id!r}: wrong token or unknown device")
            return
        if self.device_id is None:
            self.device_id = auth.device_id
            self._deadline.cancel()
            log.info("mobile: device %s connected from %s", auth.device_id, self._peer())
            if self.handshake_done:  # else once it is (pushes wait for 1-RTT keys)
                self.server.authenticated(self)
        elif self.device_id != auth.device_id:
            state.response.finish(
                error_frame(
                    ErrorCode.BAD_FRAME,
                    f"this connection belongs to device {self.device_id!r}",
                )
            )
            return
        state.got_auth = True

    def _worker_report(self, state: _Stream, frame: dict[str, Any]) -> None:
        state.requested = True
        try:
            parsed = WorkerFrame.model_validate(frame)
        except ValidationError as exc:
            state.response.finish(error_frame(ErrorCode.BAD_FRAME, _first_error(exc)))
            return
        self._store(state, lambda reports: reports.accept_report(parsed.token, parsed.report))

    def _worker_envelope(self, state: _Stream, frame: dict[str, Any]) -> None:
        state.requested = True
        try:
            parsed = EnvelopeFrame.model_validate(frame)
        except ValidationError as exc:
            ack = Ack(result="invalid", detail=f"invalid report: {_first_error(exc)}")
            state.response.finish({"type": "worker_ack", **ack.model_dump()})
            return
        self._store(state, lambda reports: reports.accept(parsed.token, parsed.report))

    def _store(self, state: _Stream, accept: Callable[[WorkerReports], Awaitable[Ack]]) -> None:
        """Answer a worker's report with its ACK once the process's report service has
        stored it (or refused it): the one path of every transport."""
        reports = active_reports(worker_hub())
        if reports is None:
            state.response.finish(
                error_frame(ErrorCode.UNAVAILABLE, "this process stores no worker reports")
            )
            return
        task = asyncio.ensure_future(self._acknowledge(state, accept(reports)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _acknowledge(self, state: _Stream, answer: Awaitable[Ack]) -> None:
        try:
            ack = await answer
        except Exception as exc:  # the database failed: nothing was acknowledged
            log.warning("mobile: a worker report could not be stored: %s", exc)
            state.response.finish(
                error_frame(ErrorCode.UNAVAILABLE, "the report could not be stored; send it again")
            )
            return
        if ack.stored:
            self.worker_done = True
            self._deadline.cancel()
        else:
            log.info("mobile: worker report %s: %s", ack.result, ack.detail)
        state.response.finish({"type": "worker_ack", **ack.model_dump()})

    def _message(self, state: _Stream, frame: dict[str, Any]) -> None:
        state.requested = True
        try:
            message = MessageFrame.model_validate(frame)
        except ValidationError as exc:
            state.response.finish(error_frame(ErrorCode.BAD_FRAME, _first_error(exc)))
            return
        refusal = self._refusal_of(state, message)
        if refusal is not None:
            state.response.finish(refusal)
            return
        assert self.device_id is not None  # noqa: S101  an invariant for mypy, not a check
        request = MessageRequest(self.device_id, message, state.response, not self.handshake_done)
        task = asyncio.ensure_future(self._run(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refusal_of(self, state: _Stream, message: MessageFrame) -> dict[str, Any] | None:
        """The error frame that refuses ``message`` without running it, if any."""
        assert self.device_id is not None  # noqa: S101  an invariant for mypy, not a check
        if not message.text.strip() and not message.attachments:
            return error_frame(ErrorCode.BAD_FRAME, "empty message")
        if not self.handshake_done and message.request_id is None:
            return error_frame(
                ErrorCode.EARLY_DATA, "a message sent as 0-RTT early data needs a request_id"
            )
        if message.request_id and not self.server.replay.first_time(
            self.device_id, message.request_id
        ):
            return error_frame(
                ErrorCode.DUPLICATE_REQUEST,
                f"request {message.request_id!r} was already received; it is not run again",
            )
        active = sum(
            1
            for other in self._streams.values()
            if other.requested and not other.response.finished and other is not state
        )
        limit = self.server.options.max_streams
        if active >= limit:
            return error_frame(ErrorCode.BUSY, f"more than {limit} requests in flight")
        return None

    async def _run(self, request: MessageRequest) -> None:
        try:
            await self.server.handler(request)
        except Exception as exc:
            log.exception("mobile: a request of device %s failed", request.device_id)
            request.stream.finish(error_frame(ErrorCode.UNAVAILABLE, str(exc)))

    # -- keep-alive, deadline, refusals ----------------------------------------------

    @property
    def _ping_interval(self) -> float:
        return max(0.1, self.server.options.idle_timeout / 3)

    def _ping(self) -> None:
        """While a request waits for its answer (a slow tool), keep the connection from
        timing out: an idle client is dropped, a waiting one is not."""
        if self.closed:
            return
        if any(s.requested and not s.response.finished for s in self._streams.values()):
            self.quic.send_ping(0)
            self.transmit()
        self._keepalive = asyncio.get_running_loop().call_later(self._ping_interval, self._ping)

    def _auth_expired(self) -> None:
        if self.authenticated or self.closed:
            return
        timeout = self.server.options.auth_timeout
        log.info("mobile: closed a connection from %s: no auth within %gs", self._peer(), timeout)
        self._close(AppError.AUTH_TIMEOUT, "authentication timeout")

    def _refuse_stream(self, stream_id: int) -> None:
        self.quic.reset_stream(stream_id, AppError.AUTH_REQUIRED)
        self._stop(stream_id, AppError.AUTH_REQUIRED)

    def _stop(self, stream_id: int, code: int) -> None:
        try:
            self.quic.stop_stream(stream_id, code)
        except ValueError:
            return
        self.transmit()

    def _unauthorized(self, why: str) -> None:
        log.warning("mobile: refused a connection from %s: %s", self._peer(), why)
        self.refuse(AppError.UNAUTHORIZED, "unauthorized")

    def refuse(self, code: AppError, reason: str) -> None:
        """Close the connection with ``code``, once its handshake is complete: before it
        (0-RTT), QUIC turns an application close into a bare transport error and the
        client could not tell why. Nothing it sends meanwhile is read."""
        self.refusal = (code, reason)
        for state in self._streams.values():
            state.decoder.clear()
        if self.handshake_done:
            self._close(code, reason)

    def _close(self, code: AppError, reason: str) -> None:
        self.protocol.close(error_code=code, reason_phrase=reason)
        self.closed = True

    def push(self, frames: list[dict[str, Any]]) -> bool:
        """Send ``frames`` in order on a new server-initiated unidirectional stream."""
        if not self.live:
            return False
        stream_id = self.quic.get_next_available_stream_id(is_unidirectional=True)
        data = b"".join(encode_frame(frame) for frame in frames)
        try:
            self.quic.send_stream_data(stream_id, data, end_stream=True)
        except ValueError:
            return False
        self.transmit()
        return True

    def _peer(self) -> str:
        address = self.quic._network_paths[0].addr if self.quic._network_paths else None
        return f"{address[0]}:{address[1]}" if address else "?"

    def shutdown(self) -> None:
        self._keepalive.cancel()
        self._deadline.cancel()
        for task in self._tasks:
            task.cancel()
        if not self.closed:
            self._close(AppError.SHUTTING_DOWN, "shutting down")


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
