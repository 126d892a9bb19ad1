"""The Telegram channel: aiogram long polling (or a webhook) in, Bot API calls out.

One session per chat (channel id ``telegram:{chat_id}``), and per topic in forum groups
(``telegram:{chat_id}:{topic_id}``: answers, files, "typing" and prompts go to that topic).
Only allowed or paired users reach the agent; everyone else gets
:data:`~openpista.access.REFUSAL`. In groups the bot answers only when mentioned
(``@botname``) or replied to. Answers are plain text (no parse mode: model output can never
break a send), cut at 4,096 characters on paragraph, line or word boundaries; "typing"
shows while the agent works; approval requests get Approve / Deny buttons, removed once the
request is resolved (button, typed ``/approve``/``/deny``, or timeout). Bot API failures are
retried (429 after ``retry_after``, 5xx in any body format and network errors with
backoff); an answer still undelivered after the last try leaves a ``❌`` line if it can; a
403 (the user blocked the bot) marks the chat until it writes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from asyncio import FIRST_COMPLETED
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openpista import redacting_filter
from openpista.access import PAIRED, PAIRING_FAILED, REFUSAL, AccessControl, PairingBook
from openpista.buttons import ANSWERED, BUTTONS, STALE, button_id, pressed
from openpista.channels import Capabilities, ChannelAdapter, ChannelContext
from openpista.files import safe_name
from openpista.models import (
    ERROR_PREFIX,
    Answer,
    ApprovalPrompt,
    ApprovalRequest,
    Attachment,
    ChannelEvent,
    Outbound,
)
from openpista_telegram import media
from openpista_telegram.api import (
    AIOGRAM_LOGGERS,
    Retrying,
    save_bot_info,
)
from openpista_telegram.settings import SECTION, TOKEN_VARIABLE, TelegramSettings, checked
from openpista_telegram.text import MESSAGE_LIMIT, split_message, utf16_length
from openpista_telegram.webhook import ALLOWED_UPDATES, WebhookReceiver

if TYPE_CHECKING:
    from aiogram import Bot, Dispatcher
    from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message, User

    from openpista.config import Settings
    from openpista.plugin_context import Leadership, PluginContext

log = logging.getLogger(__name__)

CHANNEL = "telegram"
PREFIX = "telegram:"
GREETING = "👋 openpista is listening: send a message, a photo or a document."
UNSUPPORTED = f"{ERROR_PREFIX}openpista reads text, photos and documents; not this kind of message."
_TYPING_LIMIT = 30 * 60.0  # a turn that takes longer stops showing "typing"
_STOP_WAIT = 10.0
_REDACTED_LOGGERS = (
    *AIOGRAM_LOGGERS,
    __name__,
    "openpista_telegram.api",
    "openpista_telegram.webhook",
)

Target = tuple[int, int | None]
"""Where an answer goes: (chat id, forum topic id or ``None``)."""


@dataclass
class _Prompt:
    """An approval request on screen with its buttons."""

    target: Target
    message_id: int
    expiry: asyncio.Task[None] | None = None


class TelegramAdapter(ChannelAdapter):
    """The ``telegram`` channel adapter (see the module docstring). Telegram shows whole
    messages: only answers and approval prompts are sent to it."""

    name = CHANNEL
    channel_prefix = PREFIX
    replies_anywhere = True  # its API answers a chat from any replica
    capabilities = Capabilities(
        files=True, buttons=True, max_message_length=MESSAGE_LIMIT, measure=utf16_length
    )

    def __init__(
        self,
        settings: TelegramSettings,
        pairing: PairingBook | None = None,
        context: PluginContext | None = None,
    ) -> None:
        """``context``: in a cluster (``context.leadership``) only the replica that leads
        ``telegram`` polls (Telegram allows one poller per bot); webhooks work on all."""
        self.settings = settings
        self.context = context
        self.media_dir = settings.downloads  # in a cluster its files go where the turn runs
        self.max_media_bytes = settings.max_download_bytes
        self.access = AccessControl(
            CHANNEL,
            settings.allowed_users,
            open_to_all=settings.open_to_all,
            pairing=pairing or PairingBook(CHANNEL),
        )
        self.retrying = Retrying(
            settings.max_retries, settings.retry_base_delay, settings.max_retry_after
        )
        self.blocked: set[int] = set()
        """Chats whose user blocked the bot (403); cleared when they write again."""
        self.username: str | None = None
        self.bot_id: int | None = None
        self._token = settings.secret("token")
        self._redact = redacting_filter(self._token)
        self._bot: Bot | None = None
        self._dispatcher: Dispatcher | None = None
        self._polling: asyncio.Task[None] | None = None
        self._webhook: WebhookReceiver | None = None
        self._ctx: ChannelContext | None = None
        self._working: dict[Target, int] = {}  # turns in flight
        self._typing: dict[Target, asyncio.Task[None]] = {}
        self._prompts: dict[str, _Prompt] = {}  # approval request id -> its buttons
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, ctx: ChannelContext) -> None:
        """Check the token (getMe), then poll for updates in the background, or (mode
        ``webhook``) listen on the webhook and register it with ``setWebhook``."""
        from aiogram import Bot, Dispatcher
        from aiogram.client.telegram import PRODUCTION, TelegramAPIServer

        from openpista_telegram.session import TolerantSession

        self._install_redaction()
        self._ctx = ctx
        self._stopping = False
        api = (
            TelegramAPIServer.from_base(self.settings.api_base)
            if self.settings.api_base
            else (PRODUCTION)
        )
        session = TolerantSession(api=api, timeout=self.settings.request_timeout)
        bot = Bot(self._token, session=session)
        try:
            me = await self._get_me(bot)
            dispatcher = Dispatcher()
            dispatcher.message.register(self._on_message)
            dispatcher.callback_query.register(self._on_callback)
            self._bot, self._dispatcher = bot, dispatcher
            if self.settings.mode == "webhook":
                await self._start_webhook(bot)
            else:
                await self._start_polling(bot, dispatcher)
        except BaseException:
            if self._webhook is not None:
                await self._webhook.stop()
            self._webhook = self._bot = self._dispatcher = None
            await session.close()
            raise
        self.username, self.bot_id = me.username, me.id
        save_bot_info(me.id, me.username)
        log.info("telegram: %s as @%s", self.settings.mode, me.username)

    async def _start_polling(self, bot: Bot, dispatcher: Dispatcher) -> None:
        leadership = None if self.context is None else self.context.leadership
        if leadership is None:
            await self._delete_webhook(bot)
            polling = self._poll(bot, dispatcher)
        else:
            polling = self._poll_while_leading(bot, dispatcher, leadership)
        self._polling = asyncio.create_task(polling, name="openpista-telegram-polling")

    async def _delete_webhook(self, bot: Bot) -> None:
        await self.retrying.call(
            lambda: bot.delete_webhook(drop_pending_updates=False), "deleteWebhook"
        )

    async def _poll(self, bot: Bot, dispatcher: Dispatcher) -> None:
        await dispatcher.start_polling(
            bot,
            polling_timeout=self.settings.poll_timeout,
            handle_as_tasks=False,  # one update at a time: a chat's messages keep order
            handle_signals=False,  # the daemon owns SIGINT/SIGTERM
            close_bot_session=False,  # stop() closes it: replies in flight outlive a lost role
            allowed_updates=list(ALLOWED_UPDATES),
        )

    async def _poll_while_leading(
        self, bot: Bot, dispatcher: Dispatcher, leadership: Leadership
    ) -> None:
        """Cluster mode: poll while this replica leads ``telegram``, wait while another does."""
        while True:
            while not leadership.leading(CHANNEL):
                await leadership.changed(CHANNEL)
            log.info("telegram: this replica polls (it leads telegram)")
            await self._delete_webhook(bot)
            polling = asyncio.create_task(self._poll(bot, dispatcher))
            lost = asyncio.create_task(leadership.changed(CHANNEL))
            try:
                done, _ = await asyncio.wait({polling, lost}, return_when=FIRST_COMPLETED)
            finally:
                lost.cancel()
                if not polling.done() and lost.done():  # lost the lead: the new leader polls
                    with contextlib.suppress(RuntimeError, TimeoutError):
                        await asyncio.wait_for(dispatcher.stop_polling(), _STOP_WAIT)
                polling.cancel()  # cancelled itself (stopping): so is the polling
                await asyncio.gather(polling, return_exceptions=True)
            if polling in done:
                polling.result()  # it ended on its own (stop): so does this; a failure raises
                return
            log.info("telegram: another replica polls now")

    async def _start_webhook(self, bot: Bot) -> None:
        """Listen first, then tell Telegram where to post (so no delivery finds no one)."""
        from aiogram.exceptions import TelegramAPIError

        try:
            secret = self.settings.webhook_token()
        except OSError as exc:
            raise RuntimeError(f"telegram: cannot keep the webhook secret: {exc}") from None
        self._remove_redaction()
        self._redact = redacting_filter(self._token, secret)
        self._install_redaction()
        self._webhook = WebhookReceiver(self.settings, secret, self._feed)
        await self._webhook.start()
        url = self.settings.webhook_url or ""
        try:
            await self.retrying.call(
                lambda: bot.set_webhook(
                    url,
                    secret_token=secret,
                    allowed_updates=list(ALLOWED_UPDATES),
                    drop_pending_updates=False,
                ),
                "setWebhook",
            )
        except TelegramAPIError as exc:
            detail = self._redact.redact(str(exc))
            raise ConnectionError(f"Telegram refused the webhook {url}: {detail}") from None

    async def _feed(self, raw: dict[str, Any]) -> None:
        """Handle one update received on the webhook, like a polled one."""
        from openpista_telegram.session import parse_update

        bot, dispatcher = self._bot, self._dispatcher
        if bot is None or dispatcher is None:
            return
        update = parse_update(raw, bot)
        if update is not None:
            await dispatcher.feed_update(bot, update)

    async def wait_closed(self) -> None:
        """Wait while polling (or the webhook) runs; raises if it ended without :meth:`stop`
        (the gateway then restarts the channel)."""
        if self._webhook is not None:
            await self._webhook.wait_closed()
            return
        polling = self._polling
        if polling is None:
            return
        await asyncio.shield(polling)
        if not self._stopping:
            raise ConnectionError("telegram polling ended unexpectedly")

    async def stop(self) -> None:
        """Stop polling or the webhook, stop "typing", close the HTTP session.

        The webhook stays registered with Telegram, which keeps (and retries) updates until
        the channel listens again; polling mode removes it when it starts.
        """
        self._stopping = True
        if self._webhook is not None:
            await self._webhook.stop()
        tasks = [*self._typing.values(), *(p.expiry for p in self._prompts.values() if p.expiry)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._typing.clear()
        self._working.clear()
        self._prompts.clear()
        polling, dispatcher = self._polling, self._dispatcher
        if polling is not None and not polling.done() and dispatcher is not None:
            try:
                await asyncio.wait_for(dispatcher.stop_polling(), _STOP_WAIT)
            except (RuntimeError, TimeoutError):  # not started yet, or stuck: cancel it
                polling.cancel()
        if polling is not None:
            await asyncio.gather(polling, return_exceptions=True)
        if self._bot is not None:
            await self._bot.session.close()
        self._polling = self._dispatcher = self._bot = self._webhook = None
        self._remove_redaction()

    # -- out ------------------------------------------------------------------------------

    async def send(self, message: Outbound) -> None:
        """Deliver an answer, an error or an approval request to its chat (or topic)."""
        target = _target_of(message.channel_id)
        bot = self._bot
        if target is None or bot is None:
            log.warning(
                "telegram: cannot deliver to %r (not running or not a chat)", message.channel_id
            )
            return
        await self._retire_resolved(target)
        if isinstance(message, ApprovalPrompt):
            await self._send_approval(bot, target, message.request)
            return
        if isinstance(message, Answer):
            await self._send_answer(bot, target, message)

    async def _send_answer(self, bot: Bot, target: Target, answer: Answer) -> None:
        self._done_working(target)
        chat_id, topic = target
        if chat_id in self.blocked:
            log.warning("telegram: chat %s blocked the bot; answer dropped", chat_id)
            return
        from aiogram.exceptions import (
            TelegramNetworkError,
            TelegramRetryAfter,
            TelegramServerError,
        )

        try:
            if answer.text.strip():  # within MESSAGE_LIMIT: the gateway cut a longer one
                await self._api(
                    lambda: bot.send_message(chat_id, answer.text, message_thread_id=topic),
                    "sendMessage",
                )
            for attachment in answer.attachments:
                await self._send_file(bot, target, attachment)
        except _Blocked:
            return
        except (TelegramServerError, TelegramNetworkError, TelegramRetryAfter) as exc:
            await self._undelivered(bot, target, exc)

    async def _undelivered(self, bot: Bot, target: Target, failure: Exception) -> None:
        """After the last retry of an answer failed: log one line, and try once to leave a
        ``❌`` line in the chat (Telegram may take a short message again by now)."""
        from aiogram.exceptions import TelegramAPIError, TelegramRetryAfter, TelegramServerError

        chat_id, topic = target
        reason = self._redact.redact(f"{type(failure).__name__}: {failure}")
        log.warning(
            "telegram: answer to chat %s not delivered after %d tries: %s",
            chat_id,
            self.retrying.max_retries + 1,
            reason,
        )
        if isinstance(failure, TelegramServerError):
            why = failure.message
        elif isinstance(failure, TelegramRetryAfter):
            why = f"asked to wait {failure.retry_after} s"
        else:
            why = "the connection failed"
        text = f"{ERROR_PREFIX}this answer could not be delivered (Telegram: {why}); ask again."
        try:
            await bot.send_message(chat_id, self._redact.redact(text), message_thread_id=topic)
        except TelegramAPIError as exc:
            log.warning("telegram: chat %s: the error line failed too (%s)", chat_id, exc)

    async def _send_approval(self, bot: Bot, target: Target, request: ApprovalRequest) -> None:
        chat_id, topic = target
        if chat_id in self.blocked:
            raise ConnectionError(f"telegram chat {chat_id} blocked the bot")
        markup = _approval_buttons(request.id)
        text = split_message(request.prompt())[0]
        try:
            sent = await self._api(
                lambda: bot.send_message(
                    chat_id, text, reply_markup=markup, message_thread_id=topic
                ),
                "sendMessage",
            )
        except _Blocked:
            raise ConnectionError(f"telegram chat {chat_id} blocked the bot") from None
        prompt = _Prompt(target, sent.message_id)
        prompt.expiry = asyncio.create_task(self._expire(request.id, request.timeout))
        self._prompts[request.id] = prompt

    async def _expire(self, request_id: str, after: float) -> None:
        """Remove the buttons of a request nobody answered once its time is over."""
        await asyncio.sleep(after)
        await self._retire(request_id)

    async def _retire_resolved(self, target: Target) -> None:
        """Remove the buttons of this chat's requests that are no longer waiting (answered
        by a typed ``/approve`` or ``/deny``, or timed out)."""
        for request_id, prompt in list(self._prompts.items()):
            if prompt.target == target and not self._waiting(target, request_id):
                await self._retire(request_id)

    def _waiting(self, target: Target, request_id: str) -> bool:
        """Whether the request still waits for an answer (unknown before the start)."""
        return self._ctx is None or self._ctx.approval_pending(_channel_id(*target), request_id)

    async def _retire(self, request_id: str) -> None:
        """Forget a request's prompt and remove its buttons (once, whoever comes first)."""
        prompt = self._prompts.pop(request_id, None)
        if prompt is None:
            return
        if prompt.expiry is not None and prompt.expiry is not asyncio.current_task():
            prompt.expiry.cancel()
        await self._remove_buttons(prompt.target[0], prompt.message_id)

    async def _remove_buttons(self, chat_id: int, message_id: int) -> None:
        from aiogram.exceptions import TelegramAPIError

        bot = self._bot
        if bot is None:
            return
        try:
            await bot.edit_message_reply_markup(
                chat_id=chat_id, message_id=message_id, reply_markup=None
            )
        except TelegramAPIError as exc:  # gone, already without buttons, ...: cosmetic
            log.info("telegram: buttons of message %s not removed: %s", message_id, exc.message)

    async def _send_file(self, bot: Bot, target: Target, attachment: Attachment) -> None:
        from aiogram.exceptions import TelegramBadRequest
        from aiogram.types import BufferedInputFile

        chat_id, topic = target
        try:
            method, content = media.outgoing(attachment)
        except (OSError, ValueError, media.MediaError) as exc:
            await self._notice(bot, target, f"could not send {attachment.name}: {exc}")
            return
        name = safe_name(attachment.name)
        file: Any = BufferedInputFile(content, name) if isinstance(content, bytes) else content
        if method == "sendPhoto":
            try:
                await self._api(
                    lambda: bot.send_photo(chat_id, file, message_thread_id=topic), "sendPhoto"
                )
                return
            except TelegramBadRequest as exc:  # not a picture Telegram can show: as a file
                log.info(
                    "telegram: %s refused as a photo (%s); sending it as a document", name, exc
                )
        try:
            await self._api(
                lambda: bot.send_document(chat_id, file, message_thread_id=topic), "sendDocument"
            )
        except TelegramBadRequest as exc:
            await self._notice(bot, target, f"could not send {name}: {exc.message}")

    async def _notice(self, bot: Bot, target: Target, text: str) -> None:
        chat_id, topic = target
        await self._api(
            lambda: bot.send_message(chat_id, ERROR_PREFIX + text, message_thread_id=topic),
            "sendMessage",
        )

    async def _api(self, make: Any, what: str) -> Any:
        """A Bot API call with retries; a 403 marks the chat and raises :class:`_Blocked`."""
        from aiogram.exceptions import TelegramForbiddenError

        try:
            return await self.retrying.call(make, what)
        except TelegramForbiddenError as exc:
            chat_id = getattr(exc.method, "chat_id", None)
            if isinstance(chat_id, int):
                self.blocked.add(chat_id)
                for target in [t for t in self._working if t[0] == chat_id]:
                    self._done_working(target, all_turns=True)
            log.warning(
                "telegram: %s to chat %s refused (403: %s); chat marked as blocked",
                what,
                chat_id,
                exc.message,
            )
            raise _Blocked from None

    # -- in -------------------------------------------------------------------------------

    async def _on_message(self, message: Message) -> None:
        from aiogram.exceptions import TelegramAPIError

        try:
            await self._handle_message(message)
        except _Blocked:  # already logged and marked
            pass
        except TelegramAPIError as exc:  # retries exhausted or refused: one line, no traceback
            log.warning("telegram: reply in chat %s failed: %s", message.chat.id, exc.message)

    async def _handle_message(self, message: Message) -> None:
        user, chat = message.from_user, message.chat
        if user is None or user.is_bot or self._bot is None:
            return  # channel posts, other bots, service messages
        private = chat.type == "private"
        if not private and not self._addressed(message):
            return
        text = self._strip_mention(message.text or message.caption or "")
        bot = self._bot
        if not self.access.is_allowed(user.id, user.username):
            await self._refuse(bot, message, user, text, private)
            return
        self.blocked.discard(chat.id)
        if private and text.strip().lower() in ("/start", "/start@" + (self.username or "")):
            await self._api(lambda: message.answer(GREETING), "sendMessage")
            return
        try:
            attachments = await media.download(bot, message, self.settings, self.retrying)
        except Exception as exc:  # too big, download failed: say so, forward nothing
            reason = self._redact.redact(str(exc))
            log.warning("telegram: file from chat %s not taken: %s", chat.id, reason)
            await self._api(
                lambda: message.answer(f"{ERROR_PREFIX}could not take your file: {reason}"),
                "sendMessage",
            )
            return
        if not text.strip() and not attachments:
            await self._api(lambda: message.answer(UNSUPPORTED), "sendMessage")
            return
        metadata = {
            "username": user.username,
            "chat_type": chat.type,
            "message_id": message.message_id,
        }
        delivery = f"{chat.id}:{message.message_id}"
        await self._forward(_target(message), str(user.id), text, attachments, metadata, delivery)

    async def _refuse(
        self, bot: Bot, message: Message, user: User, text: str, private: bool
    ) -> None:
        outcome = self.access.try_pair(user.id, text) if private else None
        reply = {True: PAIRED, False: PAIRING_FAILED, None: REFUSAL}[outcome]
        if outcome is None:
            log.info("telegram: refused user %s in chat %s", user.id, message.chat.id)
        else:
            log.info(
                "telegram: pairing of user %s %s", user.id, "succeeded" if outcome else "failed"
            )
        await self._api(lambda: message.answer(reply), "sendMessage")

    async def _on_callback(self, query: CallbackQuery) -> None:
        with contextlib.suppress(_Blocked):
            await self._handle_callback(query)

    async def _handle_callback(self, query: CallbackQuery) -> None:
        """A button press: the decision goes to the agent first, whatever then happens to
        the pop-up answer (``answerCallbackQuery`` fails for presses handled late)."""
        from aiogram.types import Message

        if self._bot is None:
            return
        user, message = query.from_user, query.message
        button = pressed(query.data or "")
        if not self.access.is_allowed(user.id, user.username):
            log.info("telegram: refused a button press by user %s", user.id)
            await self._answer_press(query, REFUSAL[:200])
            return
        if button is None or message is None:
            await self._answer_press(query, STALE)
            return
        verb, request_id = button
        target = _target(message) if isinstance(message, Message) else (message.chat.id, None)
        waiting = self._waiting(target, request_id)  # in this chat: as if typed here
        if waiting:
            await self._forward(
                target,
                str(user.id),
                f"/{verb} {request_id}",
                [],
                {"username": user.username, "callback": True},
                f"press:{query.id}",
            )
        prompt = self._prompts.get(request_id)
        if prompt is not None and prompt.target == target:
            await self._retire(request_id)
        else:  # a prompt not recorded yet, from before a restart, or of another chat
            await self._remove_buttons(message.chat.id, message.message_id)
        verdict = "Approved" if verb == "approve" else "Denied"
        await self._answer_press(query, verdict if waiting else ANSWERED)

    async def _answer_press(self, query: CallbackQuery, text: str) -> None:
        """Show ``text`` as the press's pop-up; a failure is one warning line (the press
        itself was already handled)."""
        from aiogram.exceptions import TelegramAPIError

        try:
            await self._api(lambda: query.answer(text), "answerCallbackQuery")
        except TelegramAPIError as exc:
            log.warning(
                "telegram: answer to the button press of user %s failed: %s",
                query.from_user.id,
                exc.message,
            )

    async def _forward(
        self,
        target: Target,
        sender: str,
        text: str,
        attachments: list[Attachment],
        metadata: dict[str, Any],
        delivery_id: str,
    ) -> None:
        """Submit the event; ``delivery_id``: ``{chat_id}:{message_id}`` of a message,
        ``press:{callback query id}`` of a button press (the same for an update delivered
        again, by webhook or polling). A failed submit raises (the webhook answers 503)."""
        ctx = self._ctx
        if ctx is None:
            return
        event = ChannelEvent(
            channel_id=_channel_id(*target),
            sender=sender,
            text=text,
            attachments=attachments,
            metadata=metadata,
            delivery_id=delivery_id,
        )
        self._start_working(target)
        try:
            await ctx.submit(event)
        except BaseException:
            self._done_working(target)  # no turn: no "typing"
            raise

    # -- groups ---------------------------------------------------------------------------

    def _addressed(self, message: Message) -> bool:
        """Whether a group message is meant for the bot: a mention, a command for it, or a
        reply to one of its messages."""
        replied = message.reply_to_message
        if replied is not None and replied.from_user and replied.from_user.id == self.bot_id:
            return True
        text = message.text or message.caption or ""
        handle = f"@{self.username or ''}".lower()
        for entity in message.entities or message.caption_entities or []:
            if entity.type == "text_mention" and entity.user and entity.user.id == self.bot_id:
                return True
            part = entity.extract_from(text).lower()
            if entity.type == "mention" and part == handle:
                return True
            if entity.type == "bot_command" and part.endswith(handle):
                return True
        return False

    def _strip_mention(self, text: str) -> str:
        if not self.username:
            return text
        return re.sub(rf"@{re.escape(self.username)}\b", "", text, flags=re.IGNORECASE).strip()

    # -- typing ---------------------------------------------------------------------------

    def _start_working(self, target: Target) -> None:
        self._working[target] = self._working.get(target, 0) + 1
        task = self._typing.get(target)
        if task is None or task.done():
            self._typing[target] = asyncio.create_task(self._keep_typing(target))

    def _done_working(self, target: Target, all_turns: bool = False) -> None:
        left = 0 if all_turns else self._working.get(target, 0) - 1
        if left > 0:
            self._working[target] = left
            return
        self._working.pop(target, None)
        task = self._typing.pop(target, None)
        if task is not None:
            task.cancel()

    async def _keep_typing(self, target: Target) -> None:
        """Show "typing" every ``typing_interval`` seconds until the answer is sent."""
        from aiogram.exceptions import TelegramAPIError

        bot = self._bot
        chat_id, topic = target
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _TYPING_LIMIT
        while bot is not None and loop.time() < deadline:
            try:
                await bot.send_chat_action(chat_id, "typing", message_thread_id=topic)
            except TelegramAPIError as exc:  # cosmetic: never retried, never fatal
                log.debug("telegram: typing in %s failed: %s", chat_id, exc)
            await asyncio.sleep(self.settings.typing_interval)

    # -- internals ------------------------------------------------------------------------

    async def _get_me(self, bot: Bot) -> User:
        from aiogram.exceptions import TelegramAPIError, TelegramUnauthorizedError

        try:
            return await self.retrying.call(bot.get_me, "getMe")
        except TelegramUnauthorizedError:
            raise ConnectionError(
                f"Telegram refused the bot token (401 Unauthorized): check [{SECTION}] token "
                f"or {TOKEN_VARIABLE}"
            ) from None
        except TelegramAPIError as exc:
            where = self.settings.api_base or "the Telegram Bot API"
            detail = self._redact.redact(f"{type(exc).__name__}: {exc}")
            raise ConnectionError(f"cannot reach {where}: {detail}") from None

    def _install_redaction(self) -> None:
        for name in _REDACTED_LOGGERS:
            logging.getLogger(name).addFilter(self._redact)

    def _remove_redaction(self) -> None:
        for name in _REDACTED_LOGGERS:
            logging.getLogger(name).removeFilter(self._redact)


class _Blocked(Exception):
    """The chat's user blocked the bot (403); already logged and marked."""


_CHANNEL = re.compile(rf"^{PREFIX}(-?\d{{1,20}})(?::(\d{{1,20}}))?$")


def _target_of(channel_id: str) -> Target | None:
    """``telegram:{chat}`` or ``telegram:{chat}:{topic}`` as a target; ``None`` if neither."""
    match = _CHANNEL.match(channel_id)
    if match is None:
        return None
    chat, topic = match.groups()
    return int(chat), int(topic) if topic else None


def _channel_id(chat_id: int, topic: int | None) -> str:
    return f"{PREFIX}{chat_id}" if topic is None else f"{PREFIX}{chat_id}:{topic}"


def _target(message: Message) -> Target:
    """Where answers to ``message`` go: its chat, and its topic in a forum group."""
    topic = message.message_thread_id if message.is_topic_message else None
    return message.chat.id, topic


def _approval_buttons(request_id: str) -> InlineKeyboardMarkup:
    from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

    row = [
        InlineKeyboardButton(text=label, callback_data=button_id(verb, request_id))
        for verb, label in BUTTONS
    ]
    return InlineKeyboardMarkup(inline_keyboard=[row])


def create_telegram_adapter(
    settings: TelegramSettings, config: Settings, context: PluginContext | None = None
) -> TelegramAdapter:
    """The ``[channels.telegram]`` factory (options: config.example.toml), handed them
    validated by core."""
    return TelegramAdapter(checked(settings), context=context)
