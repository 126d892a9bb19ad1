"""A local Telegram Bot API server for tests: the real aiogram runs against it unchanged.

Routes: ``POST|GET /bot{token}/{method}`` (form-encoded, multipart or JSON parameters) and
``GET /file/bot{token}/{path}`` (downloads). Methods: ``getMe``, ``getUpdates`` (long poll
with ``offset``/``timeout``/``limit``; 409 while a webhook is set), ``setWebhook``,
``deleteWebhook``, ``getWebhookInfo``, ``sendMessage`` (text of 1 to
4,096 UTF-16 units; ``parse_mode`` entities are checked, so unescaped model output fails as
it does on Telegram), ``sendChatAction``, ``sendPhoto``, ``sendDocument``, ``getFile``,
``answerCallbackQuery`` and ``editMessageReplyMarkup``. Every failure uses the Bot API's
shape ``{"ok": false, "error_code": N, "description": "...", "parameters": {...}}``; a wrong
token is ``401 Unauthorized``.

Tests act as users with :meth:`TelegramEmulator.send_text`, :meth:`~TelegramEmulator.send_photo`,
:meth:`~TelegramEmulator.send_document`, :meth:`~TelegramEmulator.press_button` and
:meth:`~TelegramEmulator.inject` (any raw update), or post an update where they choose
(:meth:`~TelegramEmulator.text_update`, :meth:`~TelegramEmulator.post`), read what the bot did in
:attr:`~TelegramEmulator.sent`, :attr:`~TelegramEmulator.actions` and
:attr:`~TelegramEmulator.callback_answers`, and script failures with
:meth:`~TelegramEmulator.fail_next` (``429`` with ``retry_after``: a request that comes back
before the wait is over is answered 429 again and counted in
:attr:`~TelegramEmulator.early_retries`), :meth:`~TelegramEmulator.front_end_error` (the
front end's HTML 502/504 page), :meth:`~TelegramEmulator.reset_next` (a TCP reset) and
:meth:`~TelegramEmulator.block` (403). ``send_text(..., topic=N)`` writes in a forum topic;
sends with a ``message_thread_id`` the chat does not have fail as on Telegram, and
``editMessageReplyMarkup`` refuses unknown messages and edits that change nothing.

Webhooks work as on Telegram: once the bot called ``setWebhook``, queued updates are POSTed
(real HTTP over loopback, in order, one at a time, with ``X-Telegram-Bot-Api-Secret-Token``)
to the registered URL and dropped on a 2xx answer, else retried; :attr:`webhook_calls` and
:attr:`deliveries` record what happened, and :meth:`post_to_webhook` sends any body with any
headers for tests of refusals::

    with TelegramEmulator() as telegram:
        telegram.send_text(42, "hello")          # config: api_base = telegram.base_url
        [reply] = await telegram.wait_for_sent(1)
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import http.client
import itertools
import json
import re
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from openpista_testing.server import ThreadedServer

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

DEFAULT_TOKEN = "123456789:AAEmulatorTokenForTestsOnly-0123456789"
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile refuses bigger files
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_RETRY_DELIVERY = 0.1  # seconds before a refused webhook delivery is tried again
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"RIFF")
_MARKDOWN_V2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_HTML_TAGS = re.compile(r"</?(b|strong|i|em|u|ins|s|strike|del|a|code|pre|tg-spoiler|span)\b")


@dataclass(frozen=True)
class User:
    """A Telegram user as tests impersonate it."""

    id: int
    username: str | None = None
    first_name: str = "Test"

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            data["username"] = self.username
        return data


@dataclass(frozen=True)
class SentMessage:
    """One accepted call by the bot that put something in a chat."""

    method: str
    chat_id: int
    message_id: int
    text: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    file: bytes | None = None
    file_name: str | None = None

    @property
    def reply_markup(self) -> dict[str, Any] | None:
        """The decoded ``reply_markup`` (inline keyboard), if any."""
        markup = self.params.get("reply_markup")
        return json.loads(markup) if isinstance(markup, str) else markup

    @property
    def topic(self) -> int | None:
        """The forum topic (``message_thread_id``) it was sent to, if any."""
        return _topic_param(self.params)


@dataclass(frozen=True)
class ScriptedError:
    """A failure :meth:`TelegramEmulator.fail_next` (``kind`` ``"api"``: a Bot API error),
    :meth:`~TelegramEmulator.front_end_error` (``"html"``) or
    :meth:`~TelegramEmulator.reset_next` (``"reset"``) queued for a method."""

    status: int
    description: str
    method: str
    retry_after: int | None = None
    kind: Literal["api", "html", "reset"] = "api"


@dataclass
class _File:
    data: bytes
    path: str
    unique_id: str
    reported: int | None  # file_size getFile tells (None: left out)


class TelegramEmulator(ThreadedServer):
    """The Bot API on 127.0.0.1 in a background thread, for one bot (``base_url`` is the
    channel's ``api_base``)."""

    name = "Telegram emulator"

    def __init__(
        self, *, token: str = DEFAULT_TOKEN, username: str = "openpista_test_bot", port: int = 0
    ) -> None:
        super().__init__(port)
        self.token = token
        self.username = username
        self.bot_id = int(token.split(":", 1)[0])
        self.sent: list[SentMessage] = []
        self.actions: list[tuple[int, str]] = []  # (chat_id, action) of sendChatAction
        self.action_topics: list[tuple[int, int | None]] = []  # (chat_id, topic) of each
        self.callback_answers: list[dict[str, Any]] = []
        self.edits: list[dict[str, Any]] = []  # editMessageReplyMarkup calls
        self.requests: list[str] = []  # method names of every authenticated call
        self.early_retries = 0  # calls made before a 429's retry_after was over
        self._updates: list[dict[str, Any]] = []
        self._confirmed = 0  # every update_id below this was confirmed by an offset
        self._errors: collections.deque[ScriptedError] = collections.deque()
        self._retry_until: dict[str, float] = {}
        self._blocked: set[int] = set()
        self._chats: dict[int, dict[str, Any]] = {}
        self._files: dict[str, _File] = {}
        self._callbacks: set[str] = set()
        self._topics: dict[int, set[int]] = {}  # forum chat -> its topics users wrote in
        self._buttons: dict[tuple[int, int], bool] = {}  # (chat, message) -> has buttons
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closing = threading.Event()
        self.webhook: dict[str, Any] | None = None
        """The registered webhook: ``url``, ``secret_token``, ``allowed_updates``."""
        self.webhook_calls: list[tuple[str, dict[str, Any]]] = []  # (method, parameters)
        self.deliveries: list[tuple[int, int]] = []  # (update_id, HTTP status) of each POST
        self._news = threading.Condition(self._lock)
        self._deliverer: threading.Thread | None = None
        self._last_delivery_error: tuple[int, str] | None = None

    # -- users ----------------------------------------------------------------------------

    def send_text(
        self,
        chat_id: int,
        text: str,
        *,
        user: User | None = None,
        chat_type: str = "private",
        reply_to_bot: bool = False,
        topic: int | None = None,
    ) -> dict[str, Any]:
        """A user writes ``text`` in chat ``chat_id`` (``@mentions`` and ``/commands`` get
        their entities); ``reply_to_bot`` makes it a reply to the bot's last message there;
        ``topic`` writes it in that topic of a forum supergroup."""
        update = self.text_update(
            chat_id, text, user=user, chat_type=chat_type, reply_to_bot=reply_to_bot, topic=topic
        )
        return self.inject(update)

    def text_update(
        self,
        chat_id: int,
        text: str,
        *,
        user: User | None = None,
        chat_type: str = "private",
        reply_to_bot: bool = False,
        topic: int | None = None,
    ) -> dict[str, Any]:
        """The update of :meth:`send_text`, with its ``update_id``, not queued: a test
        delivers it itself with :meth:`post` (to the replica it chooses)."""
        message = self._message(chat_id, user, chat_type, topic)
        message["text"] = text
        entities = _entities(text)
        if entities:
            message["entities"] = entities
        if reply_to_bot:
            message["reply_to_message"] = self._bot_message(chat_id)
        return {"update_id": next(self._ids) + 1000, "message": message}

    def send_photo(
        self,
        chat_id: int,
        data: bytes,
        *,
        caption: str | None = None,
        user: User | None = None,
        chat_type: str = "private",
    ) -> dict[str, Any]:
        """A user sends a picture (a thumbnail and the full size, as Telegram does)."""
        message = self._message(chat_id, user, chat_type)
        thumb, full = self._store(data[:64], "photos"), self._store(data, "photos")
        message["photo"] = [
            _photo_size(thumb, len(data[:64]), 90),
            _photo_size(full, len(data), 800),
        ]
        if caption:
            message["caption"] = caption
        return self.inject({"message": message})

    def send_document(
        self,
        chat_id: int,
        data: bytes,
        file_name: str,
        mime_type: str = "application/octet-stream",
        *,
        caption: str | None = None,
        user: User | None = None,
        size: int | None = None,
        hide_size: bool = False,
    ) -> dict[str, Any]:
        """A user sends a file; ``size`` overrides the ``file_size`` Telegram reports (in the
        message and in ``getFile``), ``hide_size`` leaves it out of both."""
        message = self._message(chat_id, user, "private")
        reported = None if hide_size else len(data) if size is None else size
        file_id = self._store(data, "documents", reported)
        message["document"] = {
            "file_id": file_id,
            "file_unique_id": self._files[file_id].unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
        }
        if reported is not None:
            message["document"]["file_size"] = reported
        if caption:
            message["caption"] = caption
        return self.inject({"message": message})

    def press_button(
        self, chat_id: int, message_id: int, data: str, *, user: User | None = None
    ) -> dict[str, Any]:
        """A user presses an inline button with callback ``data`` under message
        ``message_id`` (sent by the bot in ``chat_id``)."""
        user = user or User(chat_id)
        query_id = f"cb{next(self._ids)}"
        with self._lock:
            self._callbacks.add(query_id)
            chat = self._chats.get(chat_id) or {"id": chat_id, "type": "private"}
            shown = [m for m in self.sent if (m.chat_id, m.message_id) == (chat_id, message_id)]
        bot_message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": self.bot_user(),
            "text": "…",
        }
        if shown and shown[0].topic is not None:
            bot_message["message_thread_id"] = shown[0].topic
            bot_message["is_topic_message"] = True
        return self.inject(
            {
                "callback_query": {
                    "id": query_id,
                    "from": user.as_json(),
                    "chat_instance": f"ci{chat_id}",
                    "message": bot_message,
                    "data": data,
                }
            }
        )

    def inject(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue a raw update (``update_id`` is added when missing); returns it."""
        with self._lock:
            update = {"update_id": next(self._ids) + 1000, **update}
            self._updates.append(update)
            self._news.notify_all()
        return update

    def bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Pista", "username": self.username}

    # -- scripting ------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        description: str,
        *,
        method: str = "sendMessage",
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (``"any"``: any but ``getUpdates``,
        which fails only when named) with a Bot API error."""
        with self._lock:
            for _ in range(times):
                self._errors.append(ScriptedError(status, description, method, retry_after))

    def front_end_error(
        self, status: int = 502, *, method: str = "sendMessage", times: int = 1
    ) -> None:
        """Answer the next ``times`` calls of ``method`` as Telegram's front end (nginx) does
        when the Bot API behind it fails: ``status`` (502 Bad Gateway, 504 Gateway Time-out)
        with an HTML page instead of a JSON body."""
        reason = _FRONT_END_REASONS.get(status, "Error")
        with self._lock:
            for _ in range(times):
                self._errors.append(ScriptedError(status, reason, method, kind="html"))

    def reset_next(self, *, method: str = "sendMessage", times: int = 1) -> None:
        """Reset the connection (TCP RST, no answer at all) of the next ``times`` calls of
        ``method``, as a broken network path does."""
        with self._lock:
            for _ in range(times):
                self._errors.append(ScriptedError(0, "connection reset", method, kind="reset"))

    def block(self, chat_id: int) -> None:
        """The user of ``chat_id`` blocked the bot: sends there answer 403."""
        with self._lock:
            self._blocked.add(chat_id)

    def pending_updates(self) -> int:
        """Updates the bot has not confirmed yet."""
        with self._lock:
            return sum(1 for u in self._updates if u["update_id"] >= self._confirmed)

    def texts(self, chat_id: int) -> list[str]:
        """Texts (and captions) the bot sent to ``chat_id``."""
        return [m.text for m in list(self.sent) if m.chat_id == chat_id]

    async def wait_for_sent(
        self, count: int, *, chat_id: int | None = None, wait: float = 30.0
    ) -> list[SentMessage]:
        """Wait (without blocking the event loop) until at least ``count`` messages were
        sent (to ``chat_id``, if given); returns them."""
        deadline = time.monotonic() + wait
        while True:
            found = [m for m in list(self.sent) if chat_id is None or m.chat_id == chat_id]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} message(s) sent, expected {count}: {found}")
            await asyncio.sleep(0.01)

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop serving (long polls in progress end at once) and delivering to a webhook."""
        self._closing.set()
        with self._lock:
            self._news.notify_all()
        if self._deliverer is not None:
            self._deliverer.join(timeout=15)
            self._deliverer = None
        super().stop()

    # -- webhook --------------------------------------------------------------------------

    async def post_to_webhook(
        self, body: bytes | dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """POST ``body`` (a dict is sent as JSON) to the registered webhook URL; ``headers``
        replace the default ones (the registered secret token). Returns (status, text)."""
        return await asyncio.to_thread(self.post, body, headers=headers)

    def post(
        self,
        body: bytes | dict[str, Any],
        *,
        headers: dict[str, str] | None = None,
        url: str | None = None,
    ) -> tuple[int, str]:
        """:meth:`post_to_webhook` in the calling thread; ``url`` instead of the registered
        one is where a load balancer in front of several replicas would send it (one of
        them)."""
        with self._lock:
            webhook = self.webhook
        if webhook is None:
            raise AssertionError("no webhook registered (the bot did not call setWebhook)")
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        if headers is None:
            headers = _secret_header(webhook)
        return _post(url or webhook["url"], data, headers)

    async def wait_for_webhook(self, wait: float = 30.0) -> dict[str, Any]:
        """Wait until the bot registered a webhook; returns it."""
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                if self.webhook is not None:
                    return dict(self.webhook)
            if time.monotonic() > deadline:
                raise AssertionError("the bot never called setWebhook")
            await asyncio.sleep(0.01)

    def _deliver_forever(self) -> None:
        """Telegram's side of a webhook: POST pending updates in order until stopped."""
        while not self._closing.is_set():
            with self._lock:
                webhook = self.webhook
                update = self._updates[0] if webhook is not None and self._updates else None
                if update is None:
                    self._news.wait(timeout=0.5)
                    continue
                assert webhook is not None
                if not any(kind in update for kind in webhook["allowed_updates"]):
                    self._updates.pop(0)  # not a kind the bot asked for: never sent
                    continue
            body = json.dumps(update).encode()
            try:
                status, text = _post(webhook["url"], body, _secret_header(webhook))
            except OSError as exc:
                status, text = 0, f"Connection failed: {exc}"
            with self._lock:
                self.deliveries.append((update["update_id"], status))
                if 200 <= status < 300:
                    if self._updates and self._updates[0] is update:
                        self._updates.pop(0)
                    continue
                self._last_delivery_error = (int(time.time()), f"Wrong response: {status} {text}")
            self._closing.wait(_RETRY_DELIVERY)

    # -- HTTP -----------------------------------------------------------------------------

    def asgi_app(self) -> Any:
        """The starlette application."""
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(
            routes=[
                Route("/file/bot{token}/{path:path}", self._download, methods=["GET"]),
                Route("/bot{token}/{method}", self._call, methods=["GET", "POST"]),
            ]
        )

    async def _call(self, request: Request) -> Response:
        if not hmac.compare_digest(request.path_params["token"].encode(), self.token.encode()):
            return api_error(401, "Unauthorized")
        method = request.path_params["method"]
        handler = self._methods().get(method.lower())
        if handler is None:
            return api_error(404, "Not Found")
        try:
            params, files = await _parameters(request)
        except ValueError as exc:
            return api_error(400, f"Bad Request: {exc}")
        with self._lock:
            self.requests.append(method)
        refused = self._scripted(method)
        if isinstance(refused, ScriptedError):
            return await self._reset(request)
        if refused is not None:
            return refused
        try:
            result = await handler(params, files)
        except _ApiError as exc:
            return api_error(exc.status, exc.description)
        return _ok(result)

    def _methods(self) -> dict[str, Any]:
        return {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "sendmessage": self._send_message,
            "sendchataction": self._send_chat_action,
            "sendphoto": self._send_photo,
            "senddocument": self._send_document,
            "getfile": self._get_file,
            "answercallbackquery": self._answer_callback,
            "editmessagereplymarkup": self._edit_markup,
        }

    def _scripted(self, method: str) -> Response | ScriptedError | None:
        """The scripted answer to this call of ``method``: a response, a reset (the
        :class:`ScriptedError`) or ``None`` (answer it normally)."""
        now = time.monotonic()
        with self._lock:
            until = self._retry_until.get(method, 0.0)
            if method == "getUpdates":  # only errors scripted for it by name
                if self._errors and self._errors[0].method == method:
                    return _scripted_answer(self._errors.popleft())
                return None
            if now < until:
                self.early_retries += 1
                wait = max(1, int(until - now + 0.999))
                return api_error(429, f"Too Many Requests: retry after {wait}", wait)
            if self._errors and self._errors[0].method in (method, "any"):
                error = self._errors.popleft()
                if error.retry_after is not None:
                    self._retry_until[method] = now + error.retry_after
                return _scripted_answer(error)
        return None

    async def _reset(self, request: Request) -> Response:
        """Abort the request's connection with a TCP RST; the response is never sent."""
        from starlette.responses import Response

        client = request.scope.get("client")
        for connection in list(self._server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is None or getattr(connection, "client", None) != tuple(client or ()):
                continue
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        await asyncio.sleep(0.05)  # let the server see the connection gone before answering
        return Response(status_code=500)

    async def _get_me(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        return {
            **self.bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _set_webhook(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        url = str(params.get("url") or "")
        if not url:
            return await self._delete_webhook(params, files)
        if not re.match(r"^https?://[^/\s]+", url):
            raise _ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
        secret = params.get("secret_token")
        if secret is not None and not _SECRET_TOKEN.match(str(secret)):
            raise _ApiError(400, "Bad Request: secret token contains unallowed characters")
        allowed = _json_param(params.get("allowed_updates")) or ["message", "callback_query"]
        with self._lock:
            self.webhook_calls.append(("setWebhook", dict(params)))
            if _flag(params.get("drop_pending_updates")):
                self._updates.clear()
            self.webhook = {"url": url, "secret_token": secret, "allowed_updates": allowed}
            self._last_delivery_error = None
            if self._deliverer is None:
                self._deliverer = threading.Thread(
                    target=self._deliver_forever, name=f"{self.name} webhook", daemon=True
                )
                self._deliverer.start()
            self._news.notify_all()
        return True

    async def _delete_webhook(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        with self._lock:
            self.webhook_calls.append(("deleteWebhook", dict(params)))
            self.webhook = None
            if _flag(params.get("drop_pending_updates")):
                self._updates.clear()
        return True

    async def _get_webhook_info(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        with self._lock:
            self.webhook_calls.append(("getWebhookInfo", dict(params)))
            webhook, error = self.webhook, self._last_delivery_error
            info: dict[str, Any] = {
                "url": webhook["url"] if webhook else "",
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }
        if webhook is not None:
            info["allowed_updates"] = webhook["allowed_updates"]
        if error is not None:
            info["last_error_date"], info["last_error_message"] = error
        return info

    async def _get_updates(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        offset = _int(params.get("offset"), "offset", default=0)
        timeout = min(_int(params.get("timeout"), "timeout", default=0), 50)
        limit = min(max(_int(params.get("limit"), "limit", default=100), 1), 100)
        with self._lock:
            if self.webhook is not None:
                raise _ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if offset:
                    self._confirmed = max(self._confirmed, offset)
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = self._updates[:limit]
            if ready or time.monotonic() >= deadline or self._closing.is_set():
                return ready
            await asyncio.sleep(0.01)

    async def _send_message(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        chat_id = self._chat(params)
        text = str(params.get("text") or "")
        if not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if _utf16_length(text) > TEXT_LIMIT:
            raise _ApiError(400, "Bad Request: message is too long")
        _check_entities(text, params.get("parse_mode"))
        _check_markup(params.get("reply_markup"))
        self._topic(params, chat_id)
        return self._record("sendMessage", chat_id, text, params)

    async def _send_chat_action(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        chat_id = self._chat(params)
        action = str(params.get("action") or "")
        if action not in CHAT_ACTIONS:
            raise _ApiError(400, "Bad Request: wrong parameter action in request")
        self._topic(params, chat_id)
        with self._lock:
            self.actions.append((chat_id, action))
            self.action_topics.append((chat_id, _topic_param(params)))
        return True

    async def _send_photo(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        chat_id = self._chat(params)
        name, data = self._upload(params, files, "photo")
        if not data.startswith(IMAGE_SIGNATURES):
            raise _ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
        caption = self._caption(params)
        self._topic(params, chat_id)
        return self._record("sendPhoto", chat_id, caption, params, data, name)

    async def _send_document(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        chat_id = self._chat(params)
        name, data = self._upload(params, files, "document")
        caption = self._caption(params)
        self._topic(params, chat_id)
        return self._record("sendDocument", chat_id, caption, params, data, name)

    async def _get_file(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        file_id = str(params.get("file_id") or "")
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        if len(stored.data) > DOWNLOAD_LIMIT:
            raise _ApiError(400, "Bad Request: file is too big")
        info: dict[str, Any] = {
            "file_id": file_id,
            "file_unique_id": stored.unique_id,
            "file_path": stored.path,
        }
        if stored.reported is not None:
            info["file_size"] = stored.reported
        return info

    async def _answer_callback(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        query_id = str(params.get("callback_query_id") or "")
        with self._lock:
            if query_id not in self._callbacks:
                raise _ApiError(
                    400,
                    "Bad Request: query is too old and response timeout expired "
                    "or query ID is invalid",
                )
            self._callbacks.discard(query_id)
            self.callback_answers.append(dict(params))
        return True

    async def _edit_markup(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        chat_id = self._chat(params)
        key = (chat_id, _int(params.get("message_id"), "message_id"))
        markup = params.get("reply_markup")
        _check_markup(markup)
        buttons = bool(_json_param(markup)) if markup else False
        with self._lock:
            if key not in self._buttons:
                raise _ApiError(400, "Bad Request: message to edit not found")
            if not buttons and not self._buttons[key]:
                raise _ApiError(
                    400,
                    "Bad Request: message is not modified: specified new message content and "
                    "reply markup are exactly the same as a current content and reply markup "
                    "of the message",
                )
            self._buttons[key] = buttons
            self.edits.append(dict(params))
        return True

    async def _download(self, request: Request) -> Response:
        from starlette.responses import Response

        if not hmac.compare_digest(request.path_params["token"].encode(), self.token.encode()):
            return api_error(401, "Unauthorized")
        path = request.path_params["path"]
        with self._lock:
            found = next((f for f in self._files.values() if f.path == path), None)
        if found is None:
            return api_error(404, "Not Found")
        return Response(found.data, media_type="application/octet-stream")

    # -- internals ------------------------------------------------------------------------

    def _message(
        self, chat_id: int, user: User | None, chat_type: str, topic: int | None = None
    ) -> dict[str, Any]:
        user = user or User(chat_id)
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = user.first_name
            if user.username:
                chat["username"] = user.username
        else:
            chat["title"] = "Test group"
        if topic is not None:
            chat["is_forum"] = True
        with self._lock:
            self._chats[chat_id] = chat
            if topic is not None:
                self._topics.setdefault(chat_id, set()).add(topic)
        message: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": chat,
            "from": user.as_json(),
        }
        if topic is not None:
            message["message_thread_id"] = topic
            message["is_topic_message"] = True
        return message

    def _topic(self, params: dict[str, Any], chat_id: int) -> None:
        """Refuse a ``message_thread_id`` that is not a topic of the chat, as Telegram does."""
        topic = _topic_param(params)
        with self._lock:
            known = self._topics.get(chat_id, set())
        if topic is not None and topic not in known:
            raise _ApiError(400, "Bad Request: message thread not found")

    def _bot_message(self, chat_id: int) -> dict[str, Any]:
        mine = [m for m in self.sent if m.chat_id == chat_id]
        message_id = mine[-1].message_id if mine else next(self._ids)
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": self._chats.get(chat_id, {"id": chat_id, "type": "group", "title": "g"}),
            "from": self.bot_user(),
            "text": mine[-1].text if mine else "…",
        }

    def _store(self, data: bytes, folder: str, reported: int | None = -1) -> str:
        """Keep a file; ``reported`` is the size getFile tells (-1: the real one)."""
        number = next(self._ids)
        file_id = f"FILE{number:06d}"
        extension = ".jpg" if folder == "photos" else ""
        size = len(data) if reported == -1 else reported
        path = f"{folder}/file_{number}{extension}"
        with self._lock:
            self._files[file_id] = _File(data, path, f"U{number}", size)
        return file_id

    def _chat(self, params: dict[str, Any]) -> int:
        raw = params.get("chat_id")
        try:
            chat_id = int(str(raw))
        except ValueError:
            raise _ApiError(400, "Bad Request: chat not found") from None
        with self._lock:
            if chat_id not in self._chats:
                raise _ApiError(400, "Bad Request: chat not found")
            if chat_id in self._blocked:
                raise _ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _caption(self, params: dict[str, Any]) -> str:
        caption = str(params.get("caption") or "")
        if _utf16_length(caption) > CAPTION_LIMIT:
            raise _ApiError(400, "Bad Request: message caption is too long")
        _check_entities(caption, params.get("parse_mode"))
        return caption

    def _upload(
        self, params: dict[str, Any], files: dict[str, Any], field_name: str
    ) -> tuple[str, bytes]:
        value = params.get(field_name)
        if isinstance(value, str) and value.startswith("attach://"):
            value = files.get(value.removeprefix("attach://"))
        elif field_name in files:
            value = files[field_name]
        if isinstance(value, tuple):
            return value
        with self._lock:
            stored = self._files.get(str(value or ""))
        if stored is None:
            raise _ApiError(400, f"Bad Request: there is no {field_name} in the request")
        return stored.path.rsplit("/", 1)[-1], stored.data

    def _record(
        self,
        method: str,
        chat_id: int,
        text: str,
        params: dict[str, Any],
        data: bytes | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        message_id = next(self._ids)
        sent = SentMessage(method, chat_id, message_id, text, dict(params), data, name)
        with self._lock:
            self.sent.append(sent)
            self._buttons[(chat_id, message_id)] = bool(params.get("reply_markup"))
            chat = self._chats[chat_id]
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": self.bot_user(),
        }
        if sent.topic is not None:
            message["message_thread_id"] = sent.topic
            message["is_topic_message"] = True
        if method == "sendMessage":
            message["text"] = text
        else:
            file_id = self._store(data or b"", "photos" if method == "sendPhoto" else "documents")
            size = len(data or b"")
            if method == "sendPhoto":
                message["photo"] = [_photo_size(file_id, size, 800)]
            else:
                message["document"] = {"file_id": file_id, "file_unique_id": file_id + "u"}
            if text:
                message["caption"] = text
        return message


class _ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def api_error(status: int, description: str, retry_after: int | None = None) -> Response:
    """A Bot API error answer."""
    from starlette.responses import JSONResponse

    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return JSONResponse(body, status_code=status)


_FRONT_END_REASONS = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def _front_end_page(status: int, reason: str) -> Response:
    """The HTML error page Telegram's nginx front end sends (no JSON)."""
    from starlette.responses import HTMLResponse

    page = (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return HTMLResponse(page, status_code=status)


def _scripted_answer(error: ScriptedError) -> Response | ScriptedError:
    if error.kind == "reset":
        return error
    if error.kind == "html":
        return _front_end_page(error.status, error.description)
    return api_error(error.status, error.description, error.retry_after)


def _ok(result: Any) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse({"ok": True, "result": result})


async def _parameters(request: Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
    """Query, form (urlencoded or multipart) or JSON parameters, and uploaded files."""
    from starlette.datastructures import UploadFile

    params: dict[str, Any] = dict(request.query_params)
    files: dict[str, tuple[str, bytes]] = {}
    if request.method != "POST":
        return params, files
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise ValueError("can't parse JSON object") from None
        if not isinstance(body, dict):
            raise ValueError("parameters must be a JSON object")
        params.update(body)
        return params, files
    async with request.form() as form:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files[key] = (value.filename or key, await value.read())
            else:
                params[key] = value
    return params, files


def _secret_header(webhook: dict[str, Any]) -> dict[str, str]:
    secret = webhook.get("secret_token")
    return {SECRET_HEADER: str(secret)} if secret else {}


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """A real HTTP POST (no proxy) of a JSON ``body``; returns (status, text)."""
    parts = urllib.parse.urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        connection.request("POST", target, body, {"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def _json_param(value: Any) -> Any:
    """A parameter sent JSON-encoded in a form (lists, objects) or as JSON itself."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _ApiError(400, "Bad Request: can't parse JSON parameter") from None
    return value


def _topic_param(params: dict[str, Any]) -> int | None:
    value = params.get("message_thread_id")
    return None if value in (None, "") else _int(value, "message_thread_id")


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _int(value: Any, name: str, default: int | None = None) -> int:
    if value is None or value == "":
        if default is None:
            raise _ApiError(400, f"Bad Request: {name} is required")
        return default
    try:
        return int(str(value))
    except ValueError:
        raise _ApiError(400, f"Bad Request: wrong parameter {name}") from None


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _check_entities(text: str, parse_mode: Any) -> None:
    """Fail like Telegram when ``text`` does not parse in ``parse_mode`` (a rough check)."""
    if not parse_mode:
        return
    mode = str(parse_mode).lower()
    problem = "Bad Request: can't parse entities"
    if mode == "markdownv2":
        escaped = False
        for char in text:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char in _MARKDOWN_V2_RESERVED and char not in "*_`":
                raise _ApiError(400, f"{problem}: character '{char}' is reserved")
        for marker in "*_`":
            if text.replace("\\" + marker, "").count(marker) % 2:
                raise _ApiError(400, f"{problem}: can't find end of the entity")
    elif mode == "html":
        stripped = _HTML_TAGS.sub("", text)
        if "<" in stripped or (re.search(r"&(?!(lt|gt|amp|quot);)", text)):
            raise _ApiError(400, f"{problem}: unsupported start tag")
    elif mode != "markdown":
        raise _ApiError(400, "Bad Request: unsupported parse_mode")


def _check_markup(markup: Any) -> None:
    if markup is None:
        return
    try:
        data = json.loads(markup) if isinstance(markup, str) else markup
        rows = data["inline_keyboard"]
        for row in rows:
            for button in row:
                if not button["text"] or len(button.get("callback_data", "").encode()) > 64:
                    raise ValueError
    except (ValueError, KeyError, TypeError):
        raise _ApiError(
            400, "Bad Request: can't parse inline keyboard button: invalid markup"
        ) from None


def _entities(text: str) -> list[dict[str, Any]]:
    """``mention`` and ``bot_command`` entities, in UTF-16 offsets as Telegram gives them."""
    entities = []
    for match in re.finditer(r"(?<![\w/])(@\w{3,}|/\w+(?:@\w+)?)", text):
        offset = _utf16_length(text[: match.start()])
        kind = "mention" if match.group().startswith("@") else "bot_command"
        if kind == "bot_command" and match.start() != 0:
            continue
        entities.append({"type": kind, "offset": offset, "length": _utf16_length(match.group())})
    return entities


def _photo_size(file_id: str, size: int, width: int) -> dict[str, Any]:
    return {
        "file_id": file_id,
        "file_unique_id": file_id + "u",
        "width": width,
        "height": width * 3 // 4,
        "file_size": size,
    }
