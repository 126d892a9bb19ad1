"""The ``mobile`` channel: the QUIC endpoint as a gateway adapter (channel ``mobile:{device}``).

Answers find their stream by channel id: the turns of one session run one at a time, in
the order their messages arrived, so every response of ``mobile:{device}`` belongs to the
oldest request of that device still waiting (first in, first out); the final response
ends that request's stream. ``/approve`` and ``/deny`` messages are answered at once by
the gateway, outside that order, so they wait in a queue of their own.

An answer whose stream is gone (its connection closed, or the client reset the stream)
or that answers no request of this device at all (a ``[[cron]]`` entry whose channel is
``mobile:{device}``) is *pushed*: its final response, or an approval request, goes to
every live connection of the device; with none, it waits in a small per-device outbox
(``outbox_size``, kept on disk: :mod:`openpista_mobile.outbox`) delivered after the device's
next authentication, also after a restart of the daemon. Deltas
(text chunks, tool progress) are never pushed: the final response holds the whole text.

On the wire every message is the gateway's outbound message as JSON
(``model_dump(mode="json")``, its ``kind`` telling which), in a ``response`` or ``push``
frame; clients read it back with :func:`~openpista.models.parse_outbound`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import sys
import uuid
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from openpista.channels import Capabilities, ChannelAdapter, ChannelContext
from openpista.config import ConfigError
from openpista.models import Answer, Attachment, ChannelEvent, Outbound, TextChunk, ToolProgress
from openpista_mobile.certs import load_or_create, state_dir
from openpista_mobile.outbox import Outbox
from openpista_mobile.protocol import ErrorCode, FrameError, error_frame
from openpista_mobile.server import QuicServer, ServerOptions
from openpista_mobile.session import MessageRequest, ResponseStream
from openpista_mobile.settings import TOKEN_ENV, MobileSettings, TokenBook

if TYPE_CHECKING:
    from openpista.config import Settings

log = logging.getLogger(__name__)

PREFIX = "mobile:"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def channel_id(device_id: str) -> str:
    """The channel id of a device: the same on every connection, so its session survives."""
    return f"{PREFIX}{device_id}"


class MobileAdapter(ChannelAdapter):
    """Serves mobile clients (and sandbox workers) over QUIC."""

    name = "mobile"
    channel_prefix = PREFIX
    capabilities = Capabilities(streaming=True, files=True, buttons=True)

    def __init__(self, settings: MobileSettings) -> None:
        self.settings = settings
        self.media_dir = state_dir() / "uploads"  # in a cluster its files go where turns run
        self.max_media_bytes = settings.max_frame_bytes
        self.tokens = TokenBook(settings.token_table())
        self.server: QuicServer | None = None
        self.fingerprint = ""
        self._ctx: ChannelContext | None = None
        # The stream awaiting each request's answers, by (channel id, request id).
        self._streams: dict[tuple[str, str], ResponseStream] = {}
        self._outbox: Outbox | None = None  # pushes waiting for a device (after start)

    @property
    def port(self) -> int:
        """The bound UDP port."""
        if self.server is None:
            raise RuntimeError("the mobile channel is not running")
        return self.server.port

    async def start(self, ctx: ChannelContext) -> None:
        """Load (or make) the certificate and serve; returns once the socket is bound."""
        self._ctx = ctx
        certificate = await asyncio.to_thread(load_or_create, self.settings.cert, self.settings.key)
        self._outbox = await asyncio.to_thread(
            Outbox, state_dir() / "outbox.json", self.settings.outbox_size, self.tokens.knows
        )
        self.fingerprint = certificate.fingerprint
        options = ServerOptions(
            host=self.settings.host,
            port=self.settings.port,
            cert=str(certificate.cert),
            key=str(certificate.key),
            tokens=self.tokens,
            max_frame_bytes=self.settings.max_frame_bytes,
            max_streams=self.settings.max_streams,
            idle_timeout=self.settings.idle_timeout,
            replay_window=self.settings.replay_window,
            auth_timeout=self.settings.auth_timeout,
            max_unauthenticated_connections=self.settings.max_unauthenticated_connections,
            max_unauthenticated_bytes=self.settings.max_unauthenticated_bytes,
        )
        server = QuicServer(options, self._on_message, self._deliver_outbox)
        await server.start()
        self.server = server
        notice = (
            f"mobile: QUIC on udp {self.settings.host}:{server.port} for "
            f"{len(self.tokens)} device(s); certificate SHA-256 {certificate.fingerprint}"
        )
        log.info("%s", notice)
        print(notice, file=sys.stderr, flush=True)

    async def stop(self) -> None:
        """Close every connection and the socket."""
        server, self.server = self.server, None
        if server is not None:
            await server.close()
        self._streams.clear()

    async def send(self, message: Outbound) -> None:
        """Send ``message`` on the stream of the request it answers (its ``request_id``),
        else push it to the device (answers and approval prompts only)."""
        channel = message.channel_id
        key = (channel, message.request_id or "")
        final = isinstance(message, Answer)
        stream = self._streams.pop(key, None) if final else self._streams.get(key)
        frame = {"type": "response", **message.model_dump(mode="json")}
        if stream is not None and stream.send(frame, end=final):
            return
        if isinstance(message, TextChunk | ToolProgress):
            log.debug(
                "mobile: no stream of %s awaits this delta; the final answer is pushed", channel
            )
            return
        self._push(channel.removeprefix(PREFIX), message)

    def _push(self, device: str, message: Outbound) -> None:
        """Push ``message`` to the live connections of ``device``, else keep it for later."""
        if not self.tokens.knows(device):
            log.warning("mobile: no device %r is configured; an answer for it is dropped", device)
            return
        outbox = self._outbox
        if outbox is None:
            log.warning("mobile: the channel is not running; an answer for %s is dropped", device)
            return
        number = outbox.next_number(device)
        frame = {"type": "push", "seq": number, "response": message.model_dump(mode="json")}
        if self.server is not None and self.server.push(device, [frame]):
            log.info("mobile: pushed answer %d to device %s", number, device)
            return
        if self.settings.outbox_size == 0:
            log.info("mobile: device %s is offline and outbox_size = 0; push dropped", device)
            return
        dropped = outbox.keep(device, frame)
        if dropped is not None:
            log.warning(
                "mobile: the outbox of device %s is full (%d); dropped its oldest push %d",
                device,
                self.settings.outbox_size,
                dropped["seq"],
            )
        log.info("mobile: device %s is offline; push %d kept in its outbox", device, number)

    def _deliver_outbox(self, device: str) -> None:
        """A connection of ``device`` authenticated: push what waited, oldest first, on
        one stream (so that it arrives in order)."""
        outbox = self._outbox
        waiting = outbox.waiting(device) if outbox is not None else []
        if not waiting or self.server is None or not self.server.push(device, waiting):
            return
        assert outbox is not None  # noqa: S101  an invariant for mypy, not a check
        outbox.delivered(device)
        log.info("mobile: delivered %d waiting push(es) to device %s", len(waiting), device)

    async def _on_message(self, request: MessageRequest) -> None:
        ctx = self._ctx
        if ctx is None:
            request.stream.finish(error_frame(ErrorCode.UNAVAILABLE, "the channel is stopping"))
            return
        try:
            attachments = [_save(request.device_id, a) for a in request.frame.attachments]
        except FrameError as exc:
            request.stream.finish(exc.frame())
            return
        channel = channel_id(request.device_id)
        # The gateway copies request_id onto every answer; the client's own id when it gave one.
        request_id = request.frame.request_id or f"server-{uuid.uuid4().hex}"
        metadata: dict[str, Any] = {"early_data": request.early, "request_id": request_id}
        event = ChannelEvent(
            channel_id=channel,
            sender=request.device_id,
            text=request.frame.text,
            attachments=attachments,
            metadata=metadata,
        )
        self._streams[(channel, request_id)] = request.stream
        await ctx.submit(event)


def _save(device_id: str, attachment: Attachment) -> Attachment:
    """Store an uploaded file under ``<home>/mobile/uploads/<device>/`` and name it there."""
    if attachment.path is not None:
        raise FrameError(ErrorCode.BAD_FRAME, "attachments carry data or a url, never a path")
    if attachment.data is None:
        if attachment.url is None:
            raise FrameError(ErrorCode.BAD_FRAME, "an attachment needs data or a url")
        return attachment
    try:
        content = base64.b64decode(attachment.data, validate=True)
    except (binascii.Error, ValueError):
        raise FrameError(ErrorCode.BAD_FRAME, "attachment data is not base64") from None
    folder = state_dir() / "uploads" / device_id
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = _UNSAFE.sub("_", PurePosixPath(attachment.name).name).lstrip(".")[-80:] or "file"
    path = folder / f"{uuid.uuid4().hex[:12]}-{name}"
    path.write_bytes(content)
    return attachment.model_copy(
        update={"path": str(path), "data": attachment.data if attachment.is_image else None}
    )


def create_mobile_adapter(settings: MobileSettings, config: Settings) -> MobileAdapter:
    """The ``[channels.mobile]`` factory, handed its options validated by core."""
    adapter = MobileAdapter(settings)
    if not len(adapter.tokens):
        raise ConfigError(
            '[channels.mobile]: no device may connect: add tokens = { phone = "..." } '
            f"(make a token with: openssl rand -hex 16) or set {TOKEN_ENV}"
        )
    return adapter
