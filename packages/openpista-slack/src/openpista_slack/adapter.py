"""The Slack channel: slack-bolt (Socket Mode or the HTTP Events API) in, Web API out.

Channel ids are ``slack:{team}:{channel}`` and, for a thread, ``slack:{team}:{channel}:
{thread_ts}``: every thread is a session of its own. DMs are always served; in channels the
bot answers a mention (in a thread under it) and then every message of the threads it is in.
Only allowed users (``allowed_users``), members of allowed workspaces (``allowed_teams``) and
paired users reach the agent; a stranger gets :data:`~openpista.access.REFUSAL` (in a DM,
``/pair CODE`` pairs). Each message gets a "thinking" placeholder at once, which the answer
replaces as it is written (``chat.update``, at most every ``stream_interval`` seconds); long
answers are cut at Slack's size, Markdown is turned into mrkdwn. Approval requests get Block
Kit buttons only the asking user may press. ``/openpista`` runs chat commands. Retries and
Slack's errors: :mod:`openpista_slack.api`.

An event (a message, a mention) is acknowledged (the HTTP answer, or the Socket Mode
envelope's ack) only once its event was submitted (``ctx.submit`` returned: in a cluster,
stored) or needed none. A submit that fails, or handling not done within
``event_answer_timeout`` seconds (Slack wants an answer within 3), is answered 500 (no ack)
with one log line and Slack delivers the event again (``X-Slack-Retry-Num``, up to 3 times):
a retry of one still being handled (a slow download goes on) waits for it again, one of a
failed handling is handled anew, one of a handled event is acknowledged at once. Each event
carries ``{channel}:{ts}`` of its message as ``delivery_id`` (the same for the ``message``
and ``app_mention`` twins), so core drops a second copy. Slash commands and button presses
are acknowledged at once (Slack does not retry them) and handled after.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openpista import ConfigError, redacting_filter
from openpista.access import PAIRED, PAIRING_FAILED, REFUSAL, AccessControl, PairingBook
from openpista.buttons import ANSWERED, BUTTONS, verdict
from openpista.channels import Capabilities, ChannelAdapter, ChannelContext
from openpista.models import (
    ERROR_PREFIX,
    Answer,
    ApprovalPrompt,
    ApprovalRequest,
    Attachment,
    ChannelEvent,
    Outbound,
    TextChunk,
    ToolProgress,
)
from openpista_slack import media
from openpista_slack.api import DEFAULT_API, SDK_LOGGER, explain, web_client
from openpista_slack.settings import SlackSettings, checked
from openpista_slack.stream import StreamedMessage
from openpista_slack.text import MESSAGE_LIMIT, escape, mrkdwn_length, split, to_mrkdwn
from openpista_slack.webhook import EventsReceiver

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp
    from slack_bolt.context.respond.async_respond import AsyncRespond
    from slack_sdk.web.async_client import AsyncWebClient

    from openpista.config import Settings

log = logging.getLogger(__name__)

CHANNEL = "slack"
PREFIX = "slack:"
COMMAND = "/openpista"
APPROVE, DENY = "openpista_approve", "openpista_deny"
NOT_YOURS = "⛔ Only <@{user}> can answer this request."
_SEEN_LIMIT = 2048
_THREADS_LIMIT = 4096
_CHANNEL = re.compile(r"^slack:([A-Z0-9]{2,24}):([A-Z0-9]{2,24})(?::(\d{1,12}\.\d{1,8}))?$")
_COMMANDS = frozenset({"help", "model", "session", "clear", "usage", "approve", "deny"})
_REDACTED_LOGGERS = (SDK_LOGGER, __name__, "openpista_slack.api", "openpista_slack.webhook")


@dataclass(frozen=True)
class Target:
    """Where messages of a chat go: the channel and the thread (``None``: top level)."""

    team: str
    channel: str
    thread_ts: str | None = None

    @property
    def channel_id(self) -> str:
        base = f"{PREFIX}{self.team}:{self.channel}"
        return base if self.thread_ts is None else f"{base}:{self.thread_ts}"


def parse_channel_id(channel_id: str) -> Target | None:
    """``slack:{team}:{channel}[:{thread_ts}]`` as a :class:`Target`; ``None`` if not one."""
    match = _CHANNEL.match(channel_id)
    if match is None:
        return None
    team, channel, thread = match.groups()
    return Target(team, channel, thread)


@dataclass
class _Prompt:
    """An approval request on screen with its buttons."""

    target: Target
    ts: str
    asker: str | None
    text: str


class _Seen:
    """The last ``limit`` keys seen (event ids of retried deliveries, message timestamps)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._keys: collections.OrderedDict[str, None] = collections.OrderedDict()

    def discard(self, key: str) -> None:
        """Forget ``key`` (it is new again)."""
        self._keys.pop(key, None)

    def first(self, key: str) -> bool:
        """Whether ``key`` is new (and remember it)."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self.limit:
            self._keys.popitem(last=False)
        return True


class _Line:
    """A chat's messages reach the agent in arrival order, whatever the awaits (files,
    the placeholder) between arrival and submission take: each waits for the one before."""

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future[None]] = {}

    @contextlib.contextmanager
    def ticket(self, key: str) -> Iterator[asyncio.Future[None] | None]:
        """Take a place in ``key``'s line; yields the future of the message before (done
        once that one was handed on or dropped)."""
        previous = self._tails.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = mine
        try:
            yield previous
        finally:
            mine.set_result(None)
            if self._tails.get(key) is mine:
                del self._tails[key]


class SlackAdapter(ChannelAdapter):
    """The ``slack`` channel adapter (see the module docstring)."""

    name = CHANNEL
    channel_prefix = PREFIX
    replies_anywhere = True  # its API answers a chat from any replica
    capabilities = Capabilities(
        streaming=True,
        files=True,
        buttons=True,
        max_message_length=MESSAGE_LIMIT,
        measure=mrkdwn_length,
    )

    def __init__(self, settings: SlackSettings, pairing: PairingBook | None = None) -> None:
        self.settings = settings
        self.media_dir = settings.downloads  # in a cluster its files go where the turn runs
        self.max_media_bytes = settings.max_download_bytes
        self.access = AccessControl(
            CHANNEL,
            [*settings.allowed_users, *settings.allowed_teams],
            open_to_all=settings.open_to_all,
            pairing=pairing or PairingBook(CHANNEL),
        )
        self.team: str | None = None
        self.bot_user: str | None = None
        self._redact = redacting_filter(*settings.secrets())
        self._ctx: ChannelContext | None = None
        self._client: AsyncWebClient | None = None
        self._app: AsyncApp | None = None
        self._socket: Any = None
        self._receiver: EventsReceiver | None = None
        self._closed: asyncio.Event = asyncio.Event()
        self._line = _Line()
        self._events = _Seen(_SEEN_LIMIT)
        self._handling: dict[str, asyncio.Task[None]] = {}  # event id -> its handling
        self._messages = _Seen(_SEEN_LIMIT)
        self._threads: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._turns: dict[str, StreamedMessage] = {}  # request id -> its message
        self._askers: dict[str, str] = {}  # channel id -> user of its last turn
        self._prompts: dict[str, _Prompt] = {}  # approval request id -> its buttons
        self._posting: dict[str, asyncio.Event] = {}  # request id -> set once it is posted

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, ctx: ChannelContext) -> None:
        """Check the bot token (``auth.test``), then connect the Socket Mode WebSocket or
        (mode ``http``) listen for the Events API."""
        for name in _REDACTED_LOGGERS:
            logging.getLogger(name).addFilter(self._redact)
        self._ctx = ctx
        self._closed = asyncio.Event()
        client = web_client(self.settings)
        try:
            auth = await client.auth_test()
        except Exception as exc:
            raise _start_error("auth.test", exc, self.settings.api_base) from None
        self.team, self.bot_user = str(auth["team_id"]), str(auth["user_id"])
        self._client = client
        app = self._bolt_app(client)
        self._app = app
        try:
            if self.settings.mode == "socket":
                await self._connect_socket(app)
            else:
                self._receiver = EventsReceiver(self.settings, self._dispatch)
                await self._receiver.start()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "slack: %s mode as <@%s> in workspace %s", self.settings.mode, self.bot_user, self.team
        )

    def _bolt_app(self, client: AsyncWebClient) -> AsyncApp:
        from slack_bolt.async_app import AsyncApp

        app = AsyncApp(
            client=client,
            signing_secret=self.settings.secret("signing_secret") or "unused-in-socket-mode",
            process_before_response=True,  # an event is acked once submitted
            request_verification_enabled=self.settings.mode == "http",
            logger=logging.getLogger(SDK_LOGGER),
        )
        app.event("message")(self._on_event)
        app.event("app_mention")(self._on_event)
        app.event("app_home_opened")(self._on_home)
        app.command(COMMAND)(ack=_ack, lazy=[self._on_command])  # acked at once
        app.action(re.compile(f"^({APPROVE}|{DENY})$"))(ack=_ack, lazy=[self._on_button])
        app.error(self._on_error)
        return app

    async def _connect_socket(self, app: AsyncApp) -> None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
        from slack_sdk.web.async_client import AsyncWebClient

        # apps.connections.open is called with the app-level token on the same Web API root
        opener = AsyncWebClient(
            base_url=self.settings.api_base or DEFAULT_API,
            timeout=self.settings.request_timeout,
            retry_handlers=app.client.retry_handlers,
            logger=logging.getLogger(SDK_LOGGER),
        )
        handler = AsyncSocketModeHandler(
            app,
            self.settings.secret("app_token"),
            web_client=opener,
            ping_interval=self.settings.ping_interval,
        )
        self._socket = handler
        try:
            url = await handler.client.issue_new_wss_url()
        except Exception as exc:
            raise _start_error("apps.connections.open", exc, self.settings.api_base) from None
        handler.client.wss_uri = url
        await handler.client.connect()  # type: ignore[no-untyped-call]

    async def _dispatch(
        self, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str, dict[str, str]]:
        """HTTP mode: a verified request handed to bolt; its response."""
        from slack_bolt.request.async_request import AsyncBoltRequest

        app = self._app
        if app is None:
            return 503, "not ready", {}
        request = AsyncBoltRequest(body=body.decode("utf-8", "replace"), headers=dict(headers))
        response = await app.async_dispatch(request)
        extra = {k: v[0] for k, v in response.headers.items() if k.lower() == "content-type" and v}
        return response.status, response.body, extra

    async def wait_closed(self) -> None:
        """Wait while connected (the SDK reconnects the socket itself) or listening."""
        if self._receiver is not None:
            await self._receiver.wait_closed()
            return
        await self._closed.wait()

    async def stop(self) -> None:
        """Close the socket or the endpoint and the HTTP sessions."""
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.client.close()
        if self._receiver is not None:
            await self._receiver.stop()
        for turn in self._turns.values():
            turn.cancel()
        self._turns.clear()
        self._socket = self._receiver = self._client = self._app = None
        self._closed.set()
        for name in _REDACTED_LOGGERS:
            logging.getLogger(name).removeFilter(self._redact)

    # -- out ------------------------------------------------------------------------------

    async def send(self, message: Outbound) -> None:
        """Deliver a text chunk, an answer or an approval request to its chat."""
        target = parse_channel_id(message.channel_id)
        if target is None or self._client is None:
            log.warning(
                "slack: cannot deliver to %r (not running or not a chat)", message.channel_id
            )
            return
        turn = self._turns.get(message.request_id or "")
        if isinstance(message, TextChunk | ToolProgress):
            if isinstance(message, TextChunk) and turn is not None:
                turn.add(message.text)
            elif isinstance(message, ToolProgress) and turn is not None:
                turn.note("" if message.result is not None else f"🔧 {message.call.name}…")
            return
        await self._retire_resolved(target)
        if isinstance(message, ApprovalPrompt):
            asker = turn.user if turn else self._askers.get(message.channel_id)
            await self._send_approval(target, message.request, asker)
        elif isinstance(message, Answer):
            if turn is not None:
                del self._turns[message.request_id or ""]
            await self._send_answer(target, message, turn)

    async def _send_answer(
        self, target: Target, answer: Answer, turn: StreamedMessage | None
    ) -> None:
        text = to_mrkdwn(answer.text).strip() or " "  # the gateway cut it to MESSAGE_LIMIT
        try:
            if turn is not None:
                await turn.finish(text)
            else:
                await self._post(target, text)
        except Exception as exc:
            log.warning("%s", explain("chat.postMessage", exc))
            return
        for attachment in answer.attachments:
            await self._send_file(target, attachment)

    async def _post(self, target: Target, text: str, **extra: Any) -> str:
        """Post ``text`` (mrkdwn) in the target's thread; its ``ts``."""
        assert self._client is not None  # noqa: S101  an invariant for mypy, not a check
        response = await self._client.chat_postMessage(
            channel=target.channel, thread_ts=target.thread_ts, text=text, mrkdwn=True, **extra
        )
        return str(response["ts"])

    async def _send_approval(
        self, target: Target, request: ApprovalRequest, asker: str | None
    ) -> None:
        text = split(request.prompt())[0]
        blocks = _approval_blocks(text, request.id, asker)
        # The message shows before chat.postMessage answers with its ts: a press that
        # quick waits for it (see _on_button).
        posted = self._posting[request.id] = asyncio.Event()
        try:
            ts = await self._post(target, text, blocks=blocks)
            self._prompts[request.id] = _Prompt(target, ts, asker, text)
        except Exception as exc:
            raise ConnectionError(explain("chat.postMessage", exc)) from None
        finally:
            posted.set()
            self._posting.pop(request.id, None)

    async def _retire_resolved(self, target: Target) -> None:
        """Remove the buttons of this chat's requests that no longer wait."""
        ctx = self._ctx
        for request_id, prompt in list(self._prompts.items()):
            pending = ctx is None or ctx.approval_pending(target.channel_id, request_id)
            if prompt.target == target and not pending:
                await self._retire(request_id, "⌛ answered or expired")

    async def _retire(self, request_id: str, decided: str) -> None:
        prompt = self._prompts.pop(request_id, None)
        if prompt is None or self._client is None:
            return
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": prompt.text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": decided}]},
        ]
        try:
            await self._client.chat_update(
                channel=prompt.target.channel, ts=prompt.ts, text=prompt.text, blocks=blocks
            )
        except Exception as exc:  # cosmetic: the decision is made
            log.info("slack: buttons of %s not removed: %s", prompt.ts, explain("chat.update", exc))

    async def _send_file(self, target: Target, attachment: Attachment) -> None:
        """Upload through files.getUploadURLExternal + completeUploadExternal."""
        assert self._client is not None  # noqa: S101  an invariant for mypy, not a check
        if attachment.data is None:
            log.warning("slack: attachment %s has no inline data; not sent", attachment.name)
            return
        try:
            content = base64.b64decode(attachment.data, validate=True)
            await self._client.files_upload_v2(
                channel=target.channel,
                thread_ts=target.thread_ts,
                filename=attachment.name,
                content=content,
                title=attachment.name,
            )
        except Exception as exc:
            line = explain("files.upload", exc)
            log.warning("%s", line)
            with contextlib.suppress(Exception):
                await self._post(target, escape(f"{line} ({attachment.name})"))

    # -- in -------------------------------------------------------------------------------

    async def _on_event(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """A ``message`` or ``app_mention`` event; returns (bolt acks it) once handled;
        raises :class:`_NotHandledError` (no ack: Slack sends it again) when its handling
        failed or goes on past ``event_answer_timeout``."""
        key = str(body.get("event_id") or uuid.uuid4())
        handling = self._handling.get(key)
        if handling is None:
            if not self._events.first(key):
                return  # a retry of an event handled already
            handling = asyncio.create_task(self._handle_event(body, event))
            self._handling[key] = handling
            handling.add_done_callback(lambda done: self._handled(key, done))
        timeout = self.settings.event_answer_timeout
        try:
            await asyncio.wait_for(asyncio.shield(handling), timeout)
        except TimeoutError:
            raise _NotHandledError(
                f"event {key} not handled within {timeout:g} s; Slack sends it again"
            ) from None
        except Exception as exc:
            raise _NotHandledError(
                f"event {key} not handled ({type(exc).__name__}: {exc}); Slack sends it again"
            ) from exc

    def _handled(self, key: str, handling: asyncio.Task[None]) -> None:
        if self._handling.get(key) is handling:
            del self._handling[key]
        if handling.cancelled() or handling.exception() is not None:
            self._events.discard(key)  # Slack's retry is handled anew

    async def _handle_event(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """A ``message`` or ``app_mention`` event (the message twin of a mention is
        dropped)."""
        user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
        if event.get("subtype") not in (None, "file_share", "thread_broadcast"):
            return
        if not isinstance(user, str) or not isinstance(channel, str) or not isinstance(ts, str):
            return
        if event.get("bot_id") or user == self.bot_user:
            return
        if not self._messages.first(f"{channel}/{ts}"):
            return
        try:
            await self._handle_message(body, event, user, channel, ts)
        except BaseException:
            self._messages.discard(f"{channel}/{ts}")  # its retry (or twin) is handled anew
            raise

    async def _handle_message(
        self, body: dict[str, Any], event: dict[str, Any], user: str, channel: str, ts: str
    ) -> None:
        text = str(event.get("text") or "")
        mention = f"<@{self.bot_user}>"
        direct = event.get("channel_type") == "im"
        thread = event.get("thread_ts") if isinstance(event.get("thread_ts"), str) else None
        team = str(body.get("team_id") or self.team or "")
        if not direct:
            if event.get("type") == "app_mention" or mention in text:
                thread = thread or ts
                self._join_thread(channel, thread)
            elif thread is None or (channel, thread) not in self._threads:
                return
        text = text.replace(mention, "").strip()
        identities = (user, event.get("user_team"), event.get("team"), body.get("team_id"))
        target = Target(team, channel, thread)
        with self._line.ticket(target.channel_id) as turn:
            await self._take(target, event, user, text, direct, identities, turn)

    async def _take(
        self,
        target: Target,
        event: dict[str, Any],
        user: str,
        text: str,
        direct: bool,
        identities: tuple[Any, ...],
        turn: asyncio.Future[None] | None,
    ) -> None:
        """An addressed message: refused, or its files taken and it forwarded (after the
        chat's earlier messages: ``turn`` is done when the one before was submitted)."""
        if not self.access.is_allowed(*identities):
            await self._refuse(target, user, text, direct)
            return
        files = event.get("files")
        attachments = await self._take_files(target, files) if isinstance(files, list) else []
        if attachments is None or (not text and not attachments):
            return
        metadata = {"ts": event["ts"], "channel_type": event.get("channel_type")}
        delivery = f"{target.channel}:{event['ts']}"
        await self._forward(
            target, user, text, metadata, attachments, after=turn, delivery=delivery
        )

    async def _take_files(self, target: Target, files: list[Any]) -> list[Attachment] | None:
        """The shared files saved as attachments; ``None`` (the user told why) if one
        could not be taken."""
        try:
            return await media.download(files, self.settings, target.channel)
        except Exception as exc:  # too big, not Slack's, download failed: say so
            reason = self._redact.redact(str(exc) or type(exc).__name__)
            log.warning("slack: file in %s not taken: %s", target.channel, reason)
            line = escape(f"{ERROR_PREFIX}could not take your file: {reason}")
            with contextlib.suppress(Exception):
                await self._post(target, line)
            return None

    async def _on_home(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        """The App Home tab: how to talk to the agent, and whether this user may."""
        user = event.get("user")
        if event.get("tab") != "home" or not isinstance(user, str) or self._client is None:
            return
        allowed = self.access.is_allowed(user, event.get("team"), body.get("team_id"))
        status = (
            "✅ You may talk to this agent."
            if allowed
            else "⛔ You may not talk to this agent yet: ask its owner for a pairing code "
            f"and send `/pair CODE` in the Messages tab (or `{COMMAND} pair CODE`)."
        )
        how = (
            "*openpista* answers in the *Messages* tab, when mentioned in a channel (in a "
            f"thread: every thread is a conversation of its own), and to `{COMMAND} QUESTION`."
            f" `{COMMAND} help` lists the chat commands."
        )
        view = {
            "type": "home",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": how}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": status}]},
            ],
        }
        try:
            await self._client.views_publish(user_id=user, view=view)
        except Exception as exc:  # cosmetic
            log.info("%s", explain("views.publish", exc))

    def _join_thread(self, channel: str, thread: str) -> None:
        self._threads[(channel, thread)] = None
        if len(self._threads) > _THREADS_LIMIT:
            self._threads.popitem(last=False)

    async def _refuse(self, target: Target, user: str, text: str, direct: bool) -> None:
        outcome = self.access.try_pair(user, text) if direct else None
        reply = {True: PAIRED, False: PAIRING_FAILED, None: REFUSAL}[outcome]
        log.info(
            "slack: %s user %s",
            {True: "paired", False: "failed pairing of", None: "refused"}[outcome],
            user,
        )
        try:
            if direct:
                await self._post(target, reply)
            else:
                assert self._client is not None  # noqa: S101  an invariant for mypy, not a check
                await self._client.chat_postEphemeral(
                    channel=target.channel, user=user, text=reply, thread_ts=target.thread_ts
                )
        except Exception as exc:
            log.warning("%s", explain("chat.postMessage", exc))

    async def _forward(
        self,
        target: Target,
        user: str,
        text: str,
        metadata: dict[str, Any],
        attachments: list[Attachment] | None = None,
        after: asyncio.Future[None] | None = None,
        delivery: str | None = None,
    ) -> str | None:
        """Post the "thinking" placeholder, then hand the message to the agent (once
        ``after`` is done: the chat's previous message went first; ``delivery``: its
        ``delivery_id``); the ❌ line when the placeholder could not be posted (then nothing
        is handed on). A failed submit raises."""
        ctx, client = self._ctx, self._client
        if ctx is None or client is None:
            return f"{ERROR_PREFIX}openpista is not ready yet"
        request_id = uuid.uuid4().hex
        try:
            ts = await self._post(target, self.settings.thinking_text)
        except Exception as exc:
            line = explain("chat.postMessage", exc)
            log.warning("%s", line)
            return line

        async def update(text: str) -> None:
            await client.chat_update(channel=target.channel, ts=ts, text=text)

        self._turns[request_id] = StreamedMessage(
            target.channel, ts, user, target.thread_ts, self.settings.stream_interval, update
        )
        self._askers[target.channel_id] = user
        event = ChannelEvent(
            channel_id=target.channel_id,
            sender=user,
            text=text,
            attachments=attachments or [],
            metadata={**metadata, "request_id": request_id, "team": target.team},
            delivery_id=delivery,
        )
        if after is not None:
            await asyncio.shield(after)
        await ctx.submit(event)
        return None

    async def _on_command(self, command: dict[str, Any], respond: AsyncRespond) -> None:
        """``/openpista [ask] TEXT | model | session | clear | usage | help | pair CODE``."""
        user, channel = str(command.get("user_id", "")), str(command.get("channel_id", ""))
        team = str(command.get("team_id") or self.team or "")
        word, _, rest = str(command.get("text") or "").strip().partition(" ")
        word, rest = word.lower(), rest.strip()
        target = Target(team, channel)
        if not self.access.is_allowed(user, team):
            outcome = self.access.try_pair(user, f"/pair {rest}") if word == "pair" else None
            await respond(text={True: PAIRED, False: PAIRING_FAILED, None: REFUSAL}[outcome])
            return
        if word == "pair":
            await respond(text="✅ You may already talk to this agent.")
            return
        if word in _COMMANDS or not word:
            reply = await self._run_command(target, f"/{word or 'help'} {rest}".strip())
            await respond(text=to_mrkdwn(reply))
            return
        question = rest if word == "ask" else f"{word} {rest}".strip()
        if not question:
            await respond(text=f"{ERROR_PREFIX}ask what? `{COMMAND} ask QUESTION`")
            return
        failed = await self._forward(target, user, question, {"command": COMMAND})
        if failed is not None:  # e.g. not_in_channel: tell the user, privately
            await respond(text=escape(failed))

    async def _run_command(self, target: Target, text: str) -> str:
        ctx = self._ctx
        if ctx is None:
            return f"{ERROR_PREFIX}openpista is not ready yet"
        reply = await ctx.run_command(target.channel_id, text)
        return reply.text if reply is not None else f"{ERROR_PREFIX}unknown command {text}"

    async def _on_button(self, body: dict[str, Any], respond: AsyncRespond) -> None:
        """An Approve / Deny press: only the user who asked may decide."""
        user = str((body.get("user") or {}).get("id", ""))
        actions = body.get("actions") or [{}]
        action_id, request_id = str(actions[0].get("action_id")), str(actions[0].get("value"))
        posting = self._posting.get(request_id)
        if posting is not None:  # pressed before chat.postMessage answered
            await posting.wait()
        prompt = self._prompts.get(request_id)
        if not self.access.is_allowed(user, (body.get("team") or {}).get("id")):
            await respond(text=REFUSAL, response_type="ephemeral", replace_original=False)
            return
        if prompt is None:
            await respond(text=ANSWERED, response_type="ephemeral", replace_original=False)
            return
        if prompt.asker is not None and user != prompt.asker:
            log.info("slack: %s pressed a button of %s's request; refused", user, prompt.asker)
            text = NOT_YOURS.format(user=prompt.asker)
            await respond(text=text, response_type="ephemeral", replace_original=False)
            return
        verb = "approve" if action_id == APPROVE else "deny"
        reply = await self._run_command(prompt.target, f"/{verb} {request_id}")
        decided = escape(reply) if reply.startswith(ERROR_PREFIX) else verdict(verb, f"<@{user}>")
        await self._retire(request_id, decided)

    async def _on_error(self, error: Exception) -> None:
        log.warning("slack: a handler failed: %s", explain("handler", error))


class _NotHandledError(Exception):
    """An event not handled (in time): not acknowledged, Slack sends it again."""


async def _ack(ack: Any) -> None:
    """Acknowledge a slash command or a button press at once (handled after, lazily)."""
    await ack()


def _approval_blocks(text: str, request_id: str, asker: str | None) -> list[dict[str, Any]]:
    who = f"Only <@{asker}> can answer." if asker else "Answer with the buttons."
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "actions",
            "block_id": "openpista_approval",
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE if verb == "approve" else DENY,
                    "text": {"type": "plain_text", "text": label},
                    "style": "primary" if verb == "approve" else "danger",
                    "value": request_id,
                }
                for verb, label in BUTTONS
            ],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": who}]},
    ]


def _start_error(method: str, error: Exception, api_base: str | None) -> Exception:
    """Why the channel cannot start: a refused token or scope is a ConfigError (not
    retried); a network failure a ConnectionError (retried)."""
    from slack_sdk.errors import SlackApiError

    line = explain(method, error).removeprefix(ERROR_PREFIX)
    status = error.response.status_code if isinstance(error, SlackApiError) else 500
    if status < 500 and status != 429:
        return ConfigError(line)
    where = api_base or "the Slack Web API"
    return ConnectionError(f"cannot reach {where}: {line}")


def create_slack_adapter(settings: SlackSettings, config: Settings) -> SlackAdapter:
    """The ``[channels.slack]`` factory (options: config.example.toml), handed them
    validated by core."""
    return SlackAdapter(checked(settings))
