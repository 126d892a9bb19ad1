"""The HTTP side of the web channel: the starlette app serving the client and the socket.

Static files come from the bundled ``static/`` folder or ``static_dir``; they are compressed
on the fly (brotli, else gzip) and served with an ETag and ``Cache-Control: no-cache``, so a
browser revalidates cheaply (304) and never runs a stale client after an upgrade.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from openpista.serving import bearer
from openpista_web.auth import token_matches

if TYPE_CHECKING:
    from openpista_web.limiter import AuthFailureLimiter
    from openpista_web.settings import WebSettings

BUNDLED_STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; connect-src 'self' ws: wss:; "
    "style-src 'self'; script-src 'self'; manifest-src 'self'; worker-src 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)

mimetypes.add_type("application/manifest+json", ".webmanifest")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("image/svg+xml", ".svg")


class ShellHeaders:
    """Adds cache and security headers to every HTTP response of the static client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Cache-Control", "no-cache")
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("Content-Security-Policy", CSP)
            await send(message)

        await self.app(scope, receive, with_headers)


def too_many_attempts(retry_after: int) -> Response:
    """The answer to an address refused by the wrong-token limiter (HTTP 429)."""
    return JSONResponse(
        {"error": "too many wrong tokens from this address; try again later"},
        status_code=429,
        headers={"Retry-After": str(retry_after)},
    )


Scrape = Callable[[str], "tuple[bytes, str] | None"]
"""The daemon's metrics for an ``Accept`` header (:meth:`ChannelContext.metrics`)."""


@dataclass(frozen=True)
class MetricsMount:
    """``/metrics`` served here (``[metrics] mount = "web"``) with ``[metrics] token``."""

    token: str | None


def build_app(
    settings: WebSettings,
    token: str,
    socket_endpoint: Callable[[WebSocket], Awaitable[None]],
    limiter: AuthFailureLimiter,
    ready: Callable[[], bool] = lambda: True,
    metrics: tuple[Scrape, str | None] | None = None,
) -> Starlette:
    """The app: ``/ws`` (the chat socket), ``/api/health``, ``/api/auth``, and the client.

    Wrong tokens at ``/api/auth`` count in ``limiter`` like those of ``/ws``. ``ready``
    tells ``/api/health`` whether a message sent now is answered without a start-up wait.
    ``metrics`` (``[metrics] mount = "web"``: the scrape and its bearer token, if any) adds
    ``GET /metrics``; its wrong tokens count in ``limiter`` too.
    """
    from brotli_asgi import BrotliMiddleware

    static_dir = settings.static_dir or BUNDLED_STATIC
    if not (static_dir / "index.html").is_file():
        from openpista.config import ConfigError

        raise ConfigError(f"[channels.web] static_dir {static_dir} has no index.html")

    async def health(request: Request) -> Response:
        """200 ``{"ok": true, "ready": true}`` once the daemon answers without a warm-up
        wait; 503 with ``false`` while its provider warms up or while it stops."""
        is_ready = ready()
        return JSONResponse({"ok": is_ready, "ready": is_ready}, 200 if is_ready else 503)

    async def check_token(request: Request) -> Response:
        """``POST`` with ``Authorization: Bearer TOKEN``: 204 when right, 401 when not.

        The client asks after a refused handshake (browsers hide the HTTP status of a
        WebSocket refusal) to tell a wrong token from a server that is down. An address
        with too many wrong tokens gets 429 before any comparison.
        """
        host = request.client.host if request.client else None
        wait = limiter.retry_after(host)
        if wait:
            return too_many_attempts(wait)
        offered = bearer(request.headers.get("authorization"))
        if offered and token_matches(offered, token):
            return Response(status_code=204)
        limiter.failed(host)
        return JSONResponse({"error": "wrong or missing token"}, status_code=401)

    routes = [
        WebSocketRoute("/ws", socket_endpoint),
        Route("/api/health", health, methods=["GET"]),
        Route("/api/auth", check_token, methods=["POST"]),
        *([Route("/metrics", metrics_endpoint(*metrics, limiter))] if metrics else []),
        Mount("/", app=ShellHeaders(StaticFiles(directory=static_dir, html=True))),
    ]
    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        ),
        Middleware(BrotliMiddleware, minimum_size=512, gzip_fallback=True),
    ]
    return Starlette(routes=routes, middleware=middleware)


def metrics_endpoint(
    scrape: Scrape, token: str | None, limiter: AuthFailureLimiter
) -> Callable[[Request], Awaitable[Response]]:
    """``GET /metrics``: the exposition, after the bearer ``token`` when one is set (401
    when wrong or missing, 429 for an address with too many wrong tokens); 404 when the
    daemon keeps no metrics."""

    async def endpoint(request: Request) -> Response:
        if token is not None:
            host = request.client.host if request.client else None
            wait = limiter.retry_after(host)
            if wait:
                return too_many_attempts(wait)
            if not token_matches(bearer(request.headers.get("authorization")), token):
                limiter.failed(host)
                return Response(
                    "unauthorized: send Authorization: Bearer <[metrics] token>\n",
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                    media_type="text/plain",
                )
        exposition = scrape(request.headers.get("accept", ""))
        if exposition is None:
            return Response("no metrics: [metrics] enabled is off\n", 404, media_type="text/plain")
        body, content_type = exposition
        return Response(body, headers={"Content-Type": content_type})

    return endpoint
