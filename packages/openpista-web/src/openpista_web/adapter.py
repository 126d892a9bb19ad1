"""``WebAdapter``: the web channel, a uvicorn server run inside the daemon's event loop.

One WebSocket connection per browser tab at ``/ws``. The handshake must carry the token
(sub-protocol ``openpista.token.<TOKEN>`` or ``?token=``) and the browser's ``client``
id; anything else is refused before the upgrade (HTTP 403), and an address with too many
wrong tokens is refused (HTTP 429) before any token is compared. Each browser is the chat
``web:<client_id>``. See ``docs/channels/web.md`` for the frames.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from openpista.config import home_dir
from openpista.files import write_private
from openpista.jsonsafe import log_rejected
from openpista.models import AgentResponse, Attachment, ChannelEvent
from openpista_web.app import build_app, too_many_attempts
from openpista_web.auth import SUBPROTOCOL, TOKEN_PREFIX, offered_token, token_matches
from openpista_web.commands import is_command, run_command
from openpista_web.hub import Client, ClientHub
from openpista_web.limiter import AuthFailureLimiter
from openpista_web.protocol import (
    CLIENT_ID,
    ApprovalFrame,
    FrameError,
    Limits,
    MessageFrame,
    PingFrame,
    encode,
    parse_frame,
    response_fields,
)

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from openpista.gateway.gateway import Gateway
    from openpista.serving import EmbeddedServer
    from openpista_web.settings import WebSettings

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "web:"
HISTORY_MESSAGES = 100  # messages of the session shown to a browser that (re)loads
_SECRET_IN_TEXT = re.compile(r"(token=|" + re.escape(TOKEN_PREFIX) + r")[^&\s\"']*")


class RedactTokens:
    """A logging filter that blanks tokens in uvicorn's lines (they log request paths)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRET_IN_TEXT.sub(r"\1***", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_REDACT = RedactTokens()


def _redact_uvicorn_logs() -> None:
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


class WebAdapter:
    """Serves the browser client and its WebSocket; implements ``ChannelAdapter``.

    ``gateway`` (optional) enables ``/session``, ``/clear`` and ``/model`` and the history
    shown after a reload; the gateway serving the adapter sets it.
    """

    name = "web"
    channel_prefix = CHANNEL_PREFIX
    supports_streaming = True

    def __init__(
        self,
        settings: WebSettings,
        token: str,
        *,
        gateway: Gateway | None = None,
        upload_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.hub = ClientHub()
        self.upload_dir = upload_dir or home_dir() / "web" / "uploads"
        self.limits = Limits(
            settings.max_frame_bytes, settings.max_image_bytes, settings.max_attachments
        )
        self.auth_limiter = AuthFailureLimiter(
            settings.max_auth_failures, settings.auth_failure_window
        )
        self._token = token
        self._inbound: asyncio.Queue[ChannelEvent] | None = None
        self._server: EmbeddedServer | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on (useful with ``port = 0``)."""
        if self._server is None:
            raise RuntimeError("the web channel is not started")
        return self._server.port

    @property
    def url(self) -> str:
        """The address of the client, e.g. ``http://127.0.0.1:8765/``."""
        scheme = "https" if self.settings.tls else "http"
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.port}/"

    async def start(self, inbound: asyncio.Queue[ChannelEvent]) -> None:
        """Bind, start uvicorn in this event loop and return once it accepts connections."""
        from openpista.serving import EmbeddedServer, bind_tcp

        self._inbound = inbound
        settings = self.settings
        _redact_uvicorn_logs()
        server = EmbeddedServer(
            build_app(
                settings,
                self._token,
                self._socket_endpoint,
                self.auth_limiter,
                ready=lambda: self.gateway is None or self.gateway.ready,
            ),
            name="the web channel",
            ws_max_size=settings.max_frame_bytes * 4,
            ws_ping_interval=settings.ping_interval,
            ws_ping_timeout=settings.ping_timeout,
            ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
            ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
            proxy_headers=False,
        )
        await server.start(bind_tcp(settings.host, settings.port, option="channels.web.port"))
        self._server = server
        log.info("web channel serves %s (open it with the link of `openpista web link`)", self.url)

    async def wait_closed(self) -> None:
        """Return when stopped; raise when the server ended on its own (the gateway restarts)."""
        if self._server is not None:
            await self._server.wait_closed()

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    # -- outbound -------------------------------------------------------------------------

    async def send(self, response: AgentResponse) -> None:
        """Deliver a response (delta, tool progress, approval or answer) to the browser."""
        client_id = response.channel_id.removeprefix(CHANNEL_PREFIX)
        if response.attachments:
            response = response.model_copy(
                update={"attachments": [self._inline(a) for a in response.attachments]}
            )
        await self.hub.publish(client_id, "response", **response_fields(response))

    def _inline(self, attachment: Attachment) -> Attachment:
        """A file the browser can show: small images on disk are sent inline."""
        if attachment.data or not attachment.path or not attachment.is_image:
            return attachment
        path = Path(attachment.path)
        try:
            if path.stat().st_size > self.settings.max_image_bytes:
                return attachment
            data = base64.b64encode(path.read_bytes()).decode()
        except OSError:
            return attachment
        return attachment.model_copy(update={"data": data})

    # -- the socket -----------------------------------------------------------------------

    async def _socket_endpoint(self, websocket: WebSocket) -> None:
        host = websocket.client.host if websocket.client else None
        wait = self.auth_limiter.retry_after(host)
        if wait:  # too many wrong tokens from there: no token is even compared
            await websocket.send_denial_response(too_many_attempts(wait))
            return
        offered = list(websocket.scope.get("subprotocols", []))
        token = offered_token(offered, websocket.query_params.get("token"))
        client_id = websocket.query_params.get("client", "")
        token_ok = token_matches(token, self._token)
        if not token_ok:
            self.auth_limiter.failed(host)
        if not token_ok or not self._origin_allowed(websocket) or not CLIENT_ID.match(client_id):
            await websocket.close(code=4401)  # before accept: uvicorn answers HTTP 403
            return
        await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        client = self.hub.attach(client_id, websocket)
        try:
            await self._greet(websocket, client)
            await self._receive_loop(websocket, client)
        finally:
            self.hub.detach(client_id, websocket)

    def _origin_allowed(self, websocket: WebSocket) -> bool:
        """Same-origin pages, ``cors_origins`` and non-browser clients (no Origin) may connect."""
        origin = websocket.headers.get("origin")
        allowed = self.settings.cors_origins
        if origin is None or "*" in allowed or origin in allowed:
            return True
        return urlsplit(origin).netloc == websocket.headers.get("host")

    async def _greet(self, websocket: WebSocket, client: Client) -> None:
        channel_id = CHANNEL_PREFIX + client.id
        session_id = await self._session_of(channel_id)
        params = websocket.query_params
        try:
            since = int(params.get("since", "0"))
        except ValueError:
            since = 0
        hello = encode(
            "hello",
            client_id=client.id,
            channel_id=channel_id,
            session_id=session_id,
            epoch=self.hub.epoch,
            seq=client.seq,
            max_frame_bytes=self.settings.max_frame_bytes,
            max_image_bytes=self.settings.max_image_bytes,
            max_attachments=self.settings.max_attachments,
            commands=self.gateway is not None,
        )
        await self.hub.send(client, websocket, hello)
        missed = self.hub.missed(client, params.get("epoch"), since) if since else None
        if missed is not None:
            for frame in missed:
                await self.hub.send(client, websocket, frame)
            return
        history = await self._history(session_id)
        await self.hub.send(client, websocket, encode("history", seq=client.seq, **history))

    async def _receive_loop(self, websocket: WebSocket, client: Client) -> None:
        """Frames until the client leaves. Liveness is uvicorn's: it pings every
        ``ping_interval`` and closes a connection whose pong is ``ping_timeout`` late (1011),
        so a client that answers protocol pings needs no app-level ``ping`` of its own."""
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            try:
                frame = parse_frame(raw, self.limits)
            except FrameError as exc:
                log_rejected(log, "web channel", exc)
                await self.hub.send(client, websocket, encode("error", message=str(exc)))
                continue
            await self._handle(websocket, client, frame)

    async def _handle(
        self, websocket: WebSocket, client: Client, frame: MessageFrame | ApprovalFrame | PingFrame
    ) -> None:
        channel_id = CHANNEL_PREFIX + client.id
        if isinstance(frame, PingFrame):
            await self.hub.send(client, websocket, encode("pong"))
            return
        if isinstance(frame, ApprovalFrame):
            await self._decide(client, frame)
            return
        if is_command(frame.text) and not frame.attachments:
            result = await run_command(self.gateway, channel_id, frame.text)
            await self.hub.publish(client.id, "notice", text=result.text, is_error=result.is_error)
            if result.session_id is not None:
                history = await self._history(result.session_id)
                await self.hub.publish(client.id, "session", **history)
            return
        attachments = list(self._save_uploads(client.id, frame))
        await self._submit(
            ChannelEvent(
                channel_id=channel_id,
                sender=client.id,
                text=frame.text,
                attachments=attachments,
                metadata={"client_id": client.id},
            )
        )

    async def _decide(self, client: Client, frame: ApprovalFrame) -> None:
        """Answer an approval request: the broker's verdict comes back as one ``decision``
        frame (the button's confirmation), not as a chat message. Without a broker at hand,
        the answer goes to the gateway as ``/approve ID`` or ``/deny ID`` text."""
        channel_id = CHANNEL_PREFIX + client.id
        broker = self.gateway.approvals if self.gateway is not None else None
        if broker is None:
            await self._submit(
                ChannelEvent(channel_id=channel_id, sender=client.id, text=frame.as_text())
            )
            return
        waiting = broker.is_pending(channel_id, frame.id)
        reply = broker.answer(channel_id, frame.as_text()) or ""
        await self.hub.publish(
            client.id,
            "decision",
            id=frame.id,
            approve=frame.approve,
            ok=waiting,
            text=reply,
        )

    async def _submit(self, event: ChannelEvent) -> None:
        if self._inbound is None:
            raise RuntimeError("the web channel is not started")
        await self._inbound.put(event)

    def _save_uploads(self, client_id: str, frame: MessageFrame) -> Iterator[Attachment]:
        """Keep each image on disk (tools can open it) and inline (the LLM sees it)."""
        folder = self.upload_dir / client_id
        for attachment, data in zip(frame.attachments, frame.images, strict=True):
            path = folder / f"{uuid.uuid4().hex[:12]}-{attachment.name}"
            write_private(path, data)
            yield attachment.model_copy(update={"path": str(path)})

    # -- sessions -------------------------------------------------------------------------

    async def _session_of(self, channel_id: str) -> str | None:
        if self.gateway is None:
            return None
        return await self.gateway.router.session_for(channel_id)

    async def _history(self, session_id: str | None) -> dict[str, Any]:
        """``{"session_id", "messages"}``: the user and assistant messages of the session."""
        messages: list[dict[str, Any]] = []
        if self.gateway is not None and session_id is not None:
            from openpista.memory.store import SessionNotFoundError

            try:
                stored = await self.gateway.runtime.memory.load_messages(session_id)
            except SessionNotFoundError:
                stored = []
            for message in stored:
                if message.role in ("user", "assistant") and message.content.strip():
                    messages.append({"role": message.role, "text": message.content})
        return {"session_id": session_id, "messages": messages[-HISTORY_MESSAGES:]}
