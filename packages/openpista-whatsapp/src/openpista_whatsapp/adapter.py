"""The WhatsApp channel: Meta's signed webhook in, the Graph API out.

Channel ids are ``whatsapp:{sender}`` (the sender's number as WhatsApp gives it: digits
only) when one business number is configured, and ``whatsapp:{phone_number_id}:{sender}``
when there are several, so that the same person writing to two numbers has two
conversations and every reply goes out from the number the message arrived on.

The webhook (starlette on uvicorn, in the daemon's event loop) checks the size, then the
``X-Hub-Signature-256`` signature of the raw body, then parses
(:func:`openpista.jsonsafe.loads`: malformed or too deeply nested JSON is a 400), then
handles the POST's messages in order (media downloads, access checks, ``ctx.submit``) and
answers ``200 EVENT_RECEIVED`` only once each was submitted (in a cluster: stored) or needed
no event. A submit that fails, or handling not done within ``webhook_answer_timeout``
seconds, is answered 503 with one log line, and Meta delivers the POST again: a message
submitted meanwhile is not submitted twice, one still being handled (a slow download goes
on) is waited for again, a failed one is handled anew. Each event carries the message's
``wamid`` as ``delivery_id`` (core drops a second copy, e.g. the retry reaching another
replica).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openpista import jsonsafe
from openpista.access import PAIRED, PAIRING_FAILED, REFUSAL, AccessControl, PairingBook
from openpista.channels import Capabilities, ChannelAdapter, ChannelContext
from openpista.config import home_dir
from openpista.models import (
    ERROR_PREFIX,
    Answer,
    ApprovalPrompt,
    Attachment,
    ChannelEvent,
    Outbound,
)
from openpista_whatsapp.graph import GraphClient, GraphError
from openpista_whatsapp.media import attachment_message, fetch_attachment
from openpista_whatsapp.messages import (
    TEXT_LIMIT,
    approval_message,
    template_message,
    text_message,
)
from openpista_whatsapp.notices import OperatorNotices
from openpista_whatsapp.payload import (
    Delivery,
    Inbound,
    ReportedError,
    Status,
    parse_webhook,
)
from openpista_whatsapp.settings import WhatsAppSettings, checked
from openpista_whatsapp.signature import HEADER, verify
from openpista_whatsapp.state import ConversationWindows, StatusLog, TtlSet

if TYPE_CHECKING:
    import httpx
    from starlette.requests import Request
    from starlette.responses import Response

    from openpista.config import Settings
    from openpista.serving import EmbeddedServer

log = logging.getLogger(__name__)

PREFIX = "whatsapp:"


class WhatsAppAdapter(ChannelAdapter):
    """Serves Meta's webhook for every configured business number and answers through the
    Graph API. ``state_dir`` (default ``<home>/whatsapp``) holds media, windows, statuses;
    ``transport`` replaces httpx's network transport (tests). Notices about failed sends go
    to ``operator_channel`` (any channel) through the context, when that is configured."""

    name = "whatsapp"
    channel_prefix = PREFIX
    replies_anywhere = True  # its API answers a chat from any replica
    capabilities = Capabilities(files=True, buttons=True, max_message_length=TEXT_LIMIT)

    def __init__(
        self,
        config: WhatsAppSettings,
        *,
        state_dir: Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.numbers = [n.phone_number_id for n in config.numbers]
        self.state_dir = state_dir or home_dir() / "whatsapp"
        self.media_dir: Path = self.state_dir / "media"  # in a cluster: go where the turn runs
        self.max_media_bytes = config.max_media_bytes
        self.access = AccessControl(
            "whatsapp",
            config.allowed_numbers,
            open_to_all=config.open_to_all,
            pairing=PairingBook("whatsapp", self.state_dir.parent / "access" / "whatsapp.json"),
        )
        self.seen = TtlSet(config.dedup_size, config.dedup_ttl)
        self.refused = TtlSet(config.dedup_size, config.refusal_interval)
        self.windows = ConversationWindows(self.state_dir / "windows.json")
        self.statuses = StatusLog(self.state_dir / "statuses.jsonl")
        self.notices = OperatorNotices(config.operator_channel) if config.operator_channel else None
        self.port: int | None = None
        self._transport = transport
        self._graph: GraphClient | None = None
        self._ctx: ChannelContext | None = None
        self._server: EmbeddedServer | None = None
        self._work: set[asyncio.Task[None]] = set()
        self._handling: dict[str, asyncio.Task[None]] = {}  # message key -> its handling
        self._stopping = False

    # -- channel ids ----------------------------------------------------------------------

    def channel_id(self, phone_number_id: str, sender: str) -> str:
        """The channel id of ``sender``'s conversation with ``phone_number_id``."""
        if len(self.numbers) > 1:
            return f"{PREFIX}{phone_number_id}:{sender}"
        return f"{PREFIX}{sender}"

    def route(self, channel_id: str) -> tuple[str, str]:
        """``(phone_number_id, recipient)`` of a channel id; :class:`ValueError` if invalid.

        ``whatsapp:{recipient}`` goes out from the first configured number.
        """
        if not channel_id.startswith(PREFIX):
            raise ValueError(f"{channel_id!r} is not a WhatsApp channel id")
        parts = channel_id[len(PREFIX) :].split(":")
        number, recipient = (self.numbers[0], parts[0]) if len(parts) == 1 else parts[:2]
        if len(parts) > 2 or number not in self.numbers:
            raise ValueError(f"{channel_id!r}: no configured phone number id {number!r}")
        if not recipient.isdigit():
            raise ValueError(f"{channel_id!r}: {recipient!r} is not a phone number")
        return number, recipient

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, ctx: ChannelContext) -> None:
        """Listen for the webhook; returns once it accepts connections (see :attr:`port`)."""
        from openpista.serving import EmbeddedServer, bind_tcp

        self._ctx = ctx
        self._stopping = False
        self._graph = GraphClient(self.config, self._transport)
        host, port = self.config.webhook_host, self.config.webhook_port
        server = EmbeddedServer(self.asgi_app(), name="whatsapp webhook", grace=1)
        try:
            await server.start(
                bind_tcp(host, port, option="channels.whatsapp.webhook_host / webhook_port")
            )
        except (OSError, RuntimeError) as exc:
            await self._graph.close()
            raise RuntimeError(f"whatsapp: {exc}") from None
        self._server, self.port = server, server.port
        log.info(
            "whatsapp: webhook on %s:%d%s for %d number(s)",
            host,
            self.port,
            self.config.webhook_path,
            len(self.numbers),
        )

    async def wait_closed(self) -> None:
        """Return when :meth:`stop` ends the server; raise when it died on its own."""
        if self._server is not None:
            await self._server.wait_closed()

    async def stop(self) -> None:
        """Stop the webhook, cancel unfinished background work, close the HTTP client."""
        self._stopping = True
        if self._server is not None:
            await self._server.stop()
        for task in list(self._work):
            task.cancel()
        await asyncio.gather(*self._work, return_exceptions=True)
        if self._graph is not None:
            await self._graph.close()
        self._server = self._graph = None

    # -- webhook --------------------------------------------------------------------------

    def asgi_app(self) -> Any:
        """The starlette application of the webhook (``GET``/``POST`` on ``webhook_path``)."""
        from starlette.applications import Starlette
        from starlette.routing import Route

        path = self.config.webhook_path
        return Starlette(
            routes=[
                Route(path, self._verify_subscription, methods=["GET"]),
                Route(path, self._receive, methods=["POST"]),
            ]
        )

    async def _verify_subscription(self, request: Request) -> Response:
        from starlette.responses import PlainTextResponse

        query = request.query_params
        token = query.get("hub.verify_token", "")
        challenge = query.get("hub.challenge", "")
        expected = self.config.secret("verify_token")
        if (
            query.get("hub.mode") == "subscribe"
            and challenge
            and hmac.compare_digest(token.encode(), expected.encode())
        ):
            log.info("whatsapp: webhook subscription verified")
            return PlainTextResponse(challenge[:256])
        log.warning("whatsapp: webhook verification refused (wrong mode or verify token)")
        return PlainTextResponse("verification failed", status_code=403)

    async def _receive(self, request: Request) -> Response:
        from starlette.responses import PlainTextResponse

        from openpista.serving import BodyTooLargeError, read_body

        limit = self.config.max_body_bytes
        try:
            body = await read_body(request, limit)
        except BodyTooLargeError as exc:
            return PlainTextResponse(str(exc), status_code=413)
        signature = request.headers.get(HEADER)
        if not signature:
            log.warning("whatsapp: webhook POST without %s refused", HEADER)
            return PlainTextResponse(f"missing {HEADER}", status_code=401)
        if not verify(body, signature, self.config.secret("app_secret")):
            log.warning("whatsapp: webhook POST with a wrong signature refused")
            return PlainTextResponse("invalid signature", status_code=403)
        try:
            data = jsonsafe.loads(body, max_bytes=limit)
        except jsonsafe.JsonInputError as error:
            jsonsafe.log_rejected(log, "whatsapp webhook", error)
            return PlainTextResponse(f"body is not acceptable JSON: {error}", status_code=400)
        delivery = parse_webhook(data)
        for reason in delivery.ignored:
            log.warning("whatsapp: ignored %s", reason)
        if delivery.messages or delivery.statuses or delivery.errors:
            processing = self._background(self._process(delivery))
            timeout = self.config.webhook_answer_timeout
            try:
                await asyncio.wait_for(asyncio.shield(processing), timeout)
            except _NotStoredError:  # logged for each message
                return PlainTextResponse("not stored, send again", status_code=503)
            except TimeoutError:  # the handling goes on: the retry waits for it again
                log.warning(
                    "whatsapp: a webhook POST not handled within %g s; asking Meta to send it "
                    "again",
                    timeout,
                )
                return PlainTextResponse("not handled yet, send again", status_code=503)
        return PlainTextResponse("EVENT_RECEIVED")

    def _background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """``work`` as a task that :meth:`stop` cancels; its failure is retrieved here (it
        was logged where it happened)."""
        task = asyncio.create_task(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        return task

    # -- incoming -------------------------------------------------------------------------

    async def _process(self, delivery: Delivery) -> None:
        """Errors, statuses, then each message in order; raises :class:`_NotStoredError`
        (after the others were handled) when a message's event could not be submitted."""
        for error in delivery.errors:
            await self._report_error(error)
        for status in delivery.statuses:
            self._record_status(status)
        failed = None
        for message in delivery.messages:
            try:
                await asyncio.shield(self._handling_of(message))
            except _NotStoredError as exc:
                failed = exc
        if failed is not None:
            raise failed

    def _handling_of(self, message: Inbound) -> asyncio.Task[None]:
        """The handling of ``message``: the one under way if it was delivered before and
        is not done yet, else a new one (which skips a message handled before)."""
        key = f"{message.phone_number_id}:{message.message_id}"
        task = self._handling.get(key)
        if task is None:
            task = self._background(self._handle_once(key, message))
            self._handling[key] = task
            task.add_done_callback(self._handled)
        return task

    def _handled(self, task: asyncio.Task[None]) -> None:
        for key, handling in list(self._handling.items()):
            if handling is task:
                del self._handling[key]

    async def _handle_once(self, key: str, message: Inbound) -> None:
        if not self.seen.add(key):
            log.info("whatsapp: duplicate delivery of %s ignored", message.message_id)
            return
        try:
            await self._handle(message)
        except _NotStoredError as exc:
            self.seen.discard(key)  # Meta delivers it again: handled anew
            log.warning(
                "whatsapp: message %s not stored (%s); asking Meta to send it again",
                message.message_id,
                exc,
            )
            raise
        except asyncio.CancelledError:
            self.seen.discard(key)
            raise
        except Exception:  # one bad message must not stop the others; never resent
            log.exception("whatsapp: failed to handle message %s", message.message_id)

    async def _report_error(self, error: ReportedError) -> None:
        """Log a system-level error Meta reported, and tell ``operator_channel`` (at most one
        notice per minute per error code)."""
        code = "?" if error.code is None else str(error.code)
        details = f": {error.details}" if error.details else ""
        where = f" for number {error.phone_number_id}" if error.phone_number_id else ""
        log.error("whatsapp: Meta reports error %s%s: %s%s", code, where, error.title, details)
        await self._notify(
            f"meta-{code}", f"Meta reports error {code}{where}: {error.title}{details}"
        )

    def _record_status(self, status: Status) -> None:
        self.statuses.append(
            {
                "phone_number_id": status.phone_number_id,
                "message_id": status.message_id,
                "status": status.status,
                "recipient": status.recipient,
                "timestamp": status.timestamp,
                "errors": status.errors,
            }
        )
        if status.status == "failed":
            reasons = "; ".join(
                f"{e.get('code')} {e.get('title') or e.get('message') or ''}".strip()
                for e in status.errors
            )
            log.error(
                "whatsapp: message %s to %s failed: %s",
                status.message_id,
                status.recipient,
                reasons or "no reason given",
            )

    async def _handle(self, message: Inbound) -> None:
        number, sender = message.phone_number_id, message.sender
        if number not in self.numbers:
            log.warning("whatsapp: message for unconfigured phone number id %s ignored", number)
            return
        if message.kind != "reaction":
            self.windows.user_wrote(number, sender, message.timestamp)
        if not self.access.is_allowed(sender):
            await self._refuse(message)
            return
        if message.kind == "reaction":
            log.info("whatsapp: %s %s", sender, message.text)
            return
        text, attachments = message.text, []
        if message.media is not None:
            try:
                attachments.append(await self._fetch(message))
            except (GraphError, OSError) as exc:
                log.error("whatsapp: cannot fetch %s %s: %s", message.kind, message.media.id, exc)
                text += f"\n({message.kind} could not be downloaded: {exc})"
        metadata = {
            "phone_number_id": number,
            "message_id": message.message_id,
            "type": message.kind,
            "name": message.name,
            "reply_id": message.reply_id,
            "context_id": message.context_id,
        }
        event = ChannelEvent(
            channel_id=self.channel_id(number, sender),
            sender=sender,
            text=text,
            attachments=attachments,
            metadata={k: v for k, v in metadata.items() if v is not None},
            delivery_id=message.message_id,
        )
        assert self._ctx is not None  # noqa: S101  an invariant for mypy, not a check
        try:
            await self._ctx.submit(event)
        except Exception as exc:
            raise _NotStoredError(f"{type(exc).__name__}: {exc}") from exc

    async def _fetch(self, message: Inbound) -> Attachment:
        assert self._graph is not None  # noqa: S101  an invariant for mypy, not a check
        assert message.media is not None  # noqa: S101  an invariant for mypy, not a check
        folder = self.media_dir
        return await fetch_attachment(self._graph, self.config, message, message.media, folder)

    async def _refuse(self, message: Inbound) -> None:
        paired = self.access.try_pair(message.sender, message.text)
        if paired is None:
            log.warning("whatsapp: message from unknown number %s refused", message.sender)
            if not self.refused.add(f"{message.phone_number_id}:{message.sender}"):
                return
            reply = REFUSAL
        else:
            reply = PAIRED if paired else PAIRING_FAILED
        await self._send_all(
            message.phone_number_id, message.sender, [text_message(message.sender, reply)]
        )

    # -- outgoing -------------------------------------------------------------------------

    async def send(self, message: Outbound) -> None:
        """Deliver a final answer, an approval request (buttons) and attachments.

        Outside the 24-hour window only the configured template may be sent; failures are
        logged with Meta's error code and never raised to the gateway.
        """
        if not isinstance(message, Answer | ApprovalPrompt):
            return  # progress: WhatsApp shows whole messages
        try:
            number, to = self.route(message.channel_id)
        except ValueError as exc:
            log.error("whatsapp: answer dropped: %s", exc)
            return
        text = message.request.prompt() if isinstance(message, ApprovalPrompt) else message.text
        if not self.windows.is_open(number, to):
            await self._send_template(number, to, text)
            return
        messages: list[dict[str, Any]] = []
        if isinstance(message, ApprovalPrompt):
            await self._send_all(number, to, [approval_message(to, message.request)])
            return
        if text.strip():
            messages.append(text_message(to, text.strip()))  # the gateway cut it to TEXT_LIMIT
        for attachment in message.attachments:
            try:
                messages.append(await self._attachment(number, to, attachment))
            except (GraphError, ValueError) as exc:
                log.error("whatsapp: cannot send attachment %s: %s", attachment.name, exc)
                note = f"{ERROR_PREFIX}could not send {attachment.name}: {exc}"
                messages.append(text_message(to, note[:TEXT_LIMIT]))
        await self._send_all(number, to, messages)

    async def _attachment(self, number: str, to: str, attachment: Attachment) -> dict[str, Any]:
        assert self._graph is not None  # noqa: S101  an invariant for mypy, not a check
        return await attachment_message(self._graph, number, to, attachment)

    async def _send_template(self, number: str, to: str, text: str) -> None:
        name = self.config.template_name
        if not name:
            log.error(
                "whatsapp: %s has not written to %s in 24 hours and "
                "channels.whatsapp.template_name is not set: answer dropped",
                to,
                number,
            )
            await self._tell_operator(
                number,
                to,
                "no-template",
                "outside the 24-hour window and channels.whatsapp.template_name is not set",
            )
            return
        parameters = [text or "-"] if self.config.template_text_parameter else None
        template = template_message(to, name, self.config.template_language, parameters)
        log.info("whatsapp: %s is outside the 24-hour window: sending template %r", to, name)
        await self._send_all(number, to, [template])

    async def _send_all(self, number: str, to: str, messages: list[dict[str, Any]]) -> None:
        if self._graph is None:
            log.error("whatsapp: not started; %d message(s) to %s dropped", len(messages), to)
            return
        for message in messages:
            try:
                await self._graph.send(number, message)
            except GraphError as exc:
                kind = "transient, retries exhausted" if exc.retryable else "permanent"
                log.error(
                    "whatsapp: cannot send a %s message from %s to %s (%s): %s%s",
                    message.get("type"),
                    number,
                    to,
                    kind,
                    exc,
                    f" [fbtrace_id {exc.fbtrace_id}]" if exc.fbtrace_id else "",
                )
                key = f"graph-{exc.code}" if exc.code else f"{kind}: {exc}"
                await self._tell_operator(number, to, key, f"{exc} ({kind})")
                return

    async def _tell_operator(self, number: str, to: str, key: str, reason: str) -> None:
        """Notify ``operator_channel`` (rate-limited per ``key``) that ``to`` missed an answer.

        Failures of sends to the operator's own WhatsApp chat are only logged (no loop).
        """
        if self.notices is None:
            return
        try:
            if self.route(self.notices.channel_id) == (number, to):
                return
        except ValueError:
            pass  # the operator is on another channel
        await self._notify(key, f"could not send to +{to}: {reason}")

    async def _notify(self, key: str, text: str) -> None:
        """Send ``❌ WhatsApp: {text}`` to ``operator_channel`` (at most once a minute per
        ``key``) through the gateway; without either it is only logged."""
        if self.notices is None:
            return
        if self._ctx is None:
            log.warning(
                "whatsapp: not started, cannot reach %s; failure only logged",
                self.notices.channel_id,
            )
            return
        notice = self.notices.notice(key, text)
        if notice is not None:
            await self._ctx.deliver(notice)


class _NotStoredError(Exception):
    """A message's event could not be submitted: its webhook POST is answered 503."""


def create_whatsapp_adapter(settings: WhatsAppSettings, config: Settings) -> WhatsAppAdapter:
    """The ``[channels.whatsapp]`` factory (options in config.example.toml), handed them
    validated by core."""
    return WhatsAppAdapter(checked(settings))
