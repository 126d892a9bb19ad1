"""HTTP mode: Slack POSTs events, slash commands and button presses to one endpoint.

The endpoint (uvicorn in the daemon's loop, :class:`openpista.serving.EmbeddedServer`) checks
the request signature before it parses anything: ``X-Slack-Request-Timestamp`` within
``signature_window`` seconds of now (else 401: a replay) and ``X-Slack-Signature``, ``v0=`` and
the HMAC-SHA256 of ``v0:{timestamp}:{body}`` under the signing secret, compared in constant
time (missing or wrong: 401). Then the body size (413 above ``max_body_bytes``, read without
ever holding more), then JSON bodies (400 when malformed); a ``url_verification`` is answered
with its ``challenge``. Everything else goes to slack-bolt, which acks at once (Slack wants an
answer within 3 seconds) and runs the listener after.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from openpista import jsonsafe
from openpista.quietlog import QuietLog

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from openpista.serving import EmbeddedServer
    from openpista_slack.settings import SlackSettings

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"

Dispatch = Callable[[bytes, dict[str, str]], Awaitable[tuple[int, str, dict[str, str]]]]
"""Hands a verified request (body, headers) to bolt; returns (status, body, headers)."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature of ``body`` sent at ``timestamp``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class EventsReceiver:
    """The Events API endpoint (see the module docstring)."""

    def __init__(self, settings: SlackSettings, dispatch: Dispatch) -> None:
        self.settings = settings
        self.port = 0
        """The TCP port listened on (after :meth:`start`)."""
        self._secret = settings.secret("signing_secret")
        self._dispatch = dispatch
        self._server: EmbeddedServer | None = None
        self._refusals = QuietLog()

    async def start(self) -> None:
        """Listen on ``http_host``:``http_port``; raises ``RuntimeError`` naming the option
        to change when the address is unusable."""
        from openpista.serving import EmbeddedServer, bind_tcp

        host, port = self.settings.http_host, self.settings.http_port
        server = EmbeddedServer(self.asgi_app(), name="slack events", grace=1)
        try:
            await server.start(bind_tcp(host, port, option="channels.slack.http_host / http_port"))
        except (OSError, RuntimeError) as exc:
            raise RuntimeError(f"slack: {exc}") from None
        self._server, self.port = server, server.port
        log.info("slack: Events API listening on %s:%d%s", host, self.port, self.settings.http_path)

    async def wait_closed(self) -> None:
        """Return when :meth:`stop` ends the server; raise when it died on its own."""
        if self._server is not None:
            await self._server.wait_closed()

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            await self._server.stop()
        self._server = None

    def asgi_app(self) -> Any:
        """The starlette application: ``POST`` on ``http_path``."""
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(routes=[Route(self.settings.http_path, self._receive, methods=["POST"])])

    def _refuse(self, reason: str) -> Response:
        from starlette.responses import PlainTextResponse

        self._refusals.warning(log, reason, f"slack: request refused: {reason}")
        return PlainTextResponse(reason, status_code=401)

    async def _receive(self, request: Request) -> Response:
        from starlette.responses import JSONResponse, PlainTextResponse

        from openpista.serving import BodyTooLargeError, read_body

        stamp = request.headers.get(TIMESTAMP_HEADER, "")
        given = request.headers.get(SIGNATURE_HEADER, "")
        if not stamp or not given:
            return self._refuse("unsigned request")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > self.settings.signature_window:
            return self._refuse("stale or unreadable timestamp")
        limit = self.settings.max_body_bytes
        try:
            body = await read_body(request, limit)
        except BodyTooLargeError as exc:
            return PlainTextResponse(str(exc), status_code=413)
        if not hmac.compare_digest(given.encode(), signature(self._secret, stamp, body).encode()):
            return self._refuse("wrong signature")
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                payload = jsonsafe.loads(body, max_bytes=limit)
            except jsonsafe.JsonInputError as error:
                jsonsafe.log_rejected(log, "slack events", error)
                return PlainTextResponse(f"body is not acceptable JSON: {error}", status_code=400)
            if not isinstance(payload, dict):
                return PlainTextResponse("not an event payload", status_code=400)
            if payload.get("type") == "url_verification":
                return JSONResponse({"challenge": str(payload.get("challenge", ""))})
        headers = {key.lower(): value for key, value in request.headers.items()}
        status, text, extra = await self._dispatch(body, headers)
        return PlainTextResponse(text, status_code=status, headers=extra)
