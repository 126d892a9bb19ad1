"""Serve an ASGI app (starlette) inside the daemon's event loop, for channels and endpoints.

Channel plugins that listen for HTTP or WebSocket traffic (webhooks, the web chat, a worker
report endpoint) run uvicorn in the gateway's own event loop, without the signal handlers
uvicorn would install (the daemon owns SIGINT and SIGTERM)::

    server = EmbeddedServer(app, name="whatsapp webhook")
    await server.start(bind_tcp(host, port, option="channels.whatsapp.webhook_port"))
    print(server.port)
    ...
    await server.wait_closed()   # returns once stopped; raises when the server died
    await server.stop()

uvicorn is imported when a server starts, never at import time.

Every server announces its bound address while it listens (:func:`announce`); the daemon
prints :func:`listeners` at start and ``openpista status`` shows them, so that a port of
``0`` is never a mystery. A plugin serving something else (QUIC) announces it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator

if TYPE_CHECKING:
    from starlette.requests import Request

log = logging.getLogger(__name__)


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (``""`` without one)."""
    scheme, _, token = (header or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class BodyTooLargeError(Exception):
    """A request body larger than the endpoint accepts (answer ``413``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The body of ``request``, never holding more than ``limit`` bytes of it: a larger
    declared ``Content-Length`` is refused before anything is read, a larger stream as
    soon as it passes ``limit`` (:class:`BodyTooLargeError`)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLargeError(limit)
    return bytes(body)


def _endpoint_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must start with '/'")
    return value


WebhookPath = Annotated[str, AfterValidator(_endpoint_path)]
"""A settings field holding the URL path of an HTTP endpoint such as a webhook (``/...``)."""


@dataclass(frozen=True)
class Listener:
    """An address this process listens on, and what listens there."""

    name: str
    url: str


_announced: weakref.WeakKeyDictionary[object, tuple[asyncio.AbstractEventLoop, Listener]] = (
    weakref.WeakKeyDictionary()
)


def announce(owner: object, name: str, url: str) -> None:
    """Record that ``owner`` (a server of this event loop) listens on ``url``, until
    :func:`withdraw` (or until ``owner`` is gone)."""
    _announced[owner] = (asyncio.get_running_loop(), Listener(name, url))


def withdraw(owner: object) -> None:
    """``owner`` no longer listens."""
    _announced.pop(owner, None)


def listeners() -> list[Listener]:
    """What the servers of the running event loop listen on, in the order they started."""
    loop = asyncio.get_running_loop()
    return [listener for owner_loop, listener in _announced.values() if owner_loop is loop]


def socket_url(sock: socket.socket, scheme: str) -> str:
    """``scheme://host:port`` of a bound socket (``unix:PATH`` for a unix socket)."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def bind_tcp(host: str, port: int, *, option: str = "port") -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (``0``: any free port), IPv4 or IPv6.

    A port in use or an unknown address raises ``OSError`` naming ``option`` to change.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"cannot listen on {host}:{port} ({exc.strerror}); change {option}"
        ) from None
    return sock


def bind_unix(path: Path, *, mode: int = 0o600) -> socket.socket:
    """A listening unix socket at ``path`` (a stale file there is replaced), with ``mode``."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        path.chmod(mode)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {path} ({exc.strerror})") from None
    return sock


class EmbeddedServer:
    """An ASGI application served by uvicorn in the running event loop.

    ``options`` are passed to ``uvicorn.Config`` (``ssl_certfile``, ``ws_max_size``, ...);
    logging is left to openpista's configuration and the access log is off.
    """

    def __init__(self, app: Any, *, name: str, grace: int = 2, **options: Any) -> None:
        self.app = app
        self.name = name
        self.grace = grace
        self.options = options
        self.socket: socket.socket | None = None
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def port(self) -> int:
        """The TCP port listened on (``0`` for a unix socket or before :meth:`start`)."""
        if self.socket is None or self.socket.family == socket.AF_UNIX:
            return 0
        return int(self.socket.getsockname()[1])

    async def start(self, sock: socket.socket) -> None:
        """Serve on the bound socket ``sock``; returns once connections are accepted.

        Raises ``RuntimeError`` when uvicorn cannot start (the socket is closed then).
        """
        import uvicorn

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield  # the daemon owns SIGINT and SIGTERM

        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=self.grace,
            **self.options,
        )
        self.socket, self._stopping = sock, False
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                error = None if self._task.cancelled() else self._task.exception()
                self._close_socket()
                raise RuntimeError(f"{self.name} could not start: {error or 'uvicorn exited'}")
            await asyncio.sleep(0.01)
        scheme = "https" if self.options.get("ssl_certfile") else "http"
        announce(self, self.name, socket_url(sock, scheme))

    async def wait_closed(self) -> None:
        """Return when :meth:`stop` ended the server; raise when it ended on its own."""
        if self._task is None:
            return
        await asyncio.wait({self._task})  # a cancelled caller stops waiting; the server goes on
        if not self._stopping:
            raise RuntimeError(f"{self.name} stopped unexpectedly")

    async def stop(self) -> None:
        """Stop accepting, give open requests ``grace`` seconds, then close everything."""
        self._stopping = True
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.grace + 3)
            except Exception:  # timed out or crashed: force it
                self._server.force_exit = True
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        self._close_socket()
        self._server = self._task = None

    def _close_socket(self) -> None:
        withdraw(self)
        if self.socket is not None:
            self.socket.close()
            self.socket = None
