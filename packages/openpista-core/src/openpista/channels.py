"""The channel contract: how a messenger plugs into the gateway.

A channel subclasses :class:`ChannelAdapter`. The gateway calls ``start(ctx)`` with a
:class:`ChannelContext`, the adapter's one way back in: it submits what users write,
delivers notices, reads a chat's session and history, and runs chat commands. The gateway
sends the adapter :data:`~openpista.models.Outbound` messages, only the kinds its
:class:`Capabilities` accept.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from openpista.config import Settings
    from openpista.models import ChannelEvent, Message, Outbound


class GatewayClosedError(RuntimeError):
    """Raised by :meth:`ChannelContext.submit` once the gateway is shutting down."""


@dataclass(frozen=True)
class Capabilities:
    """What a messenger can show.

    ``streaming``: it shows an answer as it is written, so it also gets
    :class:`~openpista.models.TextChunk` and :class:`~openpista.models.ToolProgress`
    messages. ``files``: it sends attachments (without, the gateway names each file in the
    answer's text instead). ``buttons``: it renders approval prompts as buttons.
    ``max_message_length``: the longest text one native message holds, as ``measure``
    counts it (``None``: no limit); the gateway sends a longer answer as several
    (:meth:`split`). ``measure``: the length of a text once it is a native message
    (default: its characters; Telegram counts UTF-16 units, Slack its escaped ``mrkdwn``).
    """

    streaming: bool = False
    files: bool = False
    buttons: bool = False
    max_message_length: int | None = None
    measure: Callable[[str], int] = len

    def accepts(self, message: Outbound) -> bool:
        """Whether a channel with these capabilities is sent ``message``."""
        return self.streaming or message.kind in ("answer", "approval")

    def split(self, message: Outbound) -> list[Outbound]:
        """``message`` as the messages the channel is sent: an answer longer than
        ``max_message_length`` as several answers, cut by :func:`openpista.split_message`
        (code blocks closed and reopened), its files and usage with the last one; any
        other message as it is."""
        from openpista.models import Answer, Usage
        from openpista.text import split_message

        limit = self.max_message_length
        if limit is None or not isinstance(message, Answer) or self.measure(message.text) <= limit:
            return [message]
        *first, last = split_message(message.text, limit, measure=self.measure) or [""]
        alone = {"attachments": [], "usage": Usage()}
        parts: list[Outbound] = [message.model_copy(update={**alone, "text": t}) for t in first]
        return [*parts, message.model_copy(update={"text": last})]


@dataclass(frozen=True)
class CommandReply:
    """What a chat command answers: a text (``is_error``: it starts with ❌), and the
    session the chat was moved to, when it was (``/session ID``, ``/clear``)."""

    text: str
    is_error: bool = False
    session_id: str | None = None


@dataclass(frozen=True)
class CommandCall:
    """One typed chat command: ``/name argument`` in ``channel_id``, whose chat is in
    session ``session_id`` (``name`` in lower case, without the slash)."""

    channel_id: str
    session_id: str
    name: str
    argument: str


@dataclass(frozen=True)
class ChatCommand:
    """A slash command every channel answers (registered with ``register_chat_commands``).

    ``name`` is the word after the slash (``weather``, ``svc:weather``: a lowercase letter,
    then up to 31 of ``a-z0-9_:-``); ``usage`` and ``summary`` make its
    ``/help`` line (``/weather CITY``, ``the forecast for CITY``); ``run`` answers it.
    """

    name: str
    summary: str
    run: Callable[[CommandCall], Awaitable[CommandReply]]
    usage: str = ""


class ChannelContext(Protocol):
    """What a channel may ask of the gateway serving it (handed to ``start``)."""

    @property
    def ready(self) -> bool:
        """Whether the next message is answered without a start-up wait."""
        ...

    async def submit(self, event: ChannelEvent) -> None:
        """Hand what a user wrote to the agent; waits while the gateway is busy. While the
        gateway stops, the chat is told so; once it has stopped, :class:`GatewayClosedError`
        is raised. In cluster mode a channel that :attr:`~ChannelAdapter.replies_anywhere`
        has its message stored in the cluster once this returns (acknowledge it to the
        messenger only then); an error raised means it was not stored: have the messenger
        deliver it again (a webhook answers 5xx), with the event's ``delivery_id`` set so
        that a message stored after all is not run twice."""
        ...

    async def deliver(self, message: Outbound) -> None:
        """Send ``message`` to the channel owning its ``channel_id`` (any channel: e.g. a
        notice to an operator's chat elsewhere); dropped, logged, when none does."""
        ...

    async def session_for(self, channel_id: str) -> str:
        """The session of the chat ``channel_id`` (created on first use)."""
        ...

    async def history(self, channel_id: str, limit: int) -> list[Message]:
        """The last ``limit`` user and assistant messages with text of the chat's current
        session, oldest first (what a chat shows after a reload)."""
        ...

    async def run_command(self, channel_id: str, text: str) -> CommandReply | None:
        """Answer a chat command typed in ``channel_id`` (``/help``, ``/model``, ...);
        ``None`` when ``text`` is no command (it is then a message for the agent).

        Channels need not call it: a command submitted as an event is answered as an
        :class:`~openpista.models.Answer`; channels that show command replies apart (or
        reload a chat after ``/session``) call it instead."""
        ...

    def approval_pending(self, channel_id: str, request_id: str) -> bool:
        """Whether approval request ``request_id`` still waits for an answer in
        ``channel_id`` (buttons of resolved requests can be removed)."""
        ...

    def metrics(self, accept: str) -> tuple[bytes, str] | None:
        """The daemon's Prometheus metrics encoded as the ``Accept`` header ``accept`` asks
        (text or OpenMetrics): ``(body, content type)``; ``None`` when ``[metrics]`` is off.
        For a channel whose server also answers scrapes (``[metrics] mount``)."""
        ...


class ChannelAdapter(ABC):
    """A messenger bridge; subclass it and implement :meth:`start` and :meth:`send`.

    ``name`` is the ``[channels.<name>]`` the adapter serves; ``channel_prefix`` the prefix
    of every channel id it owns (``telegram:``): messages whose channel id starts with it
    come to this adapter. The other members have defaults.
    """

    name: str
    channel_prefix: str
    capabilities: Capabilities = Capabilities()
    replies_anywhere: bool = False
    """Whether any process serving this channel can answer a chat (HTTP APIs: Telegram,
    Slack, ...); ``False`` when answers go through the connection the message came in on
    (in cluster mode they are sent back to the replica holding it, docs/scale-out.md)."""
    media_dir: Path | None = None
    """Where this channel saves the files users send (their ``Attachment.path``). In cluster
    mode a message's files saved under it, up to :attr:`max_media_bytes` each, travel with
    the message to the replica that runs its turn (:mod:`openpista.cluster_media`); a
    message with other saved files waits for its session's lease where it arrived."""
    max_media_bytes: int = 20 * 1024 * 1024
    """The largest file of a user's this channel saves (and takes from another replica)."""
    on_close: Callable[[], object] | None = None
    """Called (once) by adapters whose user can end the conversation (the terminal) when
    they do; the daemon sets it when that is its only channel. It may return an awaitable."""

    @abstractmethod
    async def start(self, ctx: ChannelContext) -> None:
        """Begin serving: turn native messages into :class:`~openpista.models.ChannelEvent`
        objects for ``ctx.submit``; return once serving (raise if that fails: the gateway
        retries with backoff, except on :class:`~openpista.config.ConfigError`)."""

    @abstractmethod
    async def send(self, message: Outbound) -> None:
        """Deliver one message to the chat of ``message.channel_id``."""

    async def wait_closed(self) -> None:  # noqa: B027 (optional: a no-op default)
        """Return when the channel has closed on its own, raise when it failed (the gateway
        restarts it); the default returns at once (nothing to watch)."""

    async def stop(self) -> None:  # noqa: B027 (optional: a no-op default)
        """Release everything :meth:`start` opened; the default has nothing to release."""


ChannelFactory = Callable[[Any, "Settings"], ChannelAdapter]
"""Builds an adapter from its options and the whole configuration. The options are the
plugin's settings model of ``[channels.<name>]`` (registered with ``register_settings``),
validated once by core, env overrides applied; a channel without one gets the raw table
(a ``dict``)."""
