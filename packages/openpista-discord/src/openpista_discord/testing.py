"""A local Discord for tests: the real discord.py runs against it unchanged.

REST under ``/api/v10``: ``GET /users/@me``, ``GET /oauth2/applications/@me``,
``GET /gateway/bot`` (names this server's gateway), ``POST /channels/{id}/messages`` (JSON
or multipart with files; content of at most 2,000 characters), ``PATCH`` of a message,
``POST /channels/{id}/typing``, ``GET /channels/{id}`` and ``GET /channels/{id}/messages``
(``before``, ``after`` or ``around`` a message id, ``limit`` 1..100 (default 50), newest
first, as Discord answers; a channel in :attr:`~DiscordEmulator.unreadable` is ``403``
Missing Access; one in :attr:`~DiscordEmulator.held_history` answers once taken out of it),
``GET /guilds/{id}/members/{user_id}`` (the guild member object; a user who never wrote in
the guild or :meth:`~DiscordEmulator.leave` s it is ``404`` Unknown Member, 10007),
``POST /channels/{id}/messages/{id}/threads`` (dispatches
``THREAD_CREATE``), ``POST /users/@me/channels`` (DM channel), interaction callbacks and
follow-ups (``/interactions/{id}/{token}/callback``, ``/webhooks/{app}/{token}...``) and
``PUT`` of global or guild application commands. A wrong ``Authorization`` is ``401``;
failures have Discord's ``{"message", "code"}`` shape, and :meth:`DiscordEmulator.rate_limit`
answers the next calls ``429`` with ``retry_after`` (a call back before the wait is over is
counted in :attr:`~DiscordEmulator.early_retries`).

The gateway WebSocket (``/gateway``, JSON, uncompressed): HELLO, IDENTIFY (a wrong token
closes with 4004, privileged intents not granted with 4014) then READY and one GUILD_CREATE
per guild, heartbeats and their ACKs, RESUME (missed events replayed, then RESUMED; an
unknown session gets INVALID_SESSION). Tests act as users with
:meth:`~DiscordEmulator.send_message`, :meth:`~DiscordEmulator.slash` and
:meth:`~DiscordEmulator.press`, break things with :meth:`~DiscordEmulator.disconnect` and
:meth:`~DiscordEmulator.send_raw`, and read what the bot did in
:attr:`~DiscordEmulator.messages`::

    with DiscordEmulator() as discord:        # config: api_base = discord.base_url
        discord.send_message(discord.dm_channel(ALICE), "hello", ALICE)
        [reply] = await discord.wait_for_messages(1)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from openpista_testing.server import ThreadedServer

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.websockets import WebSocket

DEFAULT_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0.GEmuLa.tor-token-for-tests-only_0123456789"
CONTENT_LIMIT = 2000
EPHEMERAL = 64
MESSAGE_CONTENT_INTENT = 1 << 15
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | MESSAGE_CONTENT_INTENT  # members, presences, content
HEARTBEAT_MS = 41250
_T = TypeVar("_T")
_TIMESTAMP = "2026-12-03T10:00:00.000000+00:00"


@dataclass(frozen=True)
class User:
    """A Discord user as tests impersonate it."""

    id: int
    username: str = "tester"
    roles: tuple[int, ...] = ()
    """Role ids it has in the emulator's guild."""

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.username.title(),
            "avatar": None,
            "bot": False,
        }


@dataclass
class Sent:
    """A message the bot posted (its content follows later edits)."""

    id: int
    channel_id: int
    content: str
    components: list[Any] = field(default_factory=list)
    files: list[tuple[str, bytes]] = field(default_factory=list)
    edits: int = 0
    reference: int | None = None


@dataclass
class _Session:
    id: str
    seq: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)


class DiscordEmulator(ThreadedServer):
    """Discord's REST API and gateway on 127.0.0.1 (see the module docstring)."""

    name = "discord emulator"

    def __init__(
        self, *, token: str = DEFAULT_TOKEN, roles: tuple[int, ...] = (), port: int = 0
    ) -> None:
        super().__init__(port)
        self.roles = roles
        """Role ids the guild has besides ``@everyone`` (give them to users with
        :attr:`User.roles`)."""
        self.token = token
        self.application_id = 1100000000000000001
        self.bot = User(1100000000000000002, "openpista_test_bot")
        self.guild_id = 1100000000000000010
        self.text_channel = 1100000000000000011
        """A guild text channel (the guild also has this channel's ``@everyone`` role)."""
        self.granted_intents = PRIVILEGED_INTENTS
        """Privileged intents the application was granted in the Developer Portal."""
        self.messages: list[Sent] = []
        self.typing: list[int] = []
        """Channel ids the bot showed "typing" in, in order."""
        self.interaction_responses: dict[int, list[dict[str, Any]]] = {}
        """Interaction id -> callback bodies and follow-ups, in order."""
        self.commands: dict[str, list[dict[str, Any]]] = {}
        """``"global"`` or a guild id -> the application commands last registered there."""
        self.threads: dict[int, dict[str, Any]] = {}
        self.unreadable: set[int] = set()
        """Channels whose history the bot may not read (``403`` Missing Access, 50001)."""
        self.held_history: set[int] = set()
        """Channels whose ``GET /channels/{id}/messages`` answer waits while they are in
        it (a slow REST call)."""
        self.members: dict[int, User] = {}
        """The guild's members besides the bot (a user joins by writing in the guild)."""
        self.member_answers: dict[int, Any] = {}
        """User id -> what its member lookup answers instead (a test's forged answer)."""
        self.identifies = 0
        self.connections = 0
        """Gateway WebSockets open now."""
        self.peak_connections = 0
        """The most gateway WebSockets that were open at once."""
        self.resumes = 0
        self.early_retries = 0
        self.rate_limited = 0
        """How many calls were answered 429."""
        self.requests: list[tuple[str, str]] = []
        self._ids = itertools.count(1200000000000000000)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws: WebSocket | None = None
        self._session: _Session | None = None
        self._sessions: dict[str, _Session] = {}
        self._limited: list[float] = []  # retry_after of scripted 429s still to answer
        self._limited_global = False
        self._blocked_until = 0.0
        self._dm_channels: dict[int, int] = {}
        self._interactions: dict[str, int] = {}  # token -> interaction id
        self._bot_messages: dict[int, dict[str, Any]] = {}
        self._files: dict[int, bytes] = {}  # attachment id -> content (the "CDN")
        self._history: dict[int, list[dict[str, Any]]] = {}  # channel -> users' messages
        self._tasks: set[asyncio.Task[None]] = set()

    # -- acting as users ------------------------------------------------------------------

    def dm_channel(self, user: User) -> int:
        """The id of the DM channel between ``user`` and the bot."""
        with self._lock:
            return self._dm_channels.setdefault(user.id, next(self._ids))

    def send_message(
        self,
        channel_id: int,
        content: str,
        user: User,
        *,
        guild: bool | None = None,
        mention_bot: bool = False,
        reply_to: int | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """``user`` writes ``content`` in ``channel_id`` (a guild channel when ``guild``,
        by default when it is not a DM channel); ``mention_bot`` prefixes ``<@bot>``;
        ``reply_to`` answers that message. Returns the dispatched MESSAGE_CREATE data."""
        in_guild = guild if guild is not None else channel_id not in self._dm_channels.values()
        if mention_bot:
            content = f"<@{self.bot.id}> {content}"
        data: dict[str, Any] = {
            "id": str(next(self._ids)),
            "channel_id": str(channel_id),
            "author": user.as_json(),
            "content": content,
            "timestamp": _TIMESTAMP,
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [self.bot.as_json() | {"bot": True}] if mention_bot else [],
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": [],
            "pinned": False,
            "type": 0 if reply_to is None else 19,
            "flags": 0,
        }
        if reply_to is not None:
            data["message_reference"] = {"message_id": str(reply_to), "channel_id": str(channel_id)}
            data["referenced_message"] = self._bot_messages.get(reply_to)
        self.store(channel_id, dict(data))  # REST has no guild_id or member (gateway only)
        if in_guild:
            self.join(user)
            data["guild_id"] = str(self.guild_id)
            data["member"] = self._member(user, with_user=False)
        self.dispatch("MESSAGE_CREATE", data)
        return data

    def join(self, user: User) -> None:
        """``user`` joins the guild (with its :attr:`User.roles`)."""
        with self._lock:
            self.members[user.id] = user

    def leave(self, user: User) -> None:
        """``user`` leaves the guild (its member lookup is ``404`` Unknown Member)."""
        with self._lock:
            self.members.pop(user.id, None)

    def store(self, channel_id: int, data: dict[str, Any]) -> None:
        """Put the message ``data`` (REST shape) in ``channel_id``'s history without
        dispatching it (:meth:`send_message` does both); a test may store a malformed one."""
        with self._lock:
            self._history.setdefault(channel_id, []).append(data)

    def open_thread(self, owner: User, name: str = "a thread") -> int:
        """``owner`` opens a thread in :attr:`text_channel` (THREAD_CREATE); its id."""
        thread_id = next(self._ids)
        data = self._thread_data(thread_id, self.text_channel, owner.id, name, 1440)
        self.threads[thread_id] = data
        self.dispatch("THREAD_CREATE", data | {"newly_created": True})
        return thread_id

    def attachment(
        self, name: str, content: bytes, mime: str = "application/octet-stream", size: int = -1
    ) -> dict[str, Any]:
        """An attachment for :meth:`send_message`, served at its ``url`` (``size``: what
        it claims to weigh, by default the truth)."""
        attachment_id = next(self._ids)
        self._files[attachment_id] = content
        return {
            "id": str(attachment_id),
            "filename": name,
            "size": len(content) if size < 0 else size,
            "url": f"{self.base_url}/attachments/{attachment_id}/{name}",
            "proxy_url": f"{self.base_url}/attachments/{attachment_id}/{name}",
            "content_type": mime,
        }

    def slash(
        self, channel_id: int, user: User, name: str, options: dict[str, Any] | None = None
    ) -> int:
        """``user`` runs the slash command ``/name`` with ``options`` in ``channel_id``;
        returns the interaction id (its answers: :attr:`interaction_responses`)."""
        data = {
            "id": str(next(self._ids)),
            "name": name,
            "type": 1,
            "options": [
                {"name": key, "type": 3, "value": value} for key, value in (options or {}).items()
            ],
        }
        return self._interact(channel_id, user, 2, data)

    def press(self, message_id: int, user: User, custom_id: str) -> int:
        """``user`` presses the button ``custom_id`` of the bot's message ``message_id``."""
        message = self._bot_messages[message_id]
        data = {"custom_id": custom_id, "component_type": 2}
        return self._interact(int(message["channel_id"]), user, 3, data, message=message)

    def _interact(
        self,
        channel_id: int,
        user: User,
        kind: int,
        data: dict[str, Any],
        message: dict[str, Any] | None = None,
    ) -> int:
        interaction_id = next(self._ids)
        token = f"itoken-{uuid.uuid4().hex}"
        with self._lock:
            self._interactions[token] = interaction_id
            self.interaction_responses[interaction_id] = []
        in_guild = channel_id not in self._dm_channels.values()
        payload: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "channel_id": str(channel_id),
            "channel": {"id": str(channel_id), "type": 0 if in_guild else 1},
            "token": token,
            "version": 1,
            "locale": "en-US",
            "app_permissions": "0",
            "attachment_size_limit": 8 * 1024 * 1024,
            "entitlements": [],
            "authorizing_integration_owners": {},
        }
        if message is not None:
            payload["message"] = message
        if in_guild:
            payload["guild_id"] = str(self.guild_id)
            payload["guild_locale"] = "en-US"
            payload["member"] = self._member(user, with_user=True)
        else:
            payload["user"] = user.as_json()
        self.dispatch("INTERACTION_CREATE", payload)
        return interaction_id

    # -- scripting failures ---------------------------------------------------------------

    def rate_limit(
        self, retry_after: float = 0.2, *, times: int = 1, is_global: bool = False
    ) -> None:
        """Answer the next ``times`` message sends or edits ``429`` with ``retry_after``."""
        with self._lock:
            self._limited.extend([retry_after] * times)
            self._limited_global = is_global

    def disconnect(self, code: int = 4000) -> None:
        """Close the gateway connection (4000: resumable, as Discord does now and then)."""
        self._run(self._close(code))

    def forget_sessions(self) -> None:
        """Forget every gateway session: a RESUME then gets INVALID_SESSION."""
        with self._lock:
            self._sessions.clear()

    def send_raw(self, text: str) -> None:
        """Send ``text`` as it is on the gateway (malformed or oversized frames)."""
        self._run(self._send_text(text))

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Dispatch a gateway event to the bot (kept for a RESUME if it is disconnected)."""
        self._run(self._dispatch(event, data))

    # -- reading --------------------------------------------------------------------------

    def texts(self, channel_id: int) -> list[str]:
        """The current content of the bot's messages in ``channel_id``."""
        return [m.content for m in list(self.messages) if m.channel_id == channel_id]

    def connected(self) -> bool:
        """Whether the bot holds a gateway connection that has identified or resumed."""
        return self._ws is not None and self._session is not None

    async def wait_for_messages(
        self, count: int, *, channel_id: int | None = None, wait: float = 30.0
    ) -> list[Sent]:
        """Wait (without blocking the event loop) until the bot posted at least ``count``
        messages (in ``channel_id``, if given); returns them."""
        return await _until(
            lambda: [m for m in list(self.messages) if channel_id in (None, m.channel_id)],
            count,
            wait,
        )

    async def wait_for_responses(
        self, interaction_id: int, count: int = 1, wait: float = 30.0
    ) -> list[dict[str, Any]]:
        """Wait until the interaction got ``count`` answers (callback and follow-ups)."""
        return await _until(
            lambda: list(self.interaction_responses.get(interaction_id, [])), count, wait
        )

    # -- server ---------------------------------------------------------------------------

    def asgi_app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route, WebSocketRoute

        api = "/api/v10"
        every = ["GET", "POST", "PATCH", "PUT", "DELETE"]
        return Starlette(
            routes=[
                WebSocketRoute("/gateway", self._gateway),
                WebSocketRoute("/gateway/", self._gateway),
                Route(api + "/{path:path}", self._rest, methods=every),
                Route("/attachments/{id:int}/{name}", self._download),
            ]
        )

    async def _rest(self, request: Request) -> Response:
        from starlette.responses import JSONResponse, Response

        self._loop = asyncio.get_running_loop()
        path = "/" + request.path_params["path"]
        method = request.method
        self.requests.append((method, path))
        parts = path.strip("/").split("/")
        interaction = parts[0] in ("interactions", "webhooks")
        if not interaction and request.headers.get("authorization") != f"Bot {self.token}":
            return _error(401, "401: Unauthorized", 0)
        limited = self._limit(method, parts)
        if limited is not None:
            return limited
        if method == "GET" and len(parts) == 3 and parts[0::2] == ["channels", "messages"]:
            held = _snowflake(parts[1], "channel_id", strict=False)
            # a set the test's thread changes: polled (one membership test at a time)
            while held in self.held_history:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        try:
            body = await _body(request)
            result = self._route(method, parts, body, dict(request.query_params))
        except _ApiError as exc:
            return _error(exc.status, exc.message, exc.code, exc.errors)
        if result is None:
            return Response(status_code=204)
        return JSONResponse(result)

    async def _download(self, request: Request) -> Response:
        from starlette.responses import Response

        self.requests.append(("GET", request.url.path))
        content = self._files.get(request.path_params["id"])
        if content is None:
            return Response(status_code=404)
        return Response(content, media_type="application/octet-stream")

    def _limit(self, method: str, parts: list[str]) -> Response | None:
        from starlette.responses import JSONResponse

        if not (parts[0] == "channels" and "messages" in parts and method in ("POST", "PATCH")):
            return None
        now = time.monotonic()
        with self._lock:
            if now < self._blocked_until:
                self.early_retries += 1
                wait = self._blocked_until - now
            elif self._limited:
                wait = self._limited.pop(0)
                self._blocked_until = now + wait
            else:
                return None
            scope = self._limited_global
            self.rate_limited += 1
        headers = {"Via": "1.1 google", "Retry-After": str(max(1, round(wait)))}
        if scope:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": wait, "global": scope}
        return JSONResponse(body, status_code=429, headers=headers)

    def _route(
        self, method: str, parts: list[str], body: dict[str, Any], query: dict[str, str]
    ) -> Any:
        match method, parts:
            case "GET", ["users", "@me"] | ["oauth2", "applications", "@me"] | ["gateway", "bot"]:
                return self._about(parts[0])
            case "POST", ["users", "@me", "channels"]:
                user = int(body.get("recipient_id", 0))
                return _dm(self.dm_channel(User(user)), User(user))
            case "GET", ["channels", channel, *rest] if rest in ([], ["messages"]):
                read = self._messages if rest else self._channel
                return read(_snowflake(channel, "channel_id"), query)
            case "GET", ["guilds", guild, "members", user]:
                guild_id, user_id = _snowflake(guild, "guild_id"), _snowflake(user, "user_id")
                return self._guild_member(guild_id, user_id)
            case "POST", ["channels", channel, "messages"]:
                return self._post_message(int(channel), body)
            case "PATCH", ["channels", channel, "messages", message]:
                return self._edit_message(int(channel), int(message), body)
            case "POST", ["channels", channel, "typing"]:
                self.typing.append(int(channel))
                return None
            case "POST", ["channels", channel, "messages", message, "threads"]:
                return self._open_thread(int(channel), int(message), body)
            case "POST", ["interactions", interaction, token, "callback"]:
                return self._callback(int(interaction), token, body)
            case "POST", ["webhooks", _app, token]:
                return self._followup(token, body)
            case "PATCH", ["webhooks", _app, token, "messages", _message]:
                return self._followup(token, body)
            case "PUT", ["applications", _app, "commands"]:
                return self._commands("global", body)
            case "PUT", ["applications", _app, "guilds", guild, "commands"]:
                return self._commands(guild, body)
        raise _ApiError(404, "404: Not Found", 0)

    def _about(self, what: str) -> dict[str, Any]:
        """``GET /users/@me``, ``/oauth2/applications/@me`` or ``/gateway/bot``."""
        if what == "users":
            return self.bot.as_json() | {"bot": True, "verified": True, "flags": 0}
        if what == "oauth2":
            return self._application()
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        url = self.base_url.replace("http", "ws", 1) + "/gateway"
        return {"url": url, "shards": 1, "session_start_limit": limit}

    def _post_message(self, channel_id: int, body: dict[str, Any]) -> dict[str, Any]:
        content = str(body.get("content") or "")
        files = body.pop("__files__", [])
        if len(content) > CONTENT_LIMIT:
            raise _ApiError(400, "Invalid Form Body (content: Must be 2000 or fewer in length.)")
        if not content and not files and not body.get("components"):
            raise _ApiError(400, "Cannot send an empty message", 50006)
        reference = (body.get("message_reference") or {}).get("message_id")
        sent = Sent(
            next(self._ids),
            channel_id,
            content,
            list(body.get("components") or []),
            files,
            reference=int(reference) if reference else None,
        )
        data = self._bot_message(sent)
        with self._lock:
            self.messages.append(sent)
            self._bot_messages[sent.id] = data
        return data

    def _channel(self, channel_id: int, _query: dict[str, str] | None = None) -> Any:
        if channel_id in self.unreadable:
            raise _ApiError(403, "Missing Access", 50001)
        if channel_id == self.text_channel:
            return self._guild()["channels"][0] | {"guild_id": str(self.guild_id)}
        if channel_id in self.threads:
            return self.threads[channel_id]
        for user_id, dm in self._dm_channels.items():
            if dm == channel_id:
                return _dm(dm, User(user_id))
        raise _ApiError(404, "Unknown Channel", 10003)

    def _messages(self, channel_id: int, query: dict[str, str] | None = None) -> Any:
        """Discord's ``GET /channels/{id}/messages``: at most ``limit`` messages before,
        after or around a message id (else the newest), newest first."""
        self._channel(channel_id)  # 403 / 404 as Discord
        query = query or {}
        limit = _limit_of(query.get("limit", "50"))
        given = [key for key in ("around", "before", "after") if key in query]
        if len(given) > 1:
            raise _ApiError(400, "Invalid Form Body")  # Discord takes only one of them
        with self._lock:
            history = list(self._history.get(channel_id, []))
            history += [
                self._bot_messages[m.id] for m in self.messages if m.channel_id == channel_id
            ]
        ids, written = [], 0  # a malformed id sorts where it was stored
        for message in history:
            written = max(written, _snowflake(str(message["id"]), "id", strict=False))
            ids.append(written)
        order = sorted(range(len(history)), key=ids.__getitem__)
        history, ids = [history[i] for i in order], [ids[i] for i in order]
        if not given:
            chosen = history[-limit:]
        else:
            at = _snowflake(query[given[0]], given[0])
            if given[0] == "before":
                chosen = [m for m, i in zip(history, ids, strict=True) if i < at][-limit:]
            elif given[0] == "after":
                chosen = [m for m, i in zip(history, ids, strict=True) if i > at][:limit]
            else:
                older = [m for m, i in zip(history, ids, strict=True) if i < at]
                newer = [m for m, i in zip(history, ids, strict=True) if i >= at]
                chosen = older[-(limit // 2) :] if limit > 1 else []
                chosen += newer[: limit - len(chosen)]
        return list(reversed(chosen))

    def _guild_member(self, guild_id: int, user_id: int) -> Any:
        """Discord's ``GET /guilds/{id}/members/{user_id}``: the guild member object."""
        if guild_id != self.guild_id:
            raise _ApiError(404, "Unknown Guild", 10004)
        with self._lock:
            if user_id in self.member_answers:
                return self.member_answers[user_id]
            user = self.bot if user_id == self.bot.id else self.members.get(user_id)
        if user is None:
            raise _ApiError(404, "Unknown Member", 10007)
        return self._member(user, with_user=True)

    def _edit_message(self, channel_id: int, message_id: int, body: dict[str, Any]) -> Any:
        found = [m for m in self.messages if m.id == message_id and m.channel_id == channel_id]
        if not found:
            raise _ApiError(404, "Unknown Message", 10008)
        sent = found[0]
        if "content" in body:
            content = str(body["content"] or "")
            if len(content) > CONTENT_LIMIT:
                raise _ApiError(400, "Invalid Form Body (content: Must be 2000 or fewer.)")
            sent.content = content
        if "components" in body:
            sent.components = list(body["components"] or [])
        sent.edits += 1
        data = self._bot_message(sent)
        self._bot_messages[sent.id] = data
        return data

    def _open_thread(
        self, channel_id: int, message_id: int, body: dict[str, Any]
    ) -> dict[str, Any]:
        thread_id = message_id  # as on Discord: a thread started from a message shares its id
        name = str(body.get("name") or "thread")[:100]
        archive = int(body.get("auto_archive_duration") or 1440)
        data = self._thread_data(thread_id, channel_id, self.bot.id, name, archive)
        self.threads[thread_id] = data
        assert self._loop is not None
        task = self._loop.create_task(
            self._dispatch("THREAD_CREATE", data | {"newly_created": True})
        )
        self._tasks.add(task)  # after this answer, as on Discord; kept from the GC
        task.add_done_callback(self._tasks.discard)
        return data

    def _callback(self, interaction_id: int, token: str, body: dict[str, Any]) -> Any:
        if self._interactions.get(token) != interaction_id:
            raise _ApiError(404, "Unknown interaction", 10062)
        responses = self.interaction_responses[interaction_id]
        if (responses and responses[0].get("type") != 5) or len(responses) > 1:
            raise _ApiError(400, "Interaction has already been acknowledged.", 40060)
        responses.append(body)
        data = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        return {
            "interaction": {
                "id": str(interaction_id),
                "type": 2,
                "response_message_loading": body.get("type") == 5,
                "response_message_ephemeral": bool(flags & EPHEMERAL),
            },
            "resource": {"type": body.get("type", 4)},
        }

    def _followup(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        interaction_id = self._interactions.get(token)
        if interaction_id is None:
            raise _ApiError(404, "Unknown Webhook", 10015)
        self.interaction_responses[interaction_id].append(body)
        sent = Sent(next(self._ids), 0, str(body.get("content") or ""))
        return self._bot_message(sent)

    def _commands(self, scope: str, body: Any) -> list[dict[str, Any]]:
        if not isinstance(body, list):
            raise _ApiError(400, "Invalid Form Body")
        registered = []
        for command in body:
            registered.append(
                command
                | {
                    "id": str(next(self._ids)),
                    "application_id": str(self.application_id),
                    "version": "1",
                    "default_member_permissions": None,
                    "type": command.get("type", 1),
                    "description": command.get("description", ""),
                }
            )
        self.commands[scope] = registered
        return registered

    # -- gateway --------------------------------------------------------------------------

    async def _gateway(self, ws: WebSocket) -> None:
        from starlette.websockets import WebSocketDisconnect

        self._loop = asyncio.get_running_loop()
        await ws.accept()
        self.connections += 1
        self.peak_connections = max(self.peak_connections, self.connections)
        try:
            await ws.send_json({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_MS}, "s": None})
            while True:
                raw = await ws.receive_text()
                await self._on_frame(ws, json.loads(raw))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.connections -= 1
            if self._ws is ws:
                self._ws = None
                self._session = None

    async def _on_frame(self, ws: WebSocket, frame: dict[str, Any]) -> None:
        op, data = frame.get("op"), frame.get("d")
        if op == 1:
            await ws.send_json({"op": 11, "d": None, "s": None})
        elif op == 2:
            await self._identify(ws, data or {})
        elif op == 6:
            await self._resume(ws, data or {})

    async def _identify(self, ws: WebSocket, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await ws.close(4004, "Authentication failed.")
            return
        if int(data.get("intents") or 0) & PRIVILEGED_INTENTS & ~self.granted_intents:
            await ws.close(4014, "Disallowed intent(s).")
            return
        self.identifies += 1
        session = _Session(uuid.uuid4().hex)
        self._sessions[session.id] = session
        self._ws, self._session = ws, session
        ready = {
            "v": 10,
            "user": self.bot.as_json() | {"bot": True, "verified": True, "flags": 0},
            "guilds": [{"id": str(self.guild_id), "unavailable": True}],
            "session_id": session.id,
            "resume_gateway_url": self.base_url.replace("http", "ws", 1) + "/gateway",
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
        }
        if isinstance(data.get("shard"), list):
            ready["shard"] = data["shard"]  # as Discord does for sharded connections
        await self._dispatch("READY", ready)
        await self._dispatch("GUILD_CREATE", self._guild())

    async def _resume(self, ws: WebSocket, data: dict[str, Any]) -> None:
        session = self._sessions.get(str(data.get("session_id")))
        if data.get("token") != self.token or session is None:
            await ws.send_json({"op": 9, "d": False, "s": None})
            return
        self.resumes += 1
        self._ws, self._session = ws, session
        seen = int(data.get("seq") or 0)
        for frame in list(session.log):
            if frame["s"] > seen:
                await ws.send_json(frame)
        await self._dispatch("RESUMED", {})

    async def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        session = self._session or (list(self._sessions.values())[-1] if self._sessions else None)
        if session is None:
            raise RuntimeError(f"{event}: the bot never connected to the gateway")
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.log.append(frame)
        if self._ws is not None and self._session is session:
            with contextlib.suppress(RuntimeError):  # closed meanwhile: replayed on RESUME
                await self._ws.send_json(frame)

    async def _close(self, code: int) -> None:
        ws, self._ws, self._session = self._ws, None, None
        if ws is not None:
            await ws.close(code)

    async def _send_text(self, text: str) -> None:
        if self._ws is not None:
            await self._ws.send_text(text)

    def _run(self, coro: Any) -> None:
        """Run ``coro`` on the server's loop (from the test's thread) and wait for it."""
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError("the bot never connected to the emulator")
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=10)

    # -- payloads -------------------------------------------------------------------------

    def _application(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id),
            "name": "openpista test",
            "description": "",
            "icon": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "owner": User(1100000000000000099, "owner").as_json(),
            "verify_key": "0" * 64,
            "flags": 0,
            "team": None,
            "rpc_origins": [],
        }

    def _guild(self) -> dict[str, Any]:
        channel = {
            "id": str(self.text_channel),
            "type": 0,
            "guild_id": str(self.guild_id),
            "name": "general",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
        }
        everyone = {
            "id": str(self.guild_id),
            "name": "@everyone",
            "permissions": str((1 << 41) - 1),
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
        }
        return {
            "id": str(self.guild_id),
            "name": "openpista test guild",
            "icon": None,
            "owner_id": "1100000000000000099",
            "roles": [everyone, *(_role(r) for r in self.roles)],
            "emojis": [],
            "stickers": [],
            "features": [],
            "channels": [channel],
            "threads": list(self.threads.values()),
            "members": [self._member(self.bot, with_user=True)],
            "member_count": 2,
            "large": False,
            "unavailable": False,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "system_channel_flags": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "joined_at": _TIMESTAMP,
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
        }

    def _thread_data(
        self, thread_id: int, parent: int, owner: int, name: str, archive: int
    ) -> dict[str, Any]:
        return {
            "id": str(thread_id),
            "guild_id": str(self.guild_id),
            "parent_id": str(parent),
            "owner_id": str(owner),
            "name": name,
            "type": 11,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": archive,
                "archive_timestamp": _TIMESTAMP,
                "locked": False,
            },
        }

    def _member(self, user: User, *, with_user: bool) -> dict[str, Any]:
        member: dict[str, Any] = {
            "nick": None,
            "avatar": None,
            "roles": [str(r) for r in user.roles],
            "joined_at": _TIMESTAMP,
            "premium_since": None,
            "pending": False,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "permissions": str((1 << 41) - 1),
        }
        if with_user:
            member["user"] = user.as_json() | ({"bot": True} if user == self.bot else {})
        return member

    def _bot_message(self, sent: Sent) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(sent.id),
            "channel_id": str(sent.channel_id),
            "author": self.bot.as_json() | {"bot": True},
            "content": sent.content,
            "timestamp": _TIMESTAMP,
            "edited_timestamp": _TIMESTAMP if sent.edits else None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [
                {
                    "id": str(sent.id + i),
                    "filename": name,
                    "size": len(content),
                    "url": f"{self.base_url}/attachments/{sent.id + i}/{name}",
                    "proxy_url": f"{self.base_url}/attachments/{sent.id + i}/{name}",
                }
                for i, (name, content) in enumerate(sent.files)
            ],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": sent.components,
        }
        if sent.channel_id not in self._dm_channels.values():
            data["guild_id"] = str(self.guild_id)
        return data


def _role(role_id: int) -> dict[str, Any]:
    return {
        "id": str(role_id),
        "name": f"role-{role_id}",
        "permissions": "0",
        "position": 1,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": True,
    }


class _ApiError(Exception):
    def __init__(self, status: int, message: str, code: int = 50035) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.errors: dict[str, Any] | None = None


def _error(status: int, message: str, code: int, errors: dict[str, Any] | None = None) -> Response:
    from starlette.responses import JSONResponse

    body: dict[str, Any] = {"message": message, "code": code}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status)


def _form_error(field: str, message: str) -> _ApiError:
    error = _ApiError(400, "Invalid Form Body", 50035)
    error.errors = {field: {"_errors": [{"code": "BASE_TYPE_BAD", "message": message}]}}
    return error


def _limit_of(raw: str) -> int:
    """A ``limit`` query parameter as Discord takes it: an integer from 1 to 100."""
    try:
        limit = int(raw)
    except ValueError:
        raise _form_error("limit", "Value is not int.") from None
    if not 1 <= limit <= 100:
        raise _form_error("limit", "int value should be between 1 and 100.")
    return limit


def _snowflake(raw: str, field: str, *, strict: bool = True) -> int:
    """A snowflake of a path or query (``400`` if it is none); with ``strict=False``, a
    stored message's id (``-1`` for a malformed one)."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 20:
        return int(raw)
    if not strict:
        return -1
    raise _form_error(field, "Value is not snowflake.")


def _dm(channel_id: int, user: User) -> dict[str, Any]:
    return {
        "id": str(channel_id),
        "type": 1,
        "recipients": [user.as_json()],
        "last_message_id": None,
    }


async def _body(request: Request) -> Any:
    """A JSON body, or a multipart one (``payload_json`` plus ``files[n]``; the files go
    to ``__files__`` as ``(name, bytes)``)."""
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/"):
        form = await request.form()
        body = json.loads(str(form.get("payload_json") or "{}"))
        files = []
        for key, value in form.multi_items():
            if key.startswith("files[") and not isinstance(value, str):
                files.append((value.filename or "file", await value.read()))
        body["__files__"] = files
        return body
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise _ApiError(400, "400: Bad Request (body is not JSON)") from None


async def _until(found: Callable[[], list[_T]], count: int, wait: float) -> list[_T]:
    deadline = time.monotonic() + wait
    while True:
        items = found()
        if len(items) >= count:
            return items
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(items)} found, expected {count}: {items}")
        await asyncio.sleep(0.01)
