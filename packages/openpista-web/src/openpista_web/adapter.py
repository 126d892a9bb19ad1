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
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from openpista import redacting_filter
from openpista.channels import Capabilities, ChannelAdapter, ChannelContext
from openpista.config import home_dir
from openpista.files import write_private
from openpista.jsonsafe import log_rejected
from openpista.models import Answer, Attachment, ChannelEvent, Outbound
from openpista.worker_service import worker_feed
from openpista_web.app import MetricsMount, build_app, too_many_attempts
from openpista_web.auth import SUBPROTOCOL, TOKEN_PREFIX, offered_token, token_matches
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

    from openpista.serving import EmbeddedServer
    from openpista_web.settings import WebSettings

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "web:"
HISTORY_MESSAGES = 100  # messages of the session shown to a browser that (re)loads
WORKER_FIELDS = ("task_id", "event", "session_id", "percent", "log", "exit_code", "at")
"""What a ``worker`` frame carries of a worker event (not its output)."""


_UVICORN_LOGGERS = ("uvicorn.error", "uvicorn.access")  # they log request paths and headers


class WebAdapter(ChannelAdapter):
    """Serves the browser client and its WebSocket (a :class:`ChannelAdapter`).

    Slash commands are answered as ``notice`` frames (``/session`` and ``/clear`` also send
    the chat's new ``session``), and a (re)loaded page is shown its session's history.
    """

    name = "web"
    channel_prefix = CHANNEL_PREFIX
    capabilities = Capabilities(streaming=True, files=True, buttons=True)

    def __init__(
        self,
        settings: WebSettings,
        token: str,
        *,
        upload_dir: Path | None = None,
        metrics: MetricsMount | None = None,
    ) -> None:
        self.settings = settings
        self.hub = ClientHub()
        self.upload_dir = upload_dir or home_dir() / "web" / "uploads"
        self.media_dir = self.upload_dir  # in a cluster its uploads go where the turn runs
        self.max_media_bytes = settings.max_image_bytes
        self.limits = Limits(
            settings.max_frame_bytes, settings.max_image_bytes, settings.max_attachments
        )
        self.auth_limiter = AuthFailureLimiter(
            settings.max_auth_failures, settings.auth_failure_window
        )
        self._token = token
        self._redact = redacting_filter(token, after=[TOKEN_PREFIX])
        self._metrics = metrics
        self._ctx: ChannelContext | None = None
        self._server: EmbeddedServer | None = None
        self._workers: asyncio.Task[None] | None = None

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

    async def start(self, ctx: ChannelContext) -> None:
        """Bind, start uvicorn in this event loop and return once it accepts connections."""
        from openpista.serving import EmbeddedServer, bind_tcp

        self._ctx = ctx
        settings = self.settings
        for name in _UVICORN_LOGGERS:
            logging.getLogger(name).addFilter(self._redact)
        server = EmbeddedServer(
            build_app(
                settings,
                self._token,
                self._socket_endpoint,
                self.auth_limiter,
                ready=lambda: ctx.ready,
                metrics=(ctx.metrics, self._metrics.token) if self._metrics else None,
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
        self._workers = asyncio.create_task(self._forward_workers())
        log.info("web channel serves %s (open it with the link of `openpista web link`)", self.url)

    async def wait_closed(self) -> None:
        """Return when stopped; raise when the server ended on its own (the gateway restarts)."""
        if self._server is not None:
            await self._server.wait_closed()

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.cancel()
            await asyncio.gather(workers, return_exceptions=True)
        server, self._server = self._server, None
        if server is not None:
            await server.stop()
        for name in _UVICORN_LOGGERS:
            logging.getLogger(name).removeFilter(self._redact)

    # -- outbound -------------------------------------------------------------------------

    async def send(self, message: Outbound) -> None:
        """Deliver a message (chunk, tool progress, approval or answer) to the browser."""
        client_id = message.channel_id.removeprefix(CHANNEL_PREFIX)
        if isinstance(message, Answer) and message.attachments:
            message = message.model_copy(
                update={"attachments": [self._inline(a) for a in message.attachments]}
            )
        await self.hub.publish(client_id, "response", **response_fields(message))

    async def _forward_workers(self) -> None:
        """Send each browser the worker events of the tasks its chat started (``worker``
        frames: the page shows them in the conversation)."""
        feed = worker_feed()
        queue = feed.subscribe()
        try:
            while True:
                event = await queue.get()
                channel_id = str(event.get("channel_id", ""))
                if not channel_id.startswith(CHANNEL_PREFIX):
                    continue
                fields = {k: event.get(k) for k in WORKER_FIELDS}
                try:
                    await self.hub.publish(
                        channel_id.removeprefix(CHANNEL_PREFIX), "worker", **fields
                    )
                except Exception:  # one browser's trouble stops no other's feed
                    log.exception("web: a worker event was not sent")
        finally:
            feed.unsubscribe(queue)

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
        session_id = await self._context.session_for(channel_id)
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
        )
        await self.hub.send(client, websocket, hello)
        missed = self.hub.missed(client, params.get("epoch"), since) if since else None
        if missed is not None:
            for frame in missed:
                await self.hub.send(client, websocket, frame)
            return
        history = await self._history(channel_id)
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
        ctx = self._context
        reply = None if frame.attachments else await ctx.run_command(channel_id, frame.text)
        if reply is not None:
            await self.hub.publish(client.id, "notice", text=reply.text, is_error=reply.is_error)
            if reply.session_id is not None:
                await self.hub.publish(client.id, "session", **await self._history(channel_id))
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
        """Answer an approval request (``/approve ID`` or ``/deny ID``): the verdict comes
        back as one ``decision`` frame (the button's confirmation), not as a chat message.
        A context that runs no commands gets the answer as a message instead."""
        channel_id = CHANNEL_PREFIX + client.id
        ctx = self._context
        waiting = ctx.approval_pending(channel_id, frame.id)
        reply = await ctx.run_command(channel_id, frame.as_text())
        if reply is None:
            await self._submit(
                ChannelEvent(channel_id=channel_id, sender=client.id, text=frame.as_text())
            )
            return
        await self.hub.publish(
            client.id,
            "decision",
            id=frame.id,
            approve=frame.approve,
            ok=waiting,
            text=reply.text,
        )

    @property
    def _context(self) -> ChannelContext:
        if self._ctx is None:
            raise RuntimeError("the web channel is not started")
        return self._ctx

    async def _submit(self, event: ChannelEvent) -> None:
        await self._context.submit(event)

    def _save_uploads(self, client_id: str, frame: MessageFrame) -> Iterator[Attachment]:
        """Keep each image on disk (tools can open it) and inline (the LLM sees it)."""
        folder = self.upload_dir / client_id
        for attachment, data in zip(frame.attachments, frame.images, strict=True):
            path = folder / f"{uuid.uuid4().hex[:12]}-{attachment.name}"
            write_private(path, data)
            yield attachment.model_copy(update={"path": str(path)})

    # -- sessions -------------------------------------------------------------------------

    async def _history(self, channel_id: str) -> dict[str, Any]:
        """``{"session_id", "messages"}``: the chat's session and what it shows."""
        ctx = self._context
        shown = await ctx.history(channel_id, HISTORY_MESSAGES)
        return {
            "session_id": await ctx.session_for(channel_id),
            "messages": [{"role": m.role, "text": m.content} for m in shown],
        }
