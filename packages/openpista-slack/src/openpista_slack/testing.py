"""A local Slack for tests: the real slack_sdk / slack-bolt run against it unchanged.

The Web API is ``POST /api/{method}`` (JSON or form parameters, the token as ``Authorization:
Bearer``; point the channel's ``api_base`` at :attr:`SlackEmulator.api_url`). Methods:
``auth.test``, ``chat.postMessage``, ``chat.update``, ``chat.postEphemeral``,
``conversations.info``, ``conversations.open``, ``conversations.replies``, ``views.publish``
(App Home), the upload flow
``files.getUploadURLExternal`` -> ``POST`` the bytes to the ``upload_url`` ->
``files.completeUploadExternal``, and ``apps.connections.open`` (app-level token), which
returns the ``ws://`` URL of the Socket Mode WebSocket. Answers have Slack's shape: HTTP 200
``{"ok": false, "error": "invalid_auth"}`` for a wrong token, ``missing_scope`` with
``needed`` and ``provided`` for a scope the app lacks (:meth:`SlackEmulator.revoke_scope`),
``msg_too_long`` above 40,000 characters; a 429 carries ``Retry-After``
(:meth:`~SlackEmulator.fail_next`; a call back before the wait is over is counted in
:attr:`~SlackEmulator.early_retries`). ``response_url`` POSTs land in
:attr:`~SlackEmulator.responses`.

The Socket Mode WebSocket sends ``hello`` on connect, then envelopes (``events_api``,
``slash_commands``, ``interactive``) with an ``envelope_id`` that the app acks; envelopes sent
while no socket is connected wait for the next one. :meth:`~SlackEmulator.disconnect` sends
``{"type": "disconnect", "reason": "refresh_requested"}``; :meth:`~SlackEmulator.drop` closes
the socket without a word; events not acked are sent again (``retry_attempt`` + 1) on the
next connection. With :attr:`~SlackEmulator.events_url` set, the same events are POSTed
instead, signed with the signing secret (``X-Slack-Signature: v0=...``), in order, retried
with ``X-Slack-Retry-Num`` when refused, as the HTTP Events API does;
:meth:`~SlackEmulator.post_signed` sends any body with any signature::

    with SlackEmulator() as slack:                 # api_base = slack.api_url
        slack.dm(ALICE, "hello")
        [reply] = await slack.wait_for_messages(1)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import itertools
import json
import queue
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openpista_testing.server import ThreadedServer

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.websockets import WebSocket

BOT_TOKEN = "xoxb-1000-2000-emulatortokenfortests"
APP_TOKEN = "xapp-1-A0APP-3000-emulatorapptokenfortests"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM = "T0EMUL8R"
BOT_USER = "U0B0TUSER"
BOT_ID = "B0B0T"
APP_ID = "A0APP"
TEXT_LIMIT = 40_000
HTTP_RETRIES = 3
HTTP_RETRY_DELAY = 0.5
SCOPES = frozenset(
    {"chat:write", "app_mentions:read", "im:history", "channels:history", "commands"}
    | {"files:write", "files:read", "im:write", "groups:history", "channels:read", "im:read"}
)
_NEEDS = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "conversations.info": "channels:read",
    "conversations.open": "im:write",
    "conversations.replies": "channels:history",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
}


@dataclass(frozen=True)
class User:
    """A Slack user as tests impersonate it."""

    id: str
    name: str = "someone"
    team: str = TEAM

    @property
    def dm(self) -> str:
        """The id of this user's DM channel with the bot."""
        return "D" + self.id[1:]


@dataclass
class Posted:
    """A message the bot posted (``chat.postMessage``) and its later edits."""

    channel: str
    ts: str
    text: str
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """The buttons of its (current) actions blocks."""
        return [
            element
            for block in self.blocks or []
            if block.get("type") == "actions"
            for element in block.get("elements", [])
            if element.get("type") == "button"
        ]


@dataclass(frozen=True)
class Upload:
    """A file the bot uploaded and shared (``files.completeUploadExternal``)."""

    id: str
    name: str
    data: bytes
    channel: str | None
    thread_ts: str | None
    title: str | None


class SlackEmulator(ThreadedServer):
    """Slack's Web API and Socket Mode on 127.0.0.1 (see the module docstring)."""

    name = "Slack emulator"

    def __init__(self, *, port: int = 0) -> None:
        super().__init__(port)
        self.bot_token, self.app_token, self.signing_secret = BOT_TOKEN, APP_TOKEN, SIGNING_SECRET
        self.team = TEAM
        self.scopes = set(SCOPES)
        self.messages: list[Posted] = []
        self.ephemeral: list[dict[str, Any]] = []
        self.uploads: list[Upload] = []
        self.home_views: dict[str, dict[str, Any]] = {}
        """User id -> the App Home view published for them (``views.publish``)."""
        self.responses: list[dict[str, Any]] = []
        """Bodies POSTed to a ``response_url``."""
        self.calls: list[str] = []
        """Every authenticated Web API call's method, in order."""
        self.acks: dict[str, dict[str, Any]] = {}
        """Envelope id -> the app's ack."""
        self.connections = 0
        """Socket Mode connections accepted so far."""
        self.early_retries = 0
        self.events_url: str | None = None
        """When set: events are POSTed here, signed, instead of sent on the socket."""
        self.deliveries: list[tuple[int, str]] = []  # (HTTP status, body) of each POST
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)
        self._errors: dict[str, list[tuple[int, dict[str, Any], float | None]]] = {}
        self._slow: dict[str, tuple[float, Callable[[dict[str, Any]], bool]]] = {}
        self._retry_until: dict[str, float] = {}
        self._socket: WebSocket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[str] = []  # envelopes waiting for a socket
        self._tickets: set[str] = set()
        self._pending_uploads: dict[str, tuple[str, int, bytes | None]] = {}
        self._outbox: queue.Queue[tuple[bytes, str] | None] = queue.Queue()
        self._poster: threading.Thread | None = None
        self._closing = threading.Event()
        self._shared: dict[str, bytes] = {}  # file id -> bytes users shared
        self.downloads: list[str] = []
        """Ids of the shared files the bot downloaded."""
        self._unacked: dict[str, dict[str, Any]] = {}  # events_api envelopes not acked yet

    @property
    def api_url(self) -> str:
        """The Web API root: the channel's ``api_base``."""
        return f"{self.base_url}/api/"

    # -- users ----------------------------------------------------------------------------

    def dm(self, user: User, text: str, *, thread_ts: str | None = None) -> dict[str, Any]:
        """``user`` writes ``text`` in their DM with the bot (a ``message`` event, ``im``)."""
        return self.message(user, user.dm, text, channel_type="im", thread_ts=thread_ts)

    def message(
        self,
        user: User,
        channel: str,
        text: str,
        *,
        channel_type: str = "channel",
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """``user`` writes in ``channel`` (a ``message`` event); returns the event."""
        event = self._user_message("message", user, channel, text, thread_ts)
        event["channel_type"] = channel_type
        if files:
            event["subtype"] = "file_share"
            event["files"] = files
        self.send_event(event)
        return event

    def mention(
        self, user: User, channel: str, text: str, *, thread_ts: str | None = None
    ) -> dict[str, Any]:
        """``user`` mentions the bot in ``channel``: an ``app_mention`` event and the
        ``message`` event Slack also sends to apps reading the channel."""
        event = self._user_message("app_mention", user, channel, text, thread_ts)
        message = {**event, "type": "message", "channel_type": "channel"}
        self.send_event(event)
        self.send_event(message)
        return event

    def slash_command(
        self, user: User, channel: str, text: str, *, command: str = "/openpista"
    ) -> str:
        """``user`` types ``/openpista text`` in ``channel``; returns the envelope id."""
        payload = {
            "token": "verification-token",
            "team_id": user.team,
            "team_domain": "emulator",
            "channel_id": channel,
            "channel_name": "directmessage" if channel.startswith("D") else "general",
            "user_id": user.id,
            "user_name": user.name,
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": f"{self.base_url}/respond/{next(self._ids)}",
            "trigger_id": f"{next(self._ids)}.trigger",
        }
        return self._envelope("slash_commands", payload, form=True)

    def press(self, user: User, posted: Posted, action_id: str) -> str:
        """``user`` presses the button ``action_id`` under the bot's message ``posted`` (as
        first posted: a client may still show buttons that were removed since)."""
        shown = Posted(posted.channel, posted.ts, "", blocks=_json_param(posted.params["blocks"]))
        [button] = [b for b in shown.buttons if b.get("action_id") == action_id]
        message = {
            "type": "message",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "ts": posted.ts,
            "text": posted.text,
            "blocks": posted.blocks,
        }
        if posted.thread_ts:
            message["thread_ts"] = posted.thread_ts
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": user.team},
            "api_app_id": APP_ID,
            "token": "verification-token",
            "container": {
                "type": "message",
                "message_ts": posted.ts,
                "channel_id": posted.channel,
                "is_ephemeral": False,
            },
            "trigger_id": f"{next(self._ids)}.trigger",
            "team": {"id": user.team, "domain": "emulator"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": posted.channel, "name": "general"},
            "message": message,
            "state": {"values": {}},
            "response_url": f"{self.base_url}/respond/{next(self._ids)}",
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "openpista_approval",
                    "text": button.get("text"),
                    "value": button.get("value"),
                    "type": "button",
                    "action_ts": self._ts(),
                }
            ],
        }
        return self._envelope("interactive", payload, form=True)

    def open_home(self, user: User) -> str:
        """``user`` opens the app's Home tab (an ``app_home_opened`` event)."""
        event = {
            "type": "app_home_opened",
            "user": user.id,
            "channel": user.dm,
            "tab": "home",
            "event_ts": self._ts(),
        }
        return self.send_event(event, team=user.team)

    def send_event(self, event: dict[str, Any], *, team: str | None = None) -> str:
        """Deliver any ``event`` (an ``event_callback``); returns its ``event_id``."""
        event_id = f"Ev{next(self._ids):08d}"
        payload = {
            "token": "verification-token",
            "team_id": team or event.get("team") or self.team,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team,
                    "user_id": BOT_USER,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        self._envelope("events_api", payload)
        return event_id

    def _user_message(
        self, kind: str, user: User, channel: str, text: str, thread_ts: str | None
    ) -> dict[str, Any]:
        ts = self._ts()
        event: dict[str, Any] = {
            "type": kind,
            "user": user.id,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "channel": channel,
            "team": user.team,
            "client_msg_id": f"c{next(self._ids)}",
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        return event

    def shared_file(
        self, data: bytes, name: str, mimetype: str = "application/octet-stream"
    ) -> dict[str, Any]:
        """A file a user shares (for ``message(..., files=[...])``): Slack's file object,
        downloadable from ``url_private`` with the bot token."""
        file_id = f"F{next(self._ids):08d}"
        with self._lock:
            self._shared[file_id] = data
        url = f"{self.base_url}/files-pri/{TEAM}-{file_id}/{urllib.parse.quote(name, safe='')}"
        return {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1],
            "size": len(data),
            "url_private": url,
            "url_private_download": url + "?download=1",
        }

    def _ts(self) -> str:
        return f"{int(time.time())}.{next(self._clock):06d}"

    # -- delivery -------------------------------------------------------------------------

    def _envelope(self, kind: str, payload: dict[str, Any], *, form: bool = False) -> str:
        envelope_id = f"env-{next(self._ids)}"
        if self.events_url is not None:
            if form and kind == "interactive":
                body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
            elif form:
                body = urllib.parse.urlencode(payload).encode()
            else:
                body = json.dumps(payload).encode()
            kind_type = "application/x-www-form-urlencoded" if form else "application/json"
            self._outbox.put((body, kind_type))
            with self._lock:
                if self._poster is None:
                    self._poster = threading.Thread(target=self._post_all, daemon=True)
                    self._poster.start()
            return envelope_id
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": kind != "events_api",
            "payload": payload,
        }
        if kind == "events_api":
            envelope["retry_attempt"], envelope["retry_reason"] = 0, ""
            with self._lock:
                self._unacked[envelope_id] = envelope
        self.send_raw(json.dumps(envelope))
        return envelope_id

    def send_raw(self, text: str) -> None:
        """Send ``text`` as is on the socket (or when the next one connects)."""
        with self._lock:
            socket, loop = self._socket, self._loop
            if socket is None or loop is None:
                self._pending.append(text)
                return
        asyncio.run_coroutine_threadsafe(socket.send_text(text), loop).result(10)

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the app to reconnect, as Slack does before it closes a socket."""
        self.send_raw(json.dumps({"type": "disconnect", "reason": reason, "debug_info": {}}))

    def drop(self) -> None:
        """Close the socket without a ``disconnect`` message (a network failure)."""
        with self._lock:
            socket, loop, self._socket = self._socket, self._loop, None
        if socket is not None and loop is not None:
            asyncio.run_coroutine_threadsafe(socket.close(1011), loop).result(10)

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The headers of a request signed as Slack signs them (v0)."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        base = b"v0:" + stamp.encode() + b":" + body
        digest = hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}

    def _post_all(self) -> None:
        """POST queued events one at a time, in order; a refused connection or an answer
        other than 2xx is retried (``X-Slack-Retry-Num``), as Slack does (after seconds
        here, not minutes)."""
        while (item := self._outbox.get()) is not None:
            body, content_type = item
            reason = ""
            for attempt in range(HTTP_RETRIES + 1):
                headers = {"Content-Type": content_type, **self.sign(body)}
                if attempt:
                    headers["X-Slack-Retry-Num"] = str(attempt)
                    headers["X-Slack-Retry-Reason"] = reason
                try:
                    status, text = _post(self.events_url or "", body, headers)
                    reason = "http_error"
                except OSError as exc:
                    status, text, reason = 0, str(exc), "connection_failed"
                with self._lock:
                    self.deliveries.append((status, text))
                if 200 <= status < 300 or self._closing.wait(HTTP_RETRY_DELAY):
                    break

    def stop(self) -> None:
        """Stop posting events and serving."""
        self._closing.set()
        if self._poster is not None:
            self._outbox.put(None)
            self._poster.join(timeout=35)
            self._poster = None
        super().stop()

    async def post_signed(
        self, body: bytes, headers: dict[str, str] | None = None, *, url: str | None = None
    ) -> tuple[int, str]:
        """POST ``body`` to :attr:`events_url` with ``headers`` (default: signed now, JSON);
        returns ``(status, body)``."""
        if headers is None:
            headers = {"Content-Type": "application/json", **self.sign(body)}
        target = url or self.events_url or ""
        return await asyncio.to_thread(_post, target, body, headers)

    # -- scripting ------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int = 429,
        *,
        error: str = "ratelimited",
        retry_after: float | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with HTTP ``status`` (429 with a
        ``Retry-After`` of ``retry_after`` seconds, default 1)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._lock:
            queue = self._errors.setdefault(method, [])
            queue.extend([(status, {"ok": False, "error": error}, retry_after)] * times)

    def slow_next(
        self, method: str, seconds: float, matching: Callable[[dict[str, Any]], bool] = bool
    ) -> None:
        """Answer the next call of ``method`` whose parameters ``matching`` accepts
        ``seconds`` late, after doing it (a message posted shows in the chat before its
        ``chat.postMessage`` answer arrives)."""
        with self._lock:
            self._slow[method] = (seconds, matching)

    def revoke_scope(self, scope: str) -> None:
        """The app no longer has ``scope``: calls that need it fail with ``missing_scope``."""
        self.scopes.discard(scope)

    async def wait_for_messages(
        self, count: int, *, channel: str | None = None, wait: float = 30.0
    ) -> list[Posted]:
        """Wait until at least ``count`` messages were posted (in ``channel``)."""
        deadline = time.monotonic() + wait
        while True:
            found = [m for m in list(self.messages) if channel is None or m.channel == channel]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} message(s) posted, expected {count}: {found}")
            await asyncio.sleep(0.01)

    async def wait_until(self, check: Any, wait: float = 30.0) -> Any:
        """The first truthy ``check()``, waiting up to ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while not (value := check()):
            if time.monotonic() > deadline:
                raise AssertionError("the emulator never saw what the test waited for")
            await asyncio.sleep(0.01)
        return value

    # -- the server -----------------------------------------------------------------------

    def asgi_app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route, WebSocketRoute

        return Starlette(
            routes=[
                Route("/api/{method}", self._api, methods=["POST", "GET"]),
                Route("/upload/{file_id}", self._upload, methods=["POST"]),
                Route("/respond/{key}", self._respond, methods=["POST"]),
                Route("/files-pri/{file_id}/{name:path}", self._file, methods=["GET"]),
                WebSocketRoute("/link/", self._link),
            ]
        )

    async def _api(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        method = request.path_params["method"]
        params = await _params(request)
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        token = token or str(params.pop("token", ""))
        app_level = method == "apps.connections.open"
        if token != (self.app_token if app_level else self.bot_token):
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        with self._lock:
            self.calls.append(method)
            now = time.monotonic()
            if now < self._retry_until.get(method, 0):
                self.early_retries += 1
                return JSONResponse(
                    {"ok": False, "error": "ratelimited"}, 429, headers={"Retry-After": "1"}
                )
            queue = self._errors.get(method) or []
            scripted = queue.pop(0) if queue else None
            if scripted is not None:
                status, body, retry_after = scripted
                headers = {}
                if retry_after is not None:
                    headers["Retry-After"] = str(int(retry_after))
                    self._retry_until[method] = now + retry_after * 0.9
                return JSONResponse(body, status, headers=headers)
        needed = _NEEDS.get(method)
        if needed is not None and needed not in self.scopes:
            provided = ",".join(sorted(self.scopes))
            body = {"ok": False, "error": "missing_scope", "needed": needed, "provided": provided}
            return JSONResponse(body)
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return JSONResponse({"ok": False, "error": "unknown_method"}, 404)
        answer = handler(params)
        with self._lock:
            late, matching = self._slow.get(method, (0.0, bool))
            if late and matching(params):
                del self._slow[method]
            else:
                late = 0.0
        if late:
            await asyncio.sleep(late)
        return JSONResponse(answer)

    def _m_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://emulator.slack.com/",
            "team": "Emulator",
            "user": "openpista",
            "team_id": self.team,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _m_apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        ticket = f"t{next(self._ids)}"
        with self._lock:
            self._tickets.add(ticket)
        port = self.port
        return {"ok": True, "url": f"ws://127.0.0.1:{port}/link/?ticket={ticket}&app_id={APP_ID}"}

    def _m_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, text = str(params.get("channel") or ""), str(params.get("text") or "")
        blocks = _json_param(params.get("blocks"))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        if len(text) > TEXT_LIMIT:
            return {"ok": False, "error": "msg_too_long"}
        thread_ts = params.get("thread_ts") or None
        posted = Posted(channel, self._ts(), text, thread_ts, blocks, params=dict(params))
        with self._lock:
            self.messages.append(posted)
        return {"ok": True, "channel": channel, "ts": posted.ts, "message": self._json(posted)}

    def _m_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = params.get("channel"), params.get("ts")
        text = str(params.get("text") or "")
        if len(text) > TEXT_LIMIT:
            return {"ok": False, "error": "msg_too_long"}
        with self._lock:
            found = [m for m in self.messages if (m.channel, m.ts) == (channel, ts)]
            if not found:
                return {"ok": False, "error": "message_not_found"}
            posted = found[0]
            posted.edits.append(dict(params))
            posted.text = text
            if "blocks" in params:
                posted.blocks = _json_param(params.get("blocks")) or None
        return {"ok": True, "channel": channel, "ts": ts, "text": text}

    def _m_chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.ephemeral.append(dict(params))
        return {"ok": True, "message_ts": self._ts()}

    def _m_views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        view = _json_param(params.get("view"))
        if not params.get("user_id") or not isinstance(view, dict) or view.get("type") != "home":
            return {"ok": False, "error": "invalid_arguments"}
        with self._lock:
            self.home_views[str(params["user_id"])] = view
        return {"ok": True, "view": {"id": f"V{next(self._ids)}", **view}}

    def _m_conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        is_im = channel.startswith("D")
        return {
            "ok": True,
            "channel": {"id": channel, "is_im": is_im, "is_channel": channel.startswith("C")},
        }

    def _m_conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        users = str(params.get("users") or "")
        if not users:
            return {"ok": False, "error": "users_list_not_supplied"}
        return {"ok": True, "channel": {"id": "D" + users.split(",")[0][1:]}}

    def _m_conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = params.get("channel"), params.get("ts")
        with self._lock:
            replies = [
                self._json(m)
                for m in self.messages
                if m.channel == channel and (m.thread_ts == ts or m.ts == ts)
            ]
        return {"ok": True, "messages": replies, "has_more": False}

    def _m_files_getUploadURLExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        name, length = str(params.get("filename") or ""), params.get("length")
        try:
            size = int(str(length))
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}
        if not name or size <= 0:
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._ids):08d}"
        with self._lock:
            self._pending_uploads[file_id] = (name, size, None)
        return {"ok": True, "upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}

    def _m_files_completeUploadExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        files = _json_param(params.get("files")) or []
        done = []
        with self._lock:
            for item in files:
                pending = self._pending_uploads.pop(str(item.get("id")), None)
                if pending is None or pending[2] is None:
                    return {"ok": False, "error": "file_not_found"}
                name, _, data = pending
                assert data is not None
                upload = Upload(
                    str(item["id"]),
                    name,
                    data,
                    params.get("channel_id") or params.get("channels"),
                    params.get("thread_ts"),
                    item.get("title"),
                )
                self.uploads.append(upload)
                done.append({"id": upload.id, "name": name, "title": upload.title})
        return {"ok": True, "files": done}

    async def _upload(self, request: Request) -> Response:
        from starlette.responses import PlainTextResponse

        file_id = request.path_params["file_id"]
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/"):
            form = await request.form()
            part = next(iter(form.values()), "")
            data = part.encode() if isinstance(part, str) else await part.read()
        else:
            data = await request.body()
        with self._lock:
            pending = self._pending_uploads.get(file_id)
            if pending is None:
                return PlainTextResponse("unknown upload", 404)
            name, size, _ = pending
            if len(data) != size:
                return PlainTextResponse("length mismatch", 400)
            self._pending_uploads[file_id] = (name, size, data)
        return PlainTextResponse(f"OK - {len(data)}")

    async def _file(self, request: Request) -> Response:
        from starlette.responses import PlainTextResponse, Response

        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        file_id = request.path_params["file_id"].rpartition("-")[2]
        with self._lock:
            data = self._shared.get(file_id)
            if token == self.bot_token and data is not None:
                self.downloads.append(file_id)
        if token != self.bot_token:  # Slack answers an HTML login page; a 302 here
            return PlainTextResponse("login", 302, headers={"Location": "/signin"})
        if data is None:
            return PlainTextResponse("not found", 404)
        return Response(data, media_type="application/octet-stream")

    async def _respond(self, request: Request) -> Response:
        from starlette.responses import PlainTextResponse

        body = json.loads(await request.body() or b"{}")
        with self._lock:
            self.responses.append(body)
        return PlainTextResponse("ok")

    async def _link(self, websocket: WebSocket) -> None:
        from starlette.websockets import WebSocketDisconnect

        ticket = websocket.query_params.get("ticket", "")
        with self._lock:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)
        if not valid:
            await websocket.close(4001)
            return
        await websocket.accept()
        hello = {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {"host": "emulator", "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID},
        }
        await websocket.send_text(json.dumps(hello))
        with self._lock:
            self.connections += 1
            self._socket, self._loop = websocket, asyncio.get_running_loop()
            pending, self._pending = self._pending, []
            for envelope in self._unacked.values():  # sent on a socket gone since: again
                text = json.dumps(envelope)
                if text not in pending:
                    envelope["retry_attempt"] += 1
                    envelope["retry_reason"] = "timeout"
                    pending.append(json.dumps(envelope))
        for text in pending:
            await websocket.send_text(text)
        try:
            while True:
                raw = await websocket.receive_text()
                try:
                    ack = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(ack, dict) and "envelope_id" in ack:
                    with self._lock:
                        self.acks[str(ack["envelope_id"])] = ack
                        self._unacked.pop(str(ack["envelope_id"]), None)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            with self._lock:
                if self._socket is websocket:
                    self._socket = None

    def _json(self, posted: Posted) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "text": posted.text,
            "ts": posted.ts,
        }
        if posted.thread_ts:
            data["thread_ts"] = posted.thread_ts
        if posted.blocks:
            data["blocks"] = posted.blocks
        return data


async def _params(request: Request) -> dict[str, Any]:
    """A Web API call's parameters: JSON body, form body or query string."""
    params: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body:
        return params
    if request.headers.get("content-type", "").startswith("application/json"):
        data = json.loads(body)
        if isinstance(data, dict):
            params.update(data)
        return params
    params.update(dict(urllib.parse.parse_qsl(body.decode())))
    return params


def _json_param(value: Any) -> Any:
    """``blocks`` and ``files`` come as JSON text in form bodies, as lists in JSON ones."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.request("POST", parts.path or "/", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()
