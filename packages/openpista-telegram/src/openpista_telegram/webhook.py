"""Webhook mode: Telegram POSTs each update to openpista's HTTP endpoint.

The endpoint (uvicorn in the daemon's loop, :class:`openpista.serving.EmbeddedServer`) checks
``X-Telegram-Bot-Api-Secret-Token`` first (missing: 401, wrong: 403, nothing is read further),
then the body size (413 above ``max_webhook_bytes``) and the JSON (400 when malformed or
nested deeper than :data:`openpista.jsonsafe.MAX_DEPTH`). Accepted updates wait in a bounded
queue (full: 503, Telegram delivers again later) and are handed one at a time, in arrival
order, to the same handling as long polling. A POST is answered 200 only once its update was
handled: its event submitted (``ctx.submit`` returned: in a cluster, stored), or no event was
due (a refusal, a bot's message, ...). Handling that fails, or does not end within
``webhook_answer_timeout`` seconds (then it is cancelled), is answered 503 with one log line:
Telegram delivers the update again (the event's ``delivery_id`` lets core drop a second copy).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from openpista import jsonsafe

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from openpista.serving import EmbeddedServer
    from openpista_telegram.settings import TelegramSettings

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105  a header's name
ALLOWED_UPDATES = ("message", "callback_query")
QUEUE_LIMIT = 1000

Feed = Callable[[dict[str, Any]], Awaitable[None]]


class WebhookReceiver:
    """The webhook endpoint and the worker that feeds its updates, in order, to ``feed``."""

    def __init__(self, settings: TelegramSettings, secret: str, feed: Feed) -> None:
        self.settings = settings
        self.port = 0
        """The TCP port listened on (after :meth:`start`)."""
        self._secret = secret.encode()
        self._feed = feed
        self._queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[None]]]
        self._queue = asyncio.Queue(QUEUE_LIMIT)
        self._server: EmbeddedServer | None = None
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen on ``webhook_host``:``webhook_port``; returns once connections are accepted.

        Raises ``RuntimeError`` naming the option to change when the address is unusable.
        """
        from openpista.serving import EmbeddedServer, bind_tcp

        host, port = self.settings.webhook_host, self.settings.webhook_port
        server = EmbeddedServer(self.asgi_app(), name="telegram webhook", grace=1)
        try:
            await server.start(
                bind_tcp(host, port, option="channels.telegram.webhook_host / webhook_port")
            )
        except (OSError, RuntimeError) as exc:
            raise RuntimeError(f"telegram: {exc}") from None
        self._server, self.port = server, server.port
        self._worker = asyncio.create_task(self._work(), name="openpista-telegram-webhook")
        log.info("telegram: webhook listening on %s:%d%s", host, self.port, self._path)

    async def wait_closed(self) -> None:
        """Return when :meth:`stop` ends the server; raise when it died on its own."""
        if self._server is not None:
            await self._server.wait_closed()

    async def stop(self) -> None:
        """Stop listening and drop updates not handled yet (Telegram does not resend them)."""
        if self._server is not None:
            await self._server.stop()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        dropped = self._queue.qsize()
        if dropped:
            log.warning("telegram: %d received update(s) left unhandled at stop", dropped)
        self._server = self._worker = None

    @property
    def _path(self) -> str:
        return self.settings.webhook_path

    def asgi_app(self) -> Any:
        """The starlette application: ``POST`` on ``webhook_path``."""
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(routes=[Route(self._path, self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        from starlette.responses import PlainTextResponse

        from openpista.serving import BodyTooLargeError, read_body

        given = request.headers.get(SECRET_HEADER)
        if not given:
            log.warning("telegram: webhook POST without %s refused", SECRET_HEADER)
            return PlainTextResponse(f"missing {SECRET_HEADER}", status_code=401)
        if not hmac.compare_digest(given.encode(), self._secret):
            log.warning("telegram: webhook POST with a wrong secret token refused")
            return PlainTextResponse("wrong secret token", status_code=403)
        limit = self.settings.max_webhook_bytes
        try:
            body = await read_body(request, limit)
        except BodyTooLargeError as exc:
            return PlainTextResponse(str(exc), status_code=413)
        try:
            update = jsonsafe.loads(body, max_bytes=limit)
        except jsonsafe.JsonInputError as error:
            jsonsafe.log_rejected(log, "telegram webhook", error)
            return PlainTextResponse(f"body is not acceptable JSON: {error}", status_code=400)
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            return PlainTextResponse("not an update (no integer update_id)", status_code=400)
        if not any(kind in update for kind in ALLOWED_UPDATES):
            log.debug("telegram: ignored update %s of another kind", update["update_id"])
            return PlainTextResponse("ignored")
        handled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((update, handled))
        except asyncio.QueueFull:
            log.warning("telegram: %d updates waiting; asking Telegram to resend", QUEUE_LIMIT)
            return PlainTextResponse("busy, send again later", status_code=503)
        timeout = self.settings.webhook_answer_timeout
        try:
            await asyncio.wait_for(asyncio.shield(handled), timeout)
        except TimeoutError:
            reason = f"not handled within {timeout:g} s"
        except Exception as exc:  # one bad update must not stop the others
            reason = f"{type(exc).__name__}: {exc}"
        else:
            return PlainTextResponse("ok")
        finally:
            handled.cancel()  # given up (a timeout, the connection or server closed): skipped
        log.warning(
            "telegram: update %s %s; asking Telegram to send it again", update["update_id"], reason
        )
        return PlainTextResponse("not handled, send again", status_code=503)

    async def _work(self) -> None:
        """Hand the queued updates to ``feed`` one at a time; an update whose POST gave up
        is skipped, or its handling cancelled."""
        while True:
            update, handled = await self._queue.get()
            if handled.done():
                continue
            handling = asyncio.ensure_future(self._feed(update))
            handled.add_done_callback(lambda _, task=handling: task.cancel())  # type: ignore[misc]
            try:
                await asyncio.wait([handling])
            finally:
                handling.cancel()  # the worker stopped: so does the update's handling
            if handled.done():
                continue  # its POST gave up: answered 503
            if handling.cancelled():
                handled.set_exception(RuntimeError("its handling was cancelled"))
            elif (failure := handling.exception()) is not None:
                handled.set_exception(failure)
            else:
                handled.set_result(None)
