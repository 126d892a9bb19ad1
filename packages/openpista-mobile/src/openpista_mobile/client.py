"""A reusable async client of the mobile channel (``openpista connect`` is built on it).

::

    client = await MobileClient.connect("quic://host:4433", token=..., device_id="phone",
                                        fingerprint="AB:CD:...")
    async for message in client.ask("what is the load average?"):
        if message.kind == "chunk":  # the gateway's outbound kinds (openpista.models.Outbound)
            print(message.text, end="")
        elif message.kind == "answer":  # the end of the turn: the whole text again, files
            print()
    async for message in client.pushed():  # what the server pushes (cron answers, ...)
        print("pushed:", message)
    await client.close()

Session tickets are kept under ``<home>/mobile/tickets/`` (one per server, device and trust
setting), so the next connection sends its first request as 0-RTT early data.

A connection that ends in a way a new one may fix (the server stopped, restarted, went silent
or is not there) raises :class:`ConnectionLost`; a request that got no answer may then be
sent again on a new connection with the same ``request_id`` (the server never runs an id
twice). With ``keepalive`` the client pings the server and notices a silent one quickly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import json
import logging
import socket
import ssl
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from openpista.files import write_private
from openpista.models import Answer, Attachment, Outbound
from openpista.workers import WorkerReport
from openpista_mobile.certs import normalize_fingerprint, state_dir
from openpista_mobile.errors import CertificateError, ConnectionLost, MobileError, Unreachable
from openpista_mobile.protocol import (
    ALPN,
    DEFAULT_PORT,
    ErrorCode,
    FrameError,
    encode_frame,
    read_outbound,
)

if TYPE_CHECKING:
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.tls import SessionTicket

__all__ = [
    "CertificateError",
    "ConnectionLost",
    "Endpoint",
    "MobileClient",
    "MobileError",
    "TicketFile",
    "Unreachable",
    "encode_attachment",
]

log = logging.getLogger(__name__)

SILENT_PINGS = 4  # keep-alive intervals without a packet: time to see if the server restarted
CLOSE_WAIT = 2.0  # seconds close() waits for the connection's closing period


@dataclass(frozen=True)
class Endpoint:
    """``quic://host:port`` taken apart."""

    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Read ``quic://host[:port]`` (port 4433 by default); ValueError if it is not one."""
        parts = urlsplit(url if "://" in url else f"quic://{url}")
        if parts.scheme != "quic" or not parts.hostname:
            raise ValueError(f"{url!r} is not a quic://host:port address")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError(f"{url!r} has an invalid port") from None
        return cls(parts.hostname, port)


class TicketFile:
    """One stored session ticket (JSON, mode 0600); each ticket is used once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def take(self) -> SessionTicket | None:
        """The stored ticket, removed from disk (the server accepts it only once)."""
        from aioquic.tls import CipherSuite, SessionTicket

        try:
            data = json.loads(self.path.read_text())
            self.path.unlink()
            ticket = SessionTicket(
                age_add=int(data["age_add"]),
                cipher_suite=CipherSuite(int(data["cipher_suite"])),
                not_valid_after=datetime.datetime.fromisoformat(data["not_valid_after"]),
                not_valid_before=datetime.datetime.fromisoformat(data["not_valid_before"]),
                resumption_secret=bytes.fromhex(data["resumption_secret"]),
                server_name=str(data["server_name"]),
                ticket=bytes.fromhex(data["ticket"]),
                max_early_data_size=data.get("max_early_data_size"),
                other_extensions=[
                    (int(kind), bytes.fromhex(value)) for kind, value in data["other_extensions"]
                ],
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("mobile: ignoring the unreadable session ticket %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                self.path.unlink()
            return None
        return ticket if ticket.is_valid else None

    def store(self, ticket: SessionTicket) -> None:
        data = {
            "age_add": ticket.age_add,
            "cipher_suite": int(ticket.cipher_suite),
            "not_valid_after": ticket.not_valid_after.isoformat(),
            "not_valid_before": ticket.not_valid_before.isoformat(),
            "resumption_secret": ticket.resumption_secret.hex(),
            "server_name": ticket.server_name,
            "ticket": ticket.ticket.hex(),
            "max_early_data_size": ticket.max_early_data_size,
            "other_extensions": [[kind, value.hex()] for kind, value in ticket.other_extensions],
        }
        try:
            write_private(self.path, json.dumps(data))
        except OSError as exc:
            log.warning("mobile: cannot keep the session ticket %s: %s", self.path, exc)


class MobileClient:
    """One QUIC connection to a mobile endpoint."""

    def __init__(self) -> None:
        self.endpoint: Endpoint | None = None
        self.device_id: str | None = None
        self._token: str | None = None
        self._protocol: Any = None
        self._exit: contextlib.AsyncExitStack | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.resumed_with_ticket = False

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str | None = None,
        device_id: str | None = None,
        *,
        fingerprint: str | None = None,
        insecure: bool = False,
        cafile: str | Path | None = None,
        tickets: Path | None = None,
        early_data: bool = True,
        timeout: float = 10.0,  # noqa: ASYNC109
        keepalive: float | None = None,
    ) -> MobileClient:
        """Connect to ``quic://host:port``.

        Trust: ``fingerprint`` pins the server certificate's SHA-256; ``cafile`` verifies it
        against a CA bundle; ``insecure`` trusts anything (testing only); none of them uses
        the system's CAs. With a stored session ticket and ``early_data`` the handshake is
        not waited for: the first request travels as 0-RTT data. ``token``/``device_id``
        may be left out by a client that only sends worker reports. ``keepalive`` pings
        the server every that many seconds; when it has been silent for four of them, a
        second connection is tried: if the server answers that one (it was killed and
        restarted, so it forgot this connection), this one ends with
        :class:`ConnectionLost`; if not, it may just be busy and the wait goes on. A host
        that refuses the port (nobody listens any more) ends it at once.

        Raises :class:`Unreachable` when nothing answers at the address (at once if the
        host refuses the port, else after ``timeout``), :class:`CertificateError` for an
        untrusted certificate, :class:`MobileError` when the server refuses.
        """
        from aioquic.quic.configuration import QuicConfiguration

        client = cls()
        endpoint = Endpoint.parse(url)
        client.endpoint, client.device_id, client._token = endpoint, device_id, token
        pin = normalize_fingerprint(fingerprint) if fingerprint else None
        configuration = QuicConfiguration(is_client=True, alpn_protocols=[ALPN])
        if pin is not None or insecure:
            configuration.verify_mode = ssl.CERT_NONE
        elif cafile is not None:
            configuration.load_verify_locations(cafile=str(cafile))
        else:
            configuration.load_verify_locations(cafile=ssl.get_default_verify_paths().cafile)
        trust = pin or (f"ca:{cafile}" if cafile else "insecure" if insecure else "system")
        key = f"{endpoint.host}:{endpoint.port}|{device_id}|{trust}"
        folder = tickets or state_dir() / "tickets"
        ticket_file = TicketFile(folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json")
        ticket = ticket_file.take() if early_data else None
        configuration.session_ticket = ticket
        client.resumed_with_ticket = ticket is not None

        from openpista_mobile.quic_client import ClientProtocol

        def create(connection: Any) -> Any:
            protocol = ClientProtocol(connection)
            protocol.pin = pin
            protocol.address = f"{endpoint.host}:{endpoint.port}"
            return protocol

        stack = contextlib.AsyncExitStack()
        try:
            dial = _dial(endpoint, configuration, create, ticket_file.store)
            client._protocol = protocol = await stack.enter_async_context(dial)
            if ticket is None:
                try:
                    await asyncio.wait_for(client.handshake(), timeout)
                except TimeoutError:
                    address = f"{endpoint.host}:{endpoint.port}"
                    why = f"no answer from {address} within {timeout:g} s"
                    raise Unreachable("unreachable", why) from None
        except BaseException:
            await stack.aclose()
            raise
        client._exit = stack
        if keepalive is not None:
            protocol.keep_alive(keepalive)

            def redial() -> Awaitable[MobileClient]:
                return cls.connect(
                    url,
                    fingerprint=fingerprint,
                    insecure=insecure,
                    cafile=cafile,
                    tickets=tickets,
                    early_data=False,
                    timeout=keepalive * SILENT_PINGS,
                )

            client._watchdog = asyncio.create_task(client._watch(keepalive, redial))
        return client

    async def handshake(self) -> tuple[bool, bool]:
        """Wait for the handshake: ``(early_data_accepted, session_resumed)``.

        After a 0-RTT connect nothing is sent before the first request (so that it rides
        in the first flight); this starts the handshake if no request did.
        """
        protocol = self._connection()
        protocol.transmit()
        result: tuple[bool, bool] = await asyncio.shield(protocol.handshake)
        return result

    @property
    def closed(self) -> bool:
        """Whether the connection has ended (closed, timed out, or refused)."""
        return self._protocol is None or self._protocol.terminated is not None

    async def _watch(self, interval: float, redial: Callable[[], Awaitable[MobileClient]]) -> None:
        """While the connection is open: when the server has been silent for
        ``SILENT_PINGS`` intervals, end the connection if a new one to the server works."""
        protocol = self._connection()
        limit = interval * SILENT_PINGS
        while protocol.terminated is None:
            await asyncio.sleep(interval)
            if protocol.silence <= limit:
                continue
            try:
                probe = await redial()
            except MobileError:  # nothing answers new connections either: maybe busy
                continue
            await probe.close()
            if protocol.silence > limit:
                why = f"{protocol.address} did not answer for {protocol.silence:.0f} s"
                protocol.lost(ConnectionLost("silent", f"{why}; it answers new connections"))

    @property
    def error(self) -> MobileError | None:
        """Why the connection ended (None while it is open, or after :meth:`close`)."""
        if self._protocol is None:
            return None
        error: MobileError | None = self._protocol.terminated
        return error

    @property
    def early_data_accepted(self) -> bool | None:
        """Whether the server took our 0-RTT data (None until the handshake is done)."""
        future = self._connection().handshake
        if not future.done() or future.exception() is not None:
            return None
        accepted: bool = future.result()[0]
        return accepted

    async def check(self) -> dict[str, Any]:
        """Authenticate without asking anything: the server's ``auth_ok`` frame."""
        frames = [f async for f in self.exchange([self._auth()])]
        if not frames or frames[-1].get("type") != "auth_ok":
            raise MobileError("protocol", f"unexpected answer to auth: {frames!r}")
        return frames[-1]

    async def ask(
        self,
        text: str,
        attachments: Sequence[Attachment] = (),
        *,
        request_id: str | None = None,
    ) -> AsyncIterator[Outbound]:
        """Send a message on a new stream; yields what the gateway sends for it, by kind:
        :class:`~openpista.models.TextChunk` and :class:`~openpista.models.ToolProgress`
        while the answer is written, :class:`~openpista.models.ApprovalPrompt` when a tool
        call waits for a yes, then the final :class:`~openpista.models.Answer`. A frame that
        is none of them raises :class:`MobileError` (code ``bad_frame``).

        Every request carries a ``request_id`` (a fresh one by default): the server never
        runs the same id twice, which is what makes 0-RTT replays harmless.
        """
        frame = {
            "type": "message",
            "text": text,
            "attachments": [a.model_dump(mode="json", exclude_none=True) for a in attachments],
            "request_id": request_id or uuid.uuid4().hex,
        }
        async for reply in self.exchange([self._auth(), frame]):
            if reply.get("type") != "response":
                raise MobileError("protocol", f"unexpected frame {reply.get('type')!r}")
            try:
                yield read_outbound(reply)
            except FrameError as exc:
                raise MobileError(exc.code, exc.message) from None

    async def answer(self, text: str, **kwargs: Any) -> Answer:
        """The final :class:`~openpista.models.Answer` to ``text`` (the rest is dropped)."""
        final: Answer | None = None
        async for message in self.ask(text, **kwargs):
            if isinstance(message, Answer):
                final = message
        if final is None:
            raise MobileError("protocol", "the stream ended without an answer")
        return final

    async def pushed(self) -> AsyncGenerator[Outbound, None]:
        """The messages the server pushes (answers of no request on this connection: cron
        entries, answers that outlived an earlier connection, approval prompts of those),
        in arrival order; ends when the connection does. Malformed pushes are logged and
        left out.

        Pushes go only to connections that authenticated (:meth:`check` or any request).
        Ones arriving before anybody iterates are kept (the last 1000).
        """
        queue = self._connection().pushes
        while True:
            item = await queue.get()
            if item is None:  # the connection ended
                queue.put_nowait(None)  # every other reader ends too
                return
            yield item

    @property
    def unread_pushes(self) -> int:
        """Pushed responses received and not yet taken by :meth:`pushed`."""
        return int(self._connection().pushes.qsize())

    async def report(self, token: str, report: WorkerReport) -> None:
        """Deliver a sandbox worker's final report (the original format) with its per-task
        token; stored as the task's report ``final``, so sending it again is harmless.
        :class:`MobileError` ``worker_refused`` (its ``message``: the NACK's result and
        detail) when it is not stored, ``unavailable``: send it again later."""
        frame = {"type": "worker_report", "token": token, "report": report.model_dump(mode="json")}
        frames = [f async for f in self.exchange([frame])]
        if not frames or frames[-1].get("type") != "worker_ack":
            raise MobileError("protocol", f"unexpected answer to a worker report: {frames!r}")
        ack = frames[-1]
        if ack.get("result") not in ("accepted", "duplicate"):
            detail = f"{ack.get('result')}: {ack.get('detail')}"
            raise MobileError(ErrorCode.WORKER_REFUSED, detail)

    async def send_report(self, token: str, envelope: dict[str, Any]) -> dict[str, Any]:
        """Deliver a versioned worker report (:mod:`openpista.worker_protocol`) with its
        per-task token; the daemon's ACK (``result``: ``accepted``, ``duplicate`` or a NACK).
        An ``unavailable`` error (:class:`MobileError`) means: send it again later."""
        frame = {"type": "worker_envelope", "token": token, "report": envelope}
        frames = [f async for f in self.exchange([frame])]
        if not frames or frames[-1].get("type") != "worker_ack":
            raise MobileError("protocol", f"unexpected answer to a worker report: {frames!r}")
        ack = dict(frames[-1])
        ack.pop("type")
        return ack

    async def close(self) -> None:
        """Close the connection."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
        stack, self._exit = self._exit, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> MobileClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _connection(self) -> Any:
        if self._protocol is None:
            raise MobileError("closed", "not connected")
        return self._protocol

    def _auth(self) -> dict[str, Any]:
        if self._token is None or self.device_id is None:
            raise MobileError("auth", "this client has no device id and token")
        return {"type": "auth", "device_id": self.device_id, "token": self._token}

    def exchange(self, frames: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """Open a stream, send ``frames`` and end our side; yield the server's frames
        (an error frame raises :class:`MobileError`)."""
        return self.exchange_raw(b"".join(encode_frame(frame) for frame in frames))

    async def exchange_raw(self, payload: bytes) -> AsyncIterator[dict[str, Any]]:
        """:meth:`exchange` with bytes as they are (for testing servers with bad input)."""
        protocol = self._connection()
        stream_id, queue = protocol.open_stream()
        protocol._quic.send_stream_data(stream_id, payload, end_stream=True)
        protocol.transmit()
        while True:
            item = await queue.get()
            if item is None:  # the stream ended
                return
            if isinstance(item, MobileError):
                raise item
            if item.get("type") == "error":
                raise MobileError(str(item.get("code")), str(item.get("message")))
            yield item


@contextlib.asynccontextmanager
async def _dial(
    endpoint: Endpoint,
    configuration: QuicConfiguration,
    create: Callable[[Any], Any],
    ticket_handler: Callable[[SessionTicket], None],
) -> AsyncIterator[Any]:
    """A client connection (not started: ``transmit()`` starts it), as aioquic's
    ``connect()`` makes one but on a *connected* UDP socket, so that an ICMP error (no
    server on the port) reaches the protocol at once instead of after a timeout."""
    from aioquic.quic.connection import QuicConnection

    loop = asyncio.get_running_loop()
    address = f"{endpoint.host}:{endpoint.port}"
    try:
        infos = await loop.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise Unreachable("unreachable", f"cannot resolve {endpoint.host}: {exc}") from None
    addr: tuple[Any, ...] = infos[0][4]
    if len(addr) == 2:
        addr = ("::ffff:" + str(addr[0]), addr[1], 0, 0)
    configuration.server_name = configuration.server_name or endpoint.host
    connection = QuicConnection(configuration=configuration, session_ticket_handler=ticket_handler)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0, 0, 0))
        sock.connect(addr)
    except OSError as exc:
        sock.close()
        raise Unreachable("unreachable", f"cannot reach udp {address}: {exc}") from None
    transport, protocol = await loop.create_datagram_endpoint(lambda: create(connection), sock=sock)
    try:
        protocol.connect(addr, transmit=False)
        yield protocol
    finally:
        protocol.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(protocol.wait_closed(), CLOSE_WAIT)
        transport.close()


def encode_attachment(path: Path, mime_type: str) -> Attachment:
    """A local file as an inline attachment for :meth:`MobileClient.ask`."""
    data = base64.b64encode(path.read_bytes()).decode()
    return Attachment(name=path.name, mime_type=mime_type, data=data)
