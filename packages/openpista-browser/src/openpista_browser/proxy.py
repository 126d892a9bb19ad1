"""The browser's only way out: a forward HTTP proxy on loopback that enforces :class:`HostRules`.

Chromium is started with ``--proxy-server`` pointing here and ``--proxy-bypass-list=<-loopback>``
(so that not even loopback bypasses it), which sends every connection of every page, frame,
worker, redirect hop, WebSocket and preconnect through this proxy: plain HTTP as an
absolute-URI request, HTTPS and WebSockets as ``CONNECT host:port``. Chromium resolves no host
names itself then; the proxy resolves them, checks every address and connects to a checked one.

A refused plain-HTTP request is answered ``403`` with the reason in the ``X-Openpista-Blocked``
header; a refused ``CONNECT`` gets ``403`` too (Chromium reports ERR_TUNNEL_CONNECTION_FAILED).
The last refusals and connection failures are kept so the tools can tell the LLM why: the
tools take the reason from here, never from a header (any site can send one).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from urllib.parse import urlsplit

from openpista_browser.guard import Blocked, HostRules, IpAddress

BLOCKED_HEADER = "X-Openpista-Blocked"
"""Response header of a refused request: why it was refused."""
UNREACHABLE_HEADER = "X-Openpista-Unreachable"
"""Response header of a request whose host could not be connected to."""
_HOP_HEADERS = frozenset({"connection", "proxy-connection", "proxy-authorization", "keep-alive"})
_KEPT_REFUSALS = 64


class GuardProxy:
    """Serves the browser on ``127.0.0.1:<port>`` until :meth:`close`."""

    def __init__(self, rules: HostRules, connect_timeout: float) -> None:
        self.rules = rules
        self.connect_timeout = connect_timeout
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._refusals: OrderedDict[str, str] = OrderedDict()

    @property
    def address(self) -> str:
        """``http://127.0.0.1:<port>`` (after :meth:`start`)."""
        assert self._server is not None  # noqa: S101  an invariant for mypy, not a check
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        """Stop listening and cut every open connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if server is not None:
            await server.wait_closed()

    def refusal(self, host: str, *, exact: bool = False) -> str | None:
        """Why a connection to ``host`` was last refused or failed (else, unless ``exact``,
        the latest reason)."""
        found = self._refusals.get(host.strip("[]").lower())
        if found is None and self._refusals and not exact:
            found = next(reversed(self._refusals.values()))
        return found

    def _refused(self, host: str, reason: str) -> str:
        key = host.strip("[]").lower()
        self._refusals.pop(key, None)
        self._refusals[key] = reason
        while len(self._refusals) > _KEPT_REFUSALS:
            self._refusals.popitem(last=False)
        return reason

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101  an invariant for mypy, not a check
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # a malformed request or a connection gone: nothing to answer
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, client: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # At most 64 KiB (the reader's limit), within the connect timeout.
        head = await asyncio.wait_for(client.readuntil(b"\r\n\r\n"), self.connect_timeout)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ", 2)
        if method == "CONNECT":
            host, _, port_text = target.rpartition(":")
            upstream = await self._open(host, int(port_text), writer)
            if upstream is None:
                return
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await self._pipe(client, writer, *upstream, b"")
            return
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            await _answer(writer, 400, {}, "the proxy serves only http:// URLs and CONNECT")
            return
        upstream = await self._open(url.hostname, url.port or 80, writer)
        if upstream is None:
            return
        path = url.path or "/"
        lines = [f"{method} {path}{'?' + url.query if url.query else ''} {version}"]
        lines += [line for line in header_lines if line and not _is_hop(line)]
        lines.append("Connection: close")
        await self._pipe(client, writer, *upstream, ("\r\n".join(lines) + "\r\n\r\n").encode())

    async def _open(
        self, host: str, port: int, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Check ``host`` and connect to one of its allowed addresses (else answer why not)."""
        if not 0 < port < 65_536:
            await _answer(writer, 400, {}, f"bad port {port}")
            return None
        try:
            addresses = await self.rules.resolve(host, port)
        except Blocked as exc:
            await _answer(writer, 403, {BLOCKED_HEADER: self._refused(host, str(exc))}, str(exc))
            return None
        failure = "no address"
        for address in addresses:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(str(address), port), self.connect_timeout
                )
            except OSError as exc:  # TimeoutError included
                failure = _failure(address, port, exc)
        await _answer(writer, 502, {UNREACHABLE_HEADER: self._refused(host, failure)}, failure)
        return None

    async def _pipe(
        self,
        client: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
        first: bytes,
    ) -> None:
        """Copy both ways until the upstream side ends."""
        upstream_writer.write(first)
        outgoing = asyncio.create_task(_copy(client, upstream_writer))
        try:
            await _copy(upstream, writer)
        finally:
            outgoing.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await outgoing
            upstream_writer.close()


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while chunk := await source.read(65_536):
        sink.write(chunk)
        await sink.drain()


async def _answer(
    writer: asyncio.StreamWriter, status: int, headers: dict[str, str], text: str
) -> None:
    body = text.encode()
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: text/plain; charset=utf-8"]
    lines += [f"{name}: {_header_safe(value)}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()


def _header_safe(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ").encode("ascii", "replace").decode()


def _is_hop(line: str) -> bool:
    return line.split(":", 1)[0].strip().lower() in _HOP_HEADERS


def _failure(address: IpAddress, port: int, exc: OSError) -> str:
    where = f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
    if isinstance(exc, TimeoutError):
        return f"cannot connect to {where}: timed out"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {where}: connection refused"
    return f"cannot connect to {where}: {exc.strerror or exc}"
