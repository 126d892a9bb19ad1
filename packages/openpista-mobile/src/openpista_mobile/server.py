"""The QUIC endpoint: :class:`QuicServer` accepts connections, each an :class:`AgentSession`.

Every bidirectional stream carries one request: an optional ``auth`` frame, then one
``message`` (or a ``worker_report``); the answer comes back on the same stream, which the
server ends (FIN) after the final frame. Answers nobody waits for on a stream are pushed:
``push`` frames on a server-initiated unidirectional stream (:meth:`QuicServer.push`).
The wire protocol is in docs/channels/mobile.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openpista.models import Attachment
from openpista.workers import WorkerAuthError, WorkerReport, worker_hub
from openpista_mobile.protocol import (
    ALPN,
    MAX_REQUEST_ID,
    AppError,
    ErrorCode,
    FrameDecoder,
    FrameError,
    encode_frame,
    error_frame,
)
from openpista_mobile.settings import TokenBook

if TYPE_CHECKING:
    from aioquic.asyncio.server import QuicServer as AioQuicServer
    from aioquic.quic.connection import QuicConnection
    from aioquic.quic.events import QuicEvent
    from aioquic.tls import SessionTicket

log = logging.getLogger(__name__)

MAX_TICKETS = 10_000


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


@dataclass(frozen=True)
class MessageRequest:
    """An authenticated ``message`` and the stream its answer goes back on."""

    device_id: str
    frame: MessageFrame
    stream: ResponseStream
    early: bool


MessageHandler = Callable[[MessageRequest], Awaitable[None]]
AuthHandler = Callable[[Any], None]


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


class TicketStore:
    """Session tickets for 0-RTT, each usable once (RFC 8446 section 8.1), kept in memory.

    Single use means a captured 0-RTT flight replayed to the server finds its ticket gone
    and its early data is rejected; tickets die with the process.
    """

    def __init__(self, limit: int = MAX_TICKETS) -> None:
        self.limit = limit
        self._tickets: OrderedDict[bytes, SessionTicket] = OrderedDict()

    def add(self, ticket: SessionTicket) -> None:
        self._tickets[ticket.ticket] = ticket
        while len(self._tickets) > self.limit:
            self._tickets.popitem(last=False)

    def pop(self, label: bytes) -> SessionTicket | None:
        return self._tickets.pop(label, None)


class ReplayGuard:
    """The request ids each device sent recently (``window`` per device): a request id seen
    again is a replay or a retry, never a new turn."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._seen: dict[str, OrderedDict[str, None]] = {}

    def first_time(self, device: str, request_id: str) -> bool:
        """Record ``request_id``; False if ``device`` already sent it."""
        seen = self._seen.setdefault(device, OrderedDict())
        if request_id in seen:
            return False
        seen[request_id] = None
        if len(seen) > self.window:
            seen.popitem(last=False)
        return True


@dataclass
class _Stream:
    decoder: FrameDecoder
    response: ResponseStream
    requested: bool = False
    got_auth: bool = False
    client_ended: bool = False


@dataclass
class ServerOptions:
    """What :class:`QuicServer` needs besides its handler."""

    host: str
    port: int
    cert: str
    key: str
    tokens: TokenBook
    max_frame_bytes: int
    max_streams: int = 100
    idle_timeout: float = 60.0
    replay_window: int = 4096
    tickets: TicketStore = field(default_factory=TicketStore)


def _make_session_class() -> type[Any]:
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.quic import events

    class _AgentSession(QuicConnectionProtocol):
        """One client connection: authenticates streams and turns frames into requests."""

        def __init__(self, quic: QuicConnection, server: QuicServer, **kwargs: Any) -> None:
            super().__init__(quic, **kwargs)
            self.server = server
            self.quic = quic
            self.device_id: str | None = None
            self.closed = False
            self.refused = False
            self.handshake_done = False
            self._streams: dict[int, _Stream] = {}
            self._tasks: set[asyncio.Task[None]] = set()
            self._keepalive = self._loop.call_later(self._ping_interval, self._ping)

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
            self._keepalive = self._loop.call_later(self._ping_interval, self._ping)

        # -- events ------------------------------------------------------------------

        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, events.HandshakeCompleted):
                self.handshake_done = True
                if self.refused:
                    self._close_unauthorized()
                elif self.device_id is not None:  # authenticated in 0-RTT data
                    self.server.authenticated(self)
            elif isinstance(event, events.StreamDataReceived):
                self._data(event.stream_id, event.data, event.end_stream)
            elif isinstance(event, events.StreamReset | events.StopSendingReceived):
                state = self._streams.get(event.stream_id)
                if state is not None:
                    state.response.finished = True  # the client gave up on this request
            elif isinstance(event, events.ConnectionTerminated):
                self.closed = True
                self._keepalive.cancel()
                self.server.sessions.discard(self)
                if self.device_id:
                    log.info("mobile: device %s disconnected", self.device_id)

        def _data(self, stream_id: int, data: bytes, end: bool) -> None:
            state = self._streams.get(stream_id)
            if state is None:
                if stream_id % 4 != 0:  # only client-initiated bidirectional streams
                    return
                decoder = FrameDecoder(self.server.options.max_frame_bytes)
                state = _Stream(decoder, ResponseStream(self, stream_id))
                self._streams[stream_id] = state
            if self.refused:
                return
            for frame in state.decoder.feed(data):
                if state.response.finished or self.closed or self.refused:
                    break
                self._frame(state, frame)
            if state.decoder.broken and not self.closed:
                self._stop(stream_id, AppError.FRAME_TOO_LARGE)
            if end:
                if not state.requested and state.got_auth and not state.response.finished:
                    state.response.finish(
                        {
                            "type": "auth_ok",
                            "device_id": self.device_id,
                            "channel_id": f"mobile:{self.device_id}",
                        }
                    )
                elif state.decoder.pending and not state.response.finished:
                    state.response.finish(
                        error_frame(ErrorCode.BAD_FRAME, "the stream ended inside a frame")
                    )
                state.client_ended = True
                if state.response.finished or not state.requested:
                    self._streams.pop(stream_id, None)

        def stream_finished(self, stream_id: int) -> None:
            """Forget a stream once both sides are done with it."""
            state = self._streams.get(stream_id)
            if state is not None and state.client_ended:
                del self._streams[stream_id]

        def _frame(self, state: _Stream, frame: dict[str, Any] | FrameError) -> None:
            if isinstance(frame, FrameError):
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
            elif self.device_id is None:
                self._refuse_stream(state.response.stream_id)
                state.response.finished = True
            elif kind == "message":
                self._message(state, frame)
            else:
                state.response.finish(
                    error_frame(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {kind[:40]!r}")
                )

        # -- frames ------------------------------------------------------------------

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
                report = WorkerFrame.model_validate(frame)
            except ValidationError as exc:
                state.response.finish(error_frame(ErrorCode.BAD_FRAME, _first_error(exc)))
                return
            try:
                grant = worker_hub().submit(report.token, report.report)
            except WorkerAuthError as exc:
                log.warning(
                    "mobile: refused a worker report for task %s: %s",
                    report.report.task_id[:40],
                    exc,
                )
                state.response.finish(error_frame(ErrorCode.WORKER_REFUSED, str(exc)))
                return
            log.info("mobile: worker report for task %s accepted", grant.task_id)
            state.response.finish({"type": "worker_ack", "task_id": grant.task_id})

        def _message(self, state: _Stream, frame: dict[str, Any]) -> None:
            state.requested = True
            try:
                message = MessageFrame.model_validate(frame)
            except ValidationError as exc:
                state.response.finish(error_frame(ErrorCode.BAD_FRAME, _first_error(exc)))
                return
            if not message.text.strip() and not message.attachments:
                state.response.finish(error_frame(ErrorCode.BAD_FRAME, "empty message"))
                return
            early = not self.handshake_done
            assert self.device_id is not None
            if early and message.request_id is None:
                state.response.finish(
                    error_frame(
                        ErrorCode.EARLY_DATA,
                        "a message sent as 0-RTT early data needs a request_id",
                    )
                )
                return
            replay = self.server.replay
            if message.request_id and not replay.first_time(self.device_id, message.request_id):
                state.response.finish(
                    error_frame(
                        ErrorCode.DUPLICATE_REQUEST,
                        f"request {message.request_id!r} was already received; it is not run again",
                    )
                )
                return
            active = sum(
                1
                for other in self._streams.values()
                if other.requested and not other.response.finished and other is not state
            )
            if active >= self.server.options.max_streams:
                state.response.finish(
                    error_frame(
                        ErrorCode.BUSY,
                        f"more than {self.server.options.max_streams} requests in flight",
                    )
                )
                return
            request = MessageRequest(self.device_id, message, state.response, early)
            task = asyncio.ensure_future(self._run(request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        async def _run(self, request: MessageRequest) -> None:
            try:
                await self.server.handler(request)
            except Exception as exc:
                log.exception("mobile: a request of device %s failed", request.device_id)
                request.stream.finish(error_frame(ErrorCode.UNAVAILABLE, str(exc)))

        # -- refusals ----------------------------------------------------------------

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
            self.refused = True
            if self.handshake_done:
                self._close_unauthorized()
            # else after the handshake: before it (0-RTT), QUIC turns an application close
            # into a bare transport error and the client could not tell why.

        def _close_unauthorized(self) -> None:
            self.close(error_code=AppError.UNAUTHORIZED, reason_phrase="unauthorized")
            self.closed = True

        @property
        def live(self) -> bool:
            """Whether pushes can go to this connection: authenticated, handshake done,
            not closed."""
            return (
                self.device_id is not None
                and self.handshake_done
                and not self.closed
                and not self.refused
            )

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
            for task in self._tasks:
                task.cancel()
            if not self.closed:
                self.close(error_code=AppError.SHUTTING_DOWN, reason_phrase="shutting down")
                self.closed = True

    return _AgentSession


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


AgentSession = Any  # the class is built on first use, so that aioquic is imported lazily
_session_class: type[Any] | None = None


def session_class() -> type[Any]:
    """The :class:`AgentSession` protocol class (one instance per connection)."""
    global _session_class
    if _session_class is None:
        _session_class = _make_session_class()
    return _session_class


class QuicServer:
    """The QUIC endpoint: serves connections until :meth:`close`.

    ``handler`` is awaited for every authenticated ``message``; it owns the request's
    :class:`ResponseStream` from then on and must end it.
    """

    def __init__(
        self,
        options: ServerOptions,
        handler: MessageHandler,
        on_authenticated: Callable[[str], None] | None = None,
    ) -> None:
        self.options = options
        self.handler = handler
        self.on_authenticated = on_authenticated
        self.replay = ReplayGuard(options.replay_window)
        self.sessions: set[Any] = set()
        self._endpoint: AioQuicServer | None = None
        self._transport: asyncio.DatagramTransport | None = None

    def authenticated(self, session: Any) -> None:
        """A connection became live for pushes as ``session.device_id``."""
        if self.on_authenticated is not None:
            self.on_authenticated(session.device_id)

    def push(self, device_id: str, frames: list[dict[str, Any]]) -> int:
        """Push ``frames`` (in order, on one stream per connection) to every live
        connection of ``device_id``; how many connections took them."""
        return sum(
            1
            for session in list(self.sessions)
            if session.device_id == device_id and session.push(frames)
        )

    @property
    def port(self) -> int:
        """The UDP port the server is bound to (useful with ``port = 0``)."""
        if self._transport is None:
            raise RuntimeError("the server is not running")
        return int(self._transport.get_extra_info("sockname")[1])

    async def start(self) -> None:
        """Bind the UDP socket and start accepting connections."""
        from aioquic.asyncio.server import QuicServer as AioQuicServer
        from aioquic.quic.configuration import QuicConfiguration

        configuration = QuicConfiguration(
            is_client=False,
            alpn_protocols=[ALPN],
            idle_timeout=self.options.idle_timeout,
        )
        configuration.load_cert_chain(self.options.cert, self.options.key)
        cls = session_class()

        def create(connection: QuicConnection, **kwargs: Any) -> Any:
            session = cls(connection, self, **kwargs)
            self.sessions.add(session)
            return session

        loop = asyncio.get_running_loop()
        transport, endpoint = await loop.create_datagram_endpoint(
            lambda: AioQuicServer(
                configuration=configuration,
                create_protocol=create,
                session_ticket_fetcher=self.options.tickets.pop,
                session_ticket_handler=self.options.tickets.add,
            ),
            local_addr=(self.options.host, self.options.port),
        )
        self._transport, self._endpoint = transport, endpoint

    async def close(self) -> None:
        """Close every connection (code SHUTTING_DOWN) and the socket."""
        for session in list(self.sessions):
            session.shutdown()
        self.sessions.clear()
        if self._endpoint is not None:
            self._endpoint.close()
        self._endpoint = self._transport = None
        await asyncio.sleep(0)
