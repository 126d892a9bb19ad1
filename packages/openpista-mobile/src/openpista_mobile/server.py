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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openpista.quietlog import QuietLog
from openpista.serving import announce, socket_url, withdraw
from openpista_mobile.protocol import ALPN, AppError
from openpista_mobile.session import AgentSession, MessageHandler
from openpista_mobile.settings import TokenBook

if TYPE_CHECKING:
    from aioquic.asyncio.server import QuicServer as AioQuicServer
    from aioquic.quic.connection import QuicConnection
    from aioquic.tls import SessionTicket

log = logging.getLogger(__name__)

MAX_TICKETS = 10_000


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
    auth_timeout: float = 10.0
    max_unauthenticated_connections: int = 32
    max_unauthenticated_bytes: int = 1024 * 1024
    tickets: TicketStore = field(default_factory=TicketStore)


_protocol_class: type[Any] | None = None


def protocol_class() -> type[Any]:
    """The aioquic protocol class (one instance per connection) that hands every event
    to its :class:`AgentSession`; built on first use, so that aioquic is imported lazily."""
    global _protocol_class
    if _protocol_class is None:
        from aioquic.asyncio.protocol import QuicConnectionProtocol

        class _SessionProtocol(QuicConnectionProtocol):
            def __init__(self, quic: QuicConnection, server: QuicServer, **kwargs: Any) -> None:
                super().__init__(quic, **kwargs)
                self.session = AgentSession(self, server)

            def quic_event_received(self, event: Any) -> None:
                self.session.handle(event)

        _protocol_class = _SessionProtocol
    return _protocol_class


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
        self.sessions: set[AgentSession] = set()
        self._quiet = QuietLog()
        self._endpoint: AioQuicServer | None = None
        self._transport: asyncio.DatagramTransport | None = None

    def _admit(self, session: AgentSession) -> None:
        """Track a new connection; refuse it if too many are not yet authenticated."""
        waiting = sum(
            1
            for other in self.sessions
            if not other.authenticated and not other.closed and other.refusal is None
        )
        self.sessions.add(session)
        limit = self.options.max_unauthenticated_connections
        if waiting < limit:
            return
        session.refuse(AppError.TOO_MANY_UNAUTHENTICATED, "too many unauthenticated connections")
        self._quiet.warning(
            log,
            "turned away",
            f"mobile: a connection was turned away: {limit} are not authenticated yet (the limit)",
        )

    def authenticated(self, session: AgentSession) -> None:
        """A connection became live for pushes as ``session.device_id``."""
        if self.on_authenticated is not None and session.device_id is not None:
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
        cls = protocol_class()

        def create(connection: QuicConnection, **kwargs: Any) -> Any:
            protocol = cls(connection, self, **kwargs)
            self._admit(protocol.session)
            return protocol

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
        announce(self, "mobile QUIC", socket_url(transport.get_extra_info("socket"), "quic"))

    async def close(self) -> None:
        """Close every connection (code SHUTTING_DOWN) and the socket."""
        withdraw(self)
        for session in list(self.sessions):
            session.shutdown()
        self.sessions.clear()
        if self._endpoint is not None:
            self._endpoint.close()
        self._endpoint = self._transport = None
        await asyncio.sleep(0)
