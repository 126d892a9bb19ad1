"""The Discord channel: discord.py's gateway connection in, REST calls out.

One session per DM and per thread (channel id ``discord:{channel_or_thread_id}``). In guild
channels the bot answers mentions and replies to its own messages, and in threads it
started every message; with ``thread_per_conversation`` a mention opens a thread and the
conversation goes on there. Only allowed users (by id, or by a role in ``allowed_roles``)
and paired users reach the agent; everyone else gets :data:`~openpista.access.REFUSAL`.

Answers stream by editing one message (at most every ``edit_interval`` seconds) and are cut
at 2,000 characters with code fences kept intact; "typing" shows while the agent works.
Slash commands (``/ask``, ``/model``, ``/session``, ``/clear``, ``/help``, ``/pair``) are
registered as application commands and answered ephemerally, except ``/ask``. Approval
requests get Approve / Deny buttons that only the user whose message asked may press.
discord.py itself waits out 429s (per route and global), and reconnects and resumes after
gateway disconnects; a refused token or missing privileged intent is a
:class:`~openpista.ConfigError` (one ``❌`` line, not retried). In a cluster only the replica
that leads ``discord`` connects to the gateway; every replica sends over REST. A replica
that takes the gateway over fetches, once READY, the messages written while no replica held
it (``GET /channels/{id}/messages?after=``), in each chat with a message delivered in the
last ``catch_up_hours`` (its newest one: ``context.deliveries``), at most
``catch_up_limit`` per chat, and handles them as gateway messages; each event carries its
message id as ``delivery_id``, so one the old leader stored is dropped by core. A fetched
guild message names no roles: for an author not allowed by id, its guild member is looked up
(``GET /guilds/{id}/members/{user_id}``, once per user and catch-up). While a chat is caught
up, its live messages wait (at most ``catch_up_wait`` seconds) until its missed ones were
handed on; other chats' do not.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import logging
import re
import uuid
from asyncio import FIRST_COMPLETED
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openpista import ConfigError
from openpista.access import PAIRED, PAIRING_FAILED, REFUSAL, AccessControl, PairingBook
from openpista.buttons import ANSWERED, BUTTONS, STALE, button_id, pressed, verdict
from openpista.channels import Capabilities, ChannelAdapter, ChannelContext
from openpista.files import safe_name
from openpista.models import (
    ERROR_PREFIX,
    Answer,
    ApprovalPrompt,
    Attachment,
    ChannelEvent,
    Outbound,
    TextChunk,
)
from openpista.quietlog import QuietLog
from openpista_discord import logs
from openpista_discord.settings import SECTION, TOKEN_VARIABLE, DiscordSettings, checked
from openpista_discord.text import MESSAGE_LIMIT, split_message

if TYPE_CHECKING:
    import discord

    from openpista.config import Settings
    from openpista.plugin_context import Leadership, PluginContext

log = logging.getLogger(__name__)

CHANNEL = "discord"
PREFIX = "discord:"
UNSUPPORTED = f"{ERROR_PREFIX}openpista reads text and files; this message had neither."
INBOUND_LIMIT = 4000  # the longest message Discord lets anyone write (with Nitro)
TOO_LONG = f"{ERROR_PREFIX}that message is longer than Discord allows; nothing was sent on."
NOT_YOURS = "⛔ Only the person whose message asked for this can answer it."
_CHANNEL = re.compile(rf"^{PREFIX}(\d{{1,20}})$")
_READY_WAIT = 60.0
DISCORD_GATEWAY = "wss://gateway.discord.gg/"  # discord.py's DiscordWebSocket.DEFAULT_GATEWAY
_TYPING_LIMIT = 30 * 60.0
_ELLIPSIS = " …"
_SEEN = 10_000  # message ids remembered: one handled live is not handled again by catch-up


_Members = dict[int, "set[int] | str"]  # user id -> its role ids, or why it is no member


@dataclass
class _Stream:
    """An answer being written: the message it is shown in, edited as text arrives."""

    text: str = ""
    message: discord.Message | None = None
    shown: str = ""
    last_edit: float | None = None


@dataclass
class _Prompt:
    """An approval request on screen with its buttons."""

    asker: str
    message: discord.Message | None = None  # set once posted (a press may come first)
    expiry: asyncio.Task[None] | None = None


@dataclass
class _Chat:
    """What the adapter tracks per conversation."""

    turns: dict[str, str] = field(default_factory=dict)  # request id -> sender, in flight
    typing: asyncio.Task[None] | None = None
    streams: dict[str, _Stream] = field(default_factory=dict)  # request id -> stream


class DiscordAdapter(ChannelAdapter):
    """The ``discord`` channel adapter (see the module docstring)."""

    name = CHANNEL
    channel_prefix = PREFIX
    replies_anywhere = True  # its API answers a chat from any replica
    capabilities = Capabilities(
        streaming=True, files=True, buttons=True, max_message_length=MESSAGE_LIMIT
    )

    def __init__(
        self,
        settings: DiscordSettings,
        pairing: PairingBook | None = None,
        context: PluginContext | None = None,
    ) -> None:
        """``context``: in a cluster (``context.leadership``) only the replica that leads
        ``discord`` holds a gateway connection (Discord sends each event to every connection
        of an unsharded bot); every replica sends over REST."""
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
        self.allowed_roles = {int(r) for r in settings.allowed_roles}
        self.bot_id: int | None = None
        self._client: discord.AutoShardedClient | None = None
        self._connection: asyncio.Task[None] | None = None
        self._ctx: ChannelContext | None = None
        self._chats: dict[int, _Chat] = {}
        self._prompts: dict[str, _Prompt] = {}
        self._stopping = False
        self._quiet = QuietLog()  # what a peer can trigger at will
        self._seen: dict[int, None] = {}  # message ids handled here, oldest first
        self._gates: dict[int, asyncio.Event] = {}  # chat id -> set once it is caught up

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, ctx: ChannelContext) -> None:
        """Log in (``GET /users/@me``), register the slash commands, connect to the
        gateway ``GET /gateway/bot`` names and return once READY (in a cluster: connect
        in the background while this replica leads ``discord``)."""
        import discord

        self._ctx, self._stopping = ctx, False
        logs.install(self.settings.secret("token"))
        # discord.py builds every REST URL from this class attribute (it sets it itself
        # for the API version): the one supported switch for another Discord front end.
        discord.http.Route.BASE = self.settings.rest_base
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice here
        client, ready, tree = self._new_client()
        self._client = client
        leadership = None if self.context is None else self.context.leadership
        try:
            await self._login(client)
            await self._point_gateway(client)
            await self._sync(tree)
            if leadership is None:
                await self._connect(client, ready)
            else:
                self._connection = asyncio.create_task(
                    self._receive_while_leading(leadership), name="openpista-discord-gateway"
                )
        except BaseException as exc:
            await self._close()
            raise _start_problem(exc) from None
        self.bot_id = client.user.id if client.user else None
        log.info("discord: %s as %s", "connected" if leadership is None else "ready", client.user)

    def _new_client(self) -> tuple[discord.AutoShardedClient, asyncio.Event, Any]:
        """A discord.py client with this adapter's handlers and slash commands, an event
        set when its gateway connection gets READY, and its command tree."""
        import discord

        from openpista_discord.commands import build_tree

        intents = discord.Intents.none()
        intents.guilds = intents.guild_messages = intents.dm_messages = True
        intents.message_content = self.settings.message_content
        client = discord.AutoShardedClient(
            intents=intents,
            max_ratelimit_timeout=self.settings.max_retry_after,
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
        )
        ready = asyncio.Event()
        # READY received (not on_ready, which waits guild_ready_timeout for more guilds)
        client.on_connect = _setter(ready)  # type: ignore[attr-defined]
        client.on_message = self._on_live_message  # type: ignore[attr-defined]
        client.on_interaction = self._on_interaction  # type: ignore[attr-defined]
        return client, ready, build_tree(client, self)

    async def _connect(self, client: discord.AutoShardedClient, ready: asyncio.Event) -> None:
        """Connect ``client`` to the gateway in the background; return once READY."""
        self._connection = asyncio.create_task(
            client.connect(reconnect=True), name="openpista-discord-gateway"
        )
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait(
            {self._connection, waiter}, timeout=_READY_WAIT, return_when=FIRST_COMPLETED
        )
        waiter.cancel()
        if self._connection in done:
            self._connection.result()  # raises what ended it
            raise ConnectionError("discord: the gateway closed before READY")
        if not done:
            raise ConnectionError(f"discord: no READY from the gateway in {_READY_WAIT:.0f} s")

    async def _receive_while_leading(self, leadership: Leadership) -> None:
        """Cluster mode: hold a gateway connection (its own client) while this replica
        leads ``discord``, none while another replica does."""
        while True:
            while not leadership.leading(CHANNEL):
                await leadership.changed(CHANNEL)
            log.info("discord: this replica connects to the gateway (it leads discord)")
            gateway, ready, _ = self._new_client()
            lost = asyncio.create_task(leadership.changed(CHANNEL))
            connection: asyncio.Task[None] | None = None
            catch_up: asyncio.Task[None] | None = None
            try:
                await self._login(gateway)
                missed = await self._newest_delivered()  # before READY: no live one counted
                self._gates = {channel_id: asyncio.Event() for channel_id in missed}
                connection = asyncio.create_task(gateway.connect(reconnect=True))
                catch_up = asyncio.create_task(self._catch_up(gateway, ready, missed))
                done, _ = await asyncio.wait({connection, lost}, return_when=FIRST_COMPLETED)
            finally:
                lost.cancel()
                if catch_up is not None:
                    catch_up.cancel()
                    await asyncio.gather(catch_up, return_exceptions=True)
                self._open_gates()
                with contextlib.suppress(Exception):
                    await gateway.close()  # closes its connection: the new leader connects
                if connection is not None:
                    connection.cancel()
                    await asyncio.gather(connection, return_exceptions=True)
            if connection in done:
                connection.result()  # ended on its own: so does this; a failure raises
                return
            log.info("discord: another replica holds the gateway connection now")

    async def _newest_delivered(self) -> dict[int, int]:
        """Discord channel id -> the newest message delivered there in the last
        ``catch_up_hours`` (across the cluster: ``context.deliveries``)."""
        deliveries = None if self.context is None else self.context.deliveries
        if deliveries is None or not self.settings.catch_up_hours:
            return {}
        try:
            newest = await deliveries.newest(CHANNEL, self.settings.catch_up_hours * 3600)
        except Exception as exc:  # the database is unwell: live messages still work
            log.warning("❌ discord: no catch-up of missed messages: %s", exc)
            return {}
        found: dict[int, int] = {}
        for chat, delivery in newest.items():
            channel_id = _target_of(chat)
            if channel_id is not None and delivery.isascii() and delivery.isdigit():
                found[channel_id] = int(delivery)
            else:
                self._quiet.warning(log, "bad-delivery", f"discord: {chat!r}: no catch-up")
        return found

    async def _catch_up(
        self, gateway: discord.AutoShardedClient, ready: asyncio.Event, missed: dict[int, int]
    ) -> None:
        """Once READY, handle what was written in each of ``missed``'s channels after its
        newest delivered message (its own task: live messages do not wait for it). With
        ``thread_per_conversation`` also in the channels the bot's threads were opened from,
        after the newest of them (a thread opened from a message has that message's id).
        Each chat's gate (:meth:`_on_live_message`) opens once its messages were handed on,
        every one when this ends, however it ends."""
        import discord

        if not missed:
            return
        try:
            await ready.wait()
            channels: dict[int, tuple[Any, int]] = {}
            for channel_id, after in missed.items():
                channel = await self._missed_channel(gateway, channel_id)
                if channel is not None:
                    channels[channel_id] = (channel, after)
                else:
                    self._open_gate(channel_id)
            if self.settings.thread_per_conversation:
                opened: dict[int, int] = {}
                for channel, _ in channels.values():
                    if isinstance(channel, discord.Thread) and channel.owner_id == self.bot_id:
                        parent = channel.parent_id
                        opened[parent] = max(opened.get(parent, 0), channel.id)
                for parent_id, after in opened.items():
                    self._gates.setdefault(parent_id, asyncio.Event())
                    known = channels.get(parent_id)
                    channel = known[0] if known else await self._missed_channel(gateway, parent_id)
                    if channel is not None:
                        channels[parent_id] = (channel, max(after, known[1] if known else 0))
                    else:
                        self._open_gate(parent_id)
            caught, members = 0, _Members()
            for channel_id, (channel, after) in channels.items():
                try:
                    caught += await self._catch_up_on(gateway, channel, after, members)
                finally:
                    self._open_gate(channel_id)
            log.info("discord: caught up on %d channel(s), %d message(s)", len(channels), caught)
        finally:
            self._open_gates()

    def _open_gate(self, channel_id: int) -> None:
        """Let the live messages of chat ``channel_id`` go: it is caught up."""
        gate = self._gates.pop(channel_id, None)
        if gate is not None:
            gate.set()

    def _open_gates(self) -> None:
        for channel_id in list(self._gates):
            self._open_gate(channel_id)

    async def _missed_channel(self, gateway: discord.AutoShardedClient, channel_id: int) -> Any:
        """The channel ``channel_id`` (cached, else ``GET /channels/{id}``); ``None``, with
        one log line, when it cannot be had."""
        import discord

        try:
            return gateway.get_channel(channel_id) or await gateway.fetch_channel(channel_id)
        except (discord.HTTPException, discord.InvalidData, ValueError, KeyError, TypeError) as exc:
            log.warning("discord: cannot fetch the messages missed in %s: %s", channel_id, exc)
            return None

    async def _catch_up_on(
        self, gateway: discord.AutoShardedClient, channel: Any, after: int, members: _Members
    ) -> int:
        """Handle the messages of ``channel`` after message ``after`` (at most
        ``catch_up_limit``, oldest first); how many were fetched. A failure is one line.
        ``members``: the guild members looked up in this catch-up."""
        import discord

        limit = self.settings.catch_up_limit
        try:
            found = await _missed(
                channel.history(after=discord.Object(id=after), limit=None), limit
            )
        except (discord.HTTPException, discord.InvalidData, ValueError, KeyError, TypeError) as exc:
            log.warning("discord: cannot fetch the messages missed in %s: %s", channel.id, exc)
            return 0
        if len(found) > limit:
            log.warning(
                "discord: over %d messages were written in %s while no replica held the "
                "gateway; the first %d are handled, the rest are not",
                limit,
                channel.id,
                limit,
            )
            found = found[:limit]
        deliveries = None if self.context is None else self.context.deliveries
        try:
            done = (
                set()
                if deliveries is None
                else await deliveries.delivered(CHANNEL, [str(message.id) for message in found])
            )
        except Exception as exc:  # core drops a duplicate anyway
            log.debug("discord: deliveries not read: %s", exc)
            done = set()
        for message in found:
            if str(message.id) in done:
                continue
            member, allowed = await self._missed_author(gateway, message, members)
            if member:
                await self._on_message(message, allowed=allowed)
        return len(found)

    async def _missed_author(
        self, gateway: discord.AutoShardedClient, message: discord.Message, members: _Members
    ) -> tuple[bool, bool | None]:
        """Whether the author of the fetched ``message`` is one to handle, and whether
        it may reach the agent by a role in ``allowed_roles`` (REST messages name no
        roles): in a guild, for an author not allowed by id, its guild member's roles
        (``GET /guilds/{id}/members/{user_id}``, once per user in ``members``), read from
        the answer (the guild's roles may not be cached yet right after READY). ``None``:
        no lookup needed (a DM, a bot, no ``allowed_roles``, allowed by id). Not one to
        handle, with one log line, when the user is no member (``404``: left the guild) or
        cannot be looked up (``403``, a malformed answer)."""
        import discord

        author, guild = message.author, message.guild
        if guild is None or author.bot or not self.allowed_roles or self.is_allowed(author):
            return True, None
        if author.id not in members:
            try:
                data: Any = await gateway.http.get_member(guild.id, author.id)
                members[author.id] = _role_ids(data["roles"])
            except (discord.HTTPException, discord.RateLimited) as exc:
                members[author.id] = str(exc)
            except (KeyError, TypeError, ValueError) as exc:
                members[author.id] = f"malformed member answer ({type(exc).__name__})"
        roles = members[author.id]
        if isinstance(roles, str):
            log.info(
                "discord: a missed message of %s is not handled: no member of guild %s: %s",
                author.id,
                guild.id,
                roles[:200],
            )
            return False, False
        return True, self._allowed(author.id, roles)

    async def _login(self, client: discord.AutoShardedClient) -> None:
        import aiohttp
        import discord

        try:
            await client.login(self.settings.secret("token"))
        except discord.LoginFailure:
            raise ConfigError(
                f"Discord refused the bot token (401 Unauthorized): check [{SECTION}] token "
                f"or {TOKEN_VARIABLE} (Developer Portal -> Bot -> Reset Token)"
            ) from None
        except (discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            where = self.settings.api_base or "Discord"
            raise ConnectionError(f"cannot reach {where}: {type(exc).__name__}: {exc}") from None

    async def _point_gateway(self, client: discord.AutoShardedClient) -> None:
        """Make discord.py's fallback gateway the one ``GET /gateway/bot`` names.

        The first connection and RESUMEs use the URLs Discord hands out, but after an
        INVALID_SESSION or an unexpected close discord.py connects to its class attribute
        ``DiscordWebSocket.DEFAULT_GATEWAY`` (Discord's own host): with ``api_base`` set,
        that must point at the same front end too."""
        import discord
        import yarl

        url = DISCORD_GATEWAY
        if self.settings.api_base is not None:
            try:
                _, url, _ = await client.http.get_bot_gateway()
            except discord.GatewayNotFound as exc:
                raise ConnectionError(
                    f"discord: no gateway URL from {self.settings.api_base}: {exc}"
                ) from None
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)

    async def _sync(self, tree: Any) -> None:
        """Register the slash commands (globally, or in ``command_guilds``); a failure is
        logged, not fatal: messages still work."""
        import discord

        try:
            if not self.settings.command_guilds:
                await tree.sync()
            for guild_id in self.settings.command_guilds:
                guild = discord.Object(id=int(guild_id))
                tree.copy_global_to(guild=guild)
                await tree.sync(guild=guild)
        except discord.HTTPException as exc:
            log.warning("discord: slash commands not registered: %s", exc)

    async def wait_closed(self) -> None:
        """Wait while the gateway connection runs; raises if it ended without :meth:`stop`
        (the gateway then restarts the channel)."""
        connection = self._connection
        if connection is None:
            return
        try:
            await asyncio.shield(connection)
        except Exception as exc:
            if not self._stopping:
                raise _start_problem(exc) from None
        if not self._stopping:
            raise ConnectionError("discord: the gateway connection ended unexpectedly")

    async def stop(self) -> None:
        """Stop "typing" and prompt timers, close the gateway and the HTTP session."""
        self._stopping = True
        await self._close()
        logs.remove()

    async def _close(self) -> None:
        tasks = [c.typing for c in self._chats.values() if c.typing]
        tasks += [p.expiry for p in self._prompts.values() if p.expiry]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._chats.clear()
        self._prompts.clear()
        client, connection = self._client, self._connection
        self._client = self._connection = None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        if connection is not None:
            connection.cancel()
            await asyncio.gather(connection, return_exceptions=True)

    # -- out ------------------------------------------------------------------------------

    async def send(self, message: Outbound) -> None:
        """Stream chunks into one edited message; deliver answers, files and approval
        prompts."""
        channel_id = _target_of(message.channel_id)
        client = self._client
        if channel_id is None or client is None:
            log.warning("discord: cannot deliver to %r (not running)", message.channel_id)
            return
        import discord

        channel = client.get_partial_messageable(channel_id)
        try:
            if isinstance(message, TextChunk):
                await self._stream(channel, channel_id, message)
            elif isinstance(message, Answer):
                await self._answer(channel, channel_id, message)
            elif isinstance(message, ApprovalPrompt):
                await self._prompt(channel, channel_id, message)
        except (discord.HTTPException, discord.RateLimited) as exc:
            log.warning("discord: delivery to %s failed: %s", channel_id, exc)
            if isinstance(message, ApprovalPrompt):
                raise ConnectionError(f"discord: approval prompt not shown: {exc}") from None

    async def _stream(self, channel: Any, channel_id: int, chunk: TextChunk) -> None:
        stream = self._chat(channel_id).streams.setdefault(chunk.request_id or "", _Stream())
        stream.text += chunk.text
        loop = asyncio.get_running_loop()
        last = stream.last_edit
        if last is not None and loop.time() - last < self.settings.edit_interval:
            return
        shown = _preview(stream.text)
        if not shown.strip() or shown == stream.shown:
            return
        stream.last_edit = loop.time()
        if stream.message is None:
            stream.message = await channel.send(shown)
        else:
            await stream.message.edit(content=shown)
        stream.shown = shown

    async def _answer(self, channel: Any, channel_id: int, answer: Answer) -> None:
        chat = self._chat(channel_id)
        stream = chat.streams.pop(answer.request_id or "", None)
        self._done_working(channel_id, answer.request_id)
        text = answer.text.strip()  # within MESSAGE_LIMIT: the gateway cut a longer one
        if stream is not None and stream.message is not None:
            if (text or "(no text)") != stream.shown:
                await stream.message.edit(content=text or "(no text)")
        elif text:
            await channel.send(text)
        for attachment in answer.attachments:
            await self._send_file(channel, attachment)

    async def _send_file(self, channel: Any, attachment: Attachment) -> None:
        import discord

        try:
            content = _file_bytes(attachment, self.settings.max_upload_bytes)
        except (OSError, ValueError) as exc:
            await channel.send(f"{ERROR_PREFIX}could not send {attachment.name}: {exc}")
            return
        name = Path(attachment.name).name or "file"
        await channel.send(file=discord.File(io.BytesIO(content), filename=name))

    async def _prompt(self, channel: Any, channel_id: int, prompt: ApprovalPrompt) -> None:
        import discord

        request = prompt.request
        asker = self._chat(channel_id).turns.get(prompt.request_id or "", "")
        view = discord.ui.View(timeout=None)
        styles = {"approve": discord.ButtonStyle.success, "deny": discord.ButtonStyle.danger}
        for verb, label in BUTTONS:
            custom_id = button_id(verb, request.id)
            view.add_item(discord.ui.Button(label=label, style=styles[verb], custom_id=custom_id))
        record = self._prompts[request.id] = _Prompt(asker)
        try:
            record.message = await channel.send(split_message(request.prompt())[0], view=view)
        except BaseException:
            self._prompts.pop(request.id, None)
            raise
        view.stop()  # presses are handled in _on_interaction, also after a restart
        record.expiry = asyncio.create_task(self._expire(request.id, request.timeout))

    async def _expire(self, request_id: str, after: float) -> None:
        await asyncio.sleep(after)
        prompt = self._prompts.pop(request_id, None)
        if prompt is not None and prompt.message is not None:
            with contextlib.suppress(Exception):
                await prompt.message.edit(view=None)

    # -- in -------------------------------------------------------------------------------

    async def _on_live_message(self, message: discord.Message) -> None:
        """A gateway MESSAGE_CREATE, handled once its chat is caught up (when a catch-up
        runs for it), or after ``catch_up_wait`` seconds (one log line)."""
        chat = message.channel.id
        gate = self._gates.get(chat)
        if gate is not None and not gate.is_set() and not message.author.bot:
            log.info("discord: a live message in %s waits until its chat is caught up", chat)
            try:
                await asyncio.wait_for(gate.wait(), self.settings.catch_up_wait)
            except TimeoutError:
                log.warning(
                    "discord: the catch-up of %s takes over %.0f s; a live message there is "
                    "handled before the missed ones",
                    chat,
                    self.settings.catch_up_wait,
                )
        await self._on_message(message)

    async def _on_message(self, message: discord.Message, *, allowed: bool | None = None) -> None:
        import discord

        try:
            await self._handle_message(message, allowed=allowed)
        except (discord.HTTPException, discord.RateLimited) as exc:  # one line, no traceback
            log.warning("discord: reply in %s failed: %s", message.channel.id, exc)

    async def _handle_message(
        self, message: discord.Message, *, allowed: bool | None = None
    ) -> None:
        """``allowed``: whether the author may reach the agent, when known otherwise than
        by :meth:`is_allowed` (a catch-up's member lookup)."""
        import discord

        author, client = message.author, self._client
        if author.bot or client is None or client.user is None or self._handled(message.id):
            return
        private = message.guild is None
        if not private and not self._addressed(message):
            return
        text = self._strip_mention(message.content)
        if not (self.is_allowed(author) if allowed is None else allowed):
            outcome = self.access.try_pair(author.id, text) if private else None
            reply = {True: PAIRED, False: PAIRING_FAILED, None: REFUSAL}[outcome]
            log.info(
                "discord: %s user %s", "pairing of" if outcome is not None else "refused", author.id
            )
            await message.reply(reply, mention_author=False)
            return
        if len(text) > INBOUND_LIMIT:
            self._quiet.warning(
                log,
                "too-long",
                f"discord: a {len(text)}-character message from {author.id} refused",
            )
            await message.reply(TOO_LONG, mention_author=False)
            return
        try:
            attachments = await self._download(message)
        except (ValueError, OSError, discord.HTTPException) as exc:
            await message.reply(
                f"{ERROR_PREFIX}could not take your file: {exc}", mention_author=False
            )
            return
        if not text.strip() and not attachments:
            await message.reply(UNSUPPORTED, mention_author=False)
            return
        channel_id = message.channel.id
        if self.settings.thread_per_conversation and isinstance(
            message.channel, discord.TextChannel
        ):
            thread = await message.create_thread(name=_thread_name(text))
            channel_id = thread.id
        metadata = {"username": author.name, "message_id": message.id}
        if message.guild is not None:
            metadata["guild_id"] = message.guild.id
        await self.forward(
            channel_id, str(author.id), text, attachments, metadata, delivery_id=str(message.id)
        )

    def _handled(self, message_id: int) -> bool:
        """Whether message ``message_id`` was handled here already (live and fetched
        again by a catch-up); remembers it."""
        if message_id in self._seen:
            return True
        self._seen[message_id] = None
        if len(self._seen) > _SEEN:
            del self._seen[next(iter(self._seen))]
        return False

    def is_allowed(self, user: discord.User | discord.Member) -> bool:
        """Whether ``user`` may reach the agent: allowed or paired id, or an allowed role."""
        return self._allowed(user.id, {role.id for role in getattr(user, "roles", ())})

    def _allowed(self, user_id: int, roles: set[int]) -> bool:
        return bool(roles & self.allowed_roles) or self.access.is_allowed(user_id)

    async def forward(
        self,
        channel_id: int,
        sender: str,
        text: str,
        attachments: list[Attachment] | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        delivery_id: str | None = None,
    ) -> None:
        """Hand what ``sender`` wrote in ``channel_id`` to the agent; "typing" shows
        until the answer is sent. ``delivery_id``: the Discord message's id."""
        ctx = self._ctx
        if ctx is None:
            return
        request_id = uuid.uuid4().hex  # comes back on every reply to this event
        event = ChannelEvent(
            channel_id=f"{PREFIX}{channel_id}",
            sender=sender,
            text=text,
            attachments=attachments or [],
            metadata={**(metadata or {}), "request_id": request_id},
            delivery_id=delivery_id,
        )
        self._start_working(channel_id, request_id, sender)
        await ctx.submit(event)

    async def run_command(self, channel_id: int, text: str) -> str:
        """A core chat command's reply text for ``text`` typed in ``channel_id``."""
        ctx = self._ctx
        if ctx is None:
            return f"{ERROR_PREFIX}openpista is not running"
        reply = await ctx.run_command(f"{PREFIX}{channel_id}", text)
        return reply.text if reply is not None else f"{ERROR_PREFIX}unknown command {text}"

    async def _on_interaction(self, interaction: discord.Interaction) -> None:
        import discord

        if interaction.type is not discord.InteractionType.component:
            return  # slash commands: openpista_discord.commands
        try:
            await self._press(interaction)
        except (discord.HTTPException, discord.RateLimited) as exc:
            log.warning("discord: answer to a button press failed: %s", exc)

    async def _press(self, interaction: discord.Interaction) -> None:
        user = interaction.user
        data: dict[str, Any] = dict(interaction.data or {})
        button = pressed(str(data.get("custom_id", "")))
        if not self.is_allowed(user):
            await interaction.response.send_message(REFUSAL, ephemeral=True)
            return
        if button is None or interaction.channel_id is None:
            await interaction.response.send_message(STALE, ephemeral=True)
            return
        verb, request_id = button
        channel_id = interaction.channel_id
        prompt = self._prompts.get(request_id)
        if prompt is not None and prompt.asker and prompt.asker != str(user.id):
            await interaction.response.send_message(NOT_YOURS, ephemeral=True)
            return
        ctx = self._ctx
        waiting = ctx is not None and ctx.approval_pending(f"{PREFIX}{channel_id}", request_id)
        self._prompts.pop(request_id, None)
        if prompt is not None and prompt.expiry is not None:
            prompt.expiry.cancel()
        decided = verdict(verb, f"<@{user.id}>") if waiting else ANSWERED
        original = interaction.message.content if interaction.message else ""
        await interaction.response.edit_message(
            content=f"{original}\n\n{decided}"[:MESSAGE_LIMIT], view=None
        )
        if waiting:
            await self.forward(
                channel_id, str(user.id), f"/{verb} {request_id}", metadata={"button": True}
            )

    # -- guilds ---------------------------------------------------------------------------

    def _addressed(self, message: discord.Message) -> bool:
        """Whether a guild message is for the bot: a mention, a reply to one of its
        messages, or any message in a thread it started."""
        import discord

        bot_id = self.bot_id
        if any(user.id == bot_id for user in message.mentions):
            return True
        reference = message.reference
        resolved = reference.resolved if reference is not None else None
        if isinstance(resolved, discord.Message) and resolved.author.id == bot_id:
            return True
        channel = message.channel
        return isinstance(channel, discord.Thread) and channel.owner_id == bot_id

    def _strip_mention(self, text: str) -> str:
        if self.bot_id is None:
            return text.strip()
        return re.sub(rf"<@!?{self.bot_id}>", "", text).strip()

    async def _download(self, message: discord.Message) -> list[Attachment]:
        """The message's files, saved under ``downloads``; pictures up to
        ``inline_image_bytes`` also inline for the LLM. Too big: ``ValueError``."""
        found: list[Attachment] = []
        for item in message.attachments:
            if item.size > self.settings.max_download_bytes:
                raise ValueError(
                    f"{item.filename} is {item.size} bytes; the limit is "
                    f"{self.settings.max_download_bytes}"
                )
        for item in message.attachments:
            content = await item.read()
            if len(content) > self.settings.max_download_bytes:
                raise ValueError(f"{item.filename} is bigger than announced")
            folder = self.settings.downloads
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = folder / f"{item.id}-{safe_name(item.filename)}"
            path.write_bytes(content)
            mime = item.content_type or "application/octet-stream"
            inline = mime.startswith("image/") and len(content) <= self.settings.inline_image_bytes
            data = base64.b64encode(content).decode() if inline else None
            found.append(Attachment(name=item.filename, mime_type=mime, path=str(path), data=data))
        return found

    # -- typing ---------------------------------------------------------------------------

    def _chat(self, channel_id: int) -> _Chat:
        return self._chats.setdefault(channel_id, _Chat())

    def _start_working(self, channel_id: int, request_id: str, sender: str) -> None:
        chat = self._chat(channel_id)
        chat.turns[request_id] = sender
        if chat.typing is None or chat.typing.done():
            chat.typing = asyncio.create_task(self._keep_typing(channel_id))

    def _done_working(self, channel_id: int, request_id: str | None) -> None:
        """A turn was answered; "typing" stops with the last one (notices without a
        request id change nothing)."""
        chat = self._chat(channel_id)
        if request_id is None or chat.turns.pop(request_id, None) is None:
            return
        if not chat.turns and chat.typing is not None:
            chat.typing.cancel()
            chat.typing = None

    async def _keep_typing(self, channel_id: int) -> None:
        """Show "typing" every ``typing_interval`` seconds until the answer is sent."""
        import discord

        client = self._client
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _TYPING_LIMIT
        while client is not None and loop.time() < deadline:
            try:
                await client.get_partial_messageable(channel_id).typing()
            except discord.HTTPException as exc:  # cosmetic: never fatal
                log.debug("discord: typing in %s failed: %s", channel_id, exc)
            await asyncio.sleep(self.settings.typing_interval)


async def _missed(history: Any, limit: int) -> list[discord.Message]:
    """The first ``limit + 1`` messages of ``history`` not written by a bot (the bot's
    own answers are in it too), reading at most ``10 * limit`` of the bot's."""
    found: list[discord.Message] = []
    skipped = 0
    async for message in history:
        if message.author.bot:
            skipped += 1
            if skipped > 10 * limit:
                break
            continue
        found.append(message)
        if len(found) > limit:
            break
    return found


def _role_ids(raw: Any) -> set[int]:
    """A guild member's ``roles`` (snowflake strings); ``ValueError`` for anything else."""
    if not isinstance(raw, list) or len(raw) > 1000:
        raise ValueError("roles is not a list of ids")
    if not all(isinstance(role, str) and role.isascii() and role.isdigit() for role in raw):
        raise ValueError("roles is not a list of ids")
    return {int(role) for role in raw}


def _setter(event: asyncio.Event) -> Any:
    async def on_connect() -> None:
        event.set()

    return on_connect


def _start_problem(exc: BaseException) -> BaseException:
    """What a failed connection means for the user: a ConfigError (one ❌ line, no retry)
    for a refused token or intent, else the error itself."""
    import discord

    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return ConfigError(
            f"[{SECTION}] message_content: Discord refused the Message Content intent; "
            "enable it in the Developer Portal (Bot -> Privileged Gateway Intents) or set "
            "message_content = false (the bot then reads only mentions and DMs)"
        )
    if isinstance(exc, discord.ConnectionClosed) and exc.code == 4004:
        return ConfigError(
            f"Discord refused the bot token on the gateway (4004): check [{SECTION}] token"
        )
    return exc


def _preview(text: str) -> str:
    """What a streamed answer shows so far: its first message's worth."""
    if len(text) <= MESSAGE_LIMIT:
        return text
    return text[: MESSAGE_LIMIT - len(_ELLIPSIS)] + _ELLIPSIS


def _target_of(channel_id: str) -> int | None:
    match = _CHANNEL.match(channel_id)
    return int(match.group(1)) if match else None


def _thread_name(text: str) -> str:
    first = " ".join(text.split())[:80]
    return first or "openpista"


def _file_bytes(attachment: Attachment, limit: int) -> bytes:
    """An outgoing attachment's content (from ``path`` or base64 ``data``), at most
    ``limit`` bytes."""
    if attachment.path:
        path = Path(attachment.path)
        if path.stat().st_size > limit:
            raise ValueError(f"it is bigger than {limit} bytes")
        return path.read_bytes()
    if attachment.data:
        try:
            content = base64.b64decode(attachment.data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("its data is not base64") from None
        if len(content) > limit:
            raise ValueError(f"it is bigger than {limit} bytes")
        return content
    raise ValueError("it has no content")


def create_discord_adapter(
    settings: DiscordSettings, config: Settings, context: PluginContext | None = None
) -> DiscordAdapter:
    """The ``[channels.discord]`` factory (options: config.example.toml), handed them
    validated by core."""
    return DiscordAdapter(checked(settings), context=context)
