"""The gateway: adapters put events on one bounded queue; turns run; answers go back.

Every event is routed to its chat's session (:class:`ChannelRouter`); one turn runs at a
time per session and turns of different sessions run concurrently, up to
``[gateway] max_concurrent_turns``. When that many turns are in flight the dispatcher stops
taking events, the queue fills up and adapters wait in :meth:`Gateway.submit`: backpressure
instead of unbounded growth. In cluster mode a turn's slot is given back once its event is
stored in the cluster's inbox: the hand-over's own turn slots bound the turns that run, and a
replica with a free one may run it (docs/scale-out.md).

Each adapter is started with the gateway as its :class:`~openpista.channels.ChannelContext`
and is sent only the message kinds its capabilities accept. Chat commands (``/help``,
``/model``, ...) are answered here, the same way for every channel
(:mod:`openpista.gateway.commands`); ``/model`` switches the model of one session.

Adapters are supervised: one whose start fails, or whose ``wait_closed()`` raises, is logged
and restarted with exponential backoff while the others keep serving. One whose start raises
:class:`~openpista.config.ConfigError` is not retried (its configuration will not change):
it is reported once with ❌ and left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openpista.agent import AgentEvent, ToolFinished, ToolStarted
from openpista.channels import ChannelAdapter, ChatCommand, CommandReply, GatewayClosedError
from openpista.cluster import LEASE_LOST
from openpista.cluster_deliveries import dropped
from openpista.cluster_media import pack
from openpista.config import ConfigError
from openpista.gateway.commands import ChatCommands
from openpista.gateway.router import ChannelRouter, TurnTicket
from openpista.home import home_dir
from openpista.memory import SessionNotFoundError
from openpista.models import (
    ERROR_PREFIX,
    Answer,
    ApprovalPrompt,
    ChannelEvent,
    Message,
    Outbound,
    TextChunk,
    ToolProgress,
)
from openpista.observability.logs import bind_turn
from openpista.observability.metrics import channel_name
from openpista.outbox import screen as screen_attachments
from openpista.providers.base import TextDelta, warm_up

if TYPE_CHECKING:
    from openpista.agent import Agent, ToolGuard
    from openpista.cluster_approvals import ClusterApprovals
    from openpista.cluster_handover import Handover
    from openpista.gateway.approvals import ApprovalBroker
    from openpista.runtime import Runtime

__all__ = ["Gateway", "GatewayClosedError", "channel_problem"]

log = logging.getLogger(__name__)


STOPPING_NOTICE = (
    f"{ERROR_PREFIX}openpista is restarting or stopping and did not take this message; "
    "send it again in a moment."
)
LEASE_LOST_NOTICE = (
    f"{ERROR_PREFIX}this answer was cancelled: this openpista replica lost its database "
    "connection, and with it this chat's turn. Send your message again."
)
CANCELLED_NOTICE = (
    f"{ERROR_PREFIX}openpista is restarting or stopping: this answer was cancelled at the "
    "shutdown deadline ([gateway] shutdown_deadline = {deadline:g} s). Ask again in a moment."
)


def channel_problem(exc: BaseException) -> str:
    """One line about a channel that cannot be built or started: a configuration error's
    own message (it names the option), else the error's type and message."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {text}"


_PROMPTED_KEPT = 10_000
"""Approval ids asked here that :meth:`Gateway.approval_pending` remembers (cluster mode)."""

Choice = tuple[str | None, str | None]
"""``(provider, model)`` as asked for; ``None`` is the ``[agent]`` default."""


class Gateway:
    """Runs agent turns for events from any adapter and sends the answers back; it is the
    :class:`~openpista.channels.ChannelContext` of every adapter it serves."""

    def __init__(
        self,
        runtime: Runtime,
        adapters: Sequence[ChannelAdapter] = (),
        *,
        approvals: ApprovalBroker | None = None,
        agent: Agent | None = None,
    ) -> None:
        """``agent`` replaces the one built from ``[agent]`` (embedding, benchmarks)."""
        settings = runtime.settings.gateway
        self.runtime = runtime
        self.router = ChannelRouter(runtime.memory)
        self.approvals = approvals
        self.adapters: list[ChannelAdapter] = list(adapters)
        self.queue: asyncio.Queue[ChannelEvent] = asyncio.Queue(maxsize=settings.queue_size)
        self.commands = ChatCommands(self, _plugin_commands(runtime))
        self._slots = asyncio.Semaphore(settings.max_concurrent_turns)
        self._turns: dict[asyncio.Task[Answer], ChannelEvent] = {}
        self._stored: set[asyncio.Task[Answer]] = set()  # turns whose slot is given back
        self._unstarted: list[ChannelEvent] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._stopped = False
        self._warm = asyncio.Event()
        self._default: Choice = (None, None)
        self._agents: dict[Choice, Agent] = {} if agent is None else {self._default: agent}
        self._choices: dict[str, Choice] = {}  # sessions switched with /model
        self.recorder = runtime.recorder
        self.recorder.watch(self)
        self.handover: Handover | None = None
        """Cluster mode: turns are stored and run by the replica leasing the session."""
        self.approvals_elsewhere: ClusterApprovals | None = None
        """Cluster mode: approvals waiting on other replicas, answered from here."""
        self._prompted: OrderedDict[str, None] = OrderedDict()  # approval ids asked here

    # -- model ----------------------------------------------------------------------------

    @property
    def agent(self) -> Agent:
        """The agent answering sessions that did not switch (built on first use)."""
        return self._agent_of(self._default)

    def agent_for(self, session_id: str) -> Agent:
        """The agent answering ``session_id``: its ``/model`` choice, else the default."""
        return self._agent_of(self._choices.get(session_id, self._default))

    def _agent_of(self, choice: Choice) -> Agent:
        agent = self._agents.get(choice)
        if agent is None:
            agent = self._agents[choice] = self.runtime.agent(*choice)
        return agent

    def set_model(self, provider: str | None, model: str | None) -> None:
        """Answer sessions that did not switch with ``provider``/``model`` from now on
        (raises if it cannot be built)."""
        self._agents[(provider, model)] = self.runtime.agent(provider, model)
        self._default = (provider, model)

    def set_session_model(
        self, session_id: str, provider: str | None, model: str | None
    ) -> tuple[str, str]:
        """Answer ``session_id`` with ``provider``/``model`` from now on (raises if it
        cannot be built); returns the ``(provider, model)`` now answering it."""
        agent = self._agent_of((provider, model))
        self._choices[session_id] = (provider, model)
        return agent.provider.name, agent.provider.model

    def reload_model(self) -> None:
        """Build the agents again (after a login changed the keys)."""
        self._agents.clear()
        self.set_model(*self._default)

    @property
    def current_model(self) -> tuple[str, str]:
        """``(provider, model)`` of the default agent."""
        return self.agent.provider.name, self.agent.provider.model

    def model_of(self, session_id: str) -> tuple[str, str]:
        """``(provider, model)`` answering ``session_id``."""
        agent = self.agent_for(session_id)
        return agent.provider.name, agent.provider.model

    @property
    def turns_in_flight(self) -> int:
        """How many turns run now."""
        return len(self._turns)

    @property
    def approvals_pending(self) -> int:
        """How many tool calls wait for an approval."""
        return 0 if self.approvals is None else self.approvals.waiting

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every adapter under supervision, and the dispatcher.

        Returns once each adapter has made its first start attempt (a failed one is retried
        in the background); the provider then warms up in the background (see :attr:`ready`).
        """
        attempts = [asyncio.Event() for _ in self.adapters]
        for adapter, attempted in zip(self.adapters, attempts, strict=True):
            self._tasks.append(asyncio.create_task(self._supervise(adapter, attempted)))
        self._tasks.append(asyncio.create_task(self._dispatch()))
        await asyncio.gather(*(attempted.wait() for attempted in attempts))
        self._tasks.append(asyncio.create_task(self._warm_up()))

    @property
    def ready(self) -> bool:
        """Whether the next message is answered without a start-up wait: the gateway has
        started, its provider has paid its start-up cost, and it is not stopping."""
        return self._warm.is_set() and not self._closing

    async def wait_ready(self) -> None:
        """Return once the provider has warmed up (see :attr:`ready`)."""
        await self._warm.wait()

    async def _warm_up(self) -> None:
        # Importing the provider's client library takes seconds (litellm): pay it now, in the
        # background, rather than in the first user's turn.
        try:
            await warm_up(self.agent.provider)
        except Exception as exc:  # no provider, or a broken one: the first turn says why
            log.warning("the provider could not warm up: %s", exc)
        finally:
            self._warm.set()

    async def stop(self, deadline: float | None = None, *, drain: bool = False) -> None:
        """Stop accepting, let in-flight turns finish within ``deadline`` seconds (default
        ``[gateway] shutdown_deadline``; with ``drain``, however long they take, and what
        was queued runs too), then cancel what is left, and stop the adapters.

        Until the adapters stop, every message that arrives (or waited in the queue) is
        answered with :data:`STOPPING_NOTICE`, and each turn cancelled at the deadline
        tells its chat so (:data:`CANCELLED_NOTICE`): nothing is dropped in silence.
        """
        while drain and not self.queue.empty():  # noqa: ASYNC110 (no "taken" event)
            await asyncio.sleep(0.01)  # what was queued (a piped terminal's last lines) runs
        self.stop_accepting()
        if deadline is None and not drain:
            deadline = self.runtime.settings.gateway.shutdown_deadline
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        refuser = asyncio.create_task(self._refuse_while_stopping())
        if self.approvals is not None:
            # Turns waiting for an answer end now, denied and recorded, not cancelled.
            await self.approvals.close()
        if self.handover is not None:
            await self.handover.close(deadline)  # unfinished turns stay stored for others
        if self._turns:
            _, unfinished = await asyncio.wait(set(self._turns), timeout=deadline)
            cancelled = [self._turns[turn] for turn in unfinished]
            for turn in unfinished:
                turn.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
            notice = CANCELLED_NOTICE.format(deadline=deadline or 0)
            for event in cancelled:
                await self._notify(event, notice)
        refuser.cancel()
        await asyncio.gather(refuser, return_exceptions=True)
        await self._refuse_queued()
        self._stopped = True
        for adapter in self.adapters:
            try:
                await adapter.stop()
            except Exception:
                log.exception("channel %s failed to stop", adapter.name)

    def stop_accepting(self) -> None:
        """Start no more turns: what arrives from now on is answered by :meth:`stop` with
        :data:`STOPPING_NOTICE` (the daemon calls this as soon as a signal arrives)."""
        self._closing = True

    # -- events ---------------------------------------------------------------------------

    async def submit(self, event: ChannelEvent) -> None:
        """Queue an event for the agent; waits while the queue is full. While the gateway
        stops, the event's chat is told so (:data:`STOPPING_NOTICE`); once it has stopped,
        :class:`GatewayClosedError` is raised.

        In cluster mode a message of a channel that answers from any replica (Telegram,
        WhatsApp, Slack, Discord) is stored in the cluster's inbox before this returns, so
        what its channel acknowledges survives this replica; the store's error is raised
        when it cannot be stored (the channel then has the messenger deliver it again)."""
        if self._stopped:
            raise GatewayClosedError("openpista is shutting down")
        stored = self._stored_on_submit(event)
        if stored is not None:
            await self._traced(event, stored)
            return
        await self.queue.put(event)

    def _stored_on_submit(self, event: ChannelEvent) -> dict[str, Any] | None:
        """The event as the inbox stores it, when :meth:`submit` stores it itself: cluster
        mode, an HTTP channel's message that is no chat command and whose files travel."""
        if self.handover is None or self._closing:
            return None
        adapter = self.adapter_for(event.channel_id)
        if adapter is None or not adapter.replies_anywhere or self.commands.is_command(event):
            return None
        return pack(event, *self.media_for(adapter))

    async def session_for(self, channel_id: str) -> str:
        """The session of the chat ``channel_id`` (created on first use)."""
        return await self.router.session_for(channel_id)

    async def history(self, channel_id: str, limit: int) -> list[Message]:
        """The last ``limit`` user and assistant messages with text of the chat's session."""
        session_id = await self.router.session_for(channel_id)
        try:
            stored = await self.runtime.memory.load_messages(session_id)
        except SessionNotFoundError:  # bound, but nothing said yet
            return []
        shown = [m for m in stored if m.role in ("user", "assistant") and m.content.strip()]
        return shown[-limit:] if limit > 0 else []

    async def run_command(self, channel_id: str, text: str) -> CommandReply | None:
        """Answer the chat command ``text`` of ``channel_id``; ``None`` if it is none."""
        try:
            self.commands.find(text)
        except KeyError:
            return None
        session_id = await self.router.session_for(channel_id)
        return await self.commands.run(channel_id, session_id, text)

    def approval_pending(self, channel_id: str, request_id: str) -> bool:
        """Whether approval request ``request_id`` still waits for an answer there (in
        cluster mode, one not asked here may: it is answered on its replica)."""
        if self.approvals is None:
            return False
        if self.approvals.is_pending(channel_id, request_id):
            return True
        return self.approvals_elsewhere is not None and request_id.lower() not in self._prompted

    def metrics(self, accept: str) -> tuple[bytes, str] | None:
        """The recorder's metrics as ``accept`` asks (``None``: metrics off)."""
        return self.recorder.exposition(accept)

    async def _dispatch(self) -> None:
        while True:
            event = await self.queue.get()
            if self._closing:
                self._unstarted.append(event)  # stopping: :meth:`stop` answers it
                continue
            try:
                await self._slots.acquire()
            except asyncio.CancelledError:
                self._unstarted.append(event)  # stopping: :meth:`stop` answers it
                raise
            turn = asyncio.create_task(self._guarded(event))
            self._turns[turn] = event
            turn.add_done_callback(self._turn_done)

    def _turn_done(self, turn: asyncio.Task[Answer]) -> None:
        del self._turns[turn]
        if turn in self._stored:
            self._stored.discard(turn)
        else:
            self._slots.release()

    def _handed_over(self) -> None:
        """Cluster mode: the current turn's event is stored in the inbox; the dispatcher's
        slot goes back (the turn waits for its answer, which any replica may give)."""
        turn = asyncio.current_task()
        if turn in self._turns and turn not in self._stored:
            self._stored.add(turn)
            self._slots.release()

    async def _refuse_while_stopping(self) -> None:
        await self._refuse_queued()
        while True:
            await self._notify(await self.queue.get(), STOPPING_NOTICE)

    async def _refuse_queued(self) -> None:
        while self._unstarted:
            await self._notify(self._unstarted.pop(0), STOPPING_NOTICE)
        while not self.queue.empty():
            await self._notify(self.queue.get_nowait(), STOPPING_NOTICE)

    async def _notify(self, event: ChannelEvent, text: str) -> None:
        await self.deliver(
            Answer.error(text, channel_id=event.channel_id, request_id=_request_id(event))
        )

    async def _guarded(self, event: ChannelEvent) -> Answer:
        try:
            return await self.handle(event)
        except Exception as exc:  # the daemon outlives any one turn
            log.exception("turn for %s failed", event.channel_id)
            self.recorder.error("turn")
            response = Answer.error(
                f"internal error: {type(exc).__name__}: {exc}", channel_id=event.channel_id
            )
            await self.deliver(response)
            return response

    async def handle(self, event: ChannelEvent) -> Answer:
        """Run one turn for ``event`` now; chunks, progress and the answer go to its adapter.

        A chat's turns run in the order :meth:`handle` was called for them. A chat command
        (``/help``, ``/approve``, ...) is answered at once instead, outside the session's
        turn order (an approval is answered while its turn waits).
        """
        return await self._traced(event, None)

    async def _traced(self, event: ChannelEvent, stored: dict[str, Any] | None) -> Answer:
        """:meth:`handle`, with the event as stored when the caller packed it already."""
        ticket = self.router.ticket(event.channel_id)  # before any await: arrival order
        described = {"openpista.channel": channel_name(event.channel_id)}
        try:
            with self.recorder.tracing.span("openpista.turn", described):
                return await self._handle(event, ticket, stored)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if LEASE_LOST not in exc.args or task is None or task.cancelling() > 1:
                raise
            task.uncancel()  # the cluster stopped this turn, not its caller: say so
            answer = Answer.error(
                LEASE_LOST_NOTICE, channel_id=event.channel_id, request_id=_request_id(event)
            )
            await self.deliver(answer)
            return answer
        finally:
            ticket.pass_on()

    async def _handle(
        self, event: ChannelEvent, ticket: TurnTicket, stored: dict[str, Any] | None
    ) -> Answer:
        began = time.monotonic()
        request_id = _request_id(event)
        session_id = event.session_id or await self.router.session_for(event.channel_id)
        bind_turn(session_id, event.channel_id, request_id)
        adapter = self.adapter_for(event.channel_id)
        if stored is None and self.handover is not None:
            stored = pack(event, *self.media_for(adapter))
        # An event the inbox does not store (whose insert records its delivery id): apart.
        apart = self.handover is not None and (stored is None or self.commands.is_command(event))
        if apart and self.handover is not None and not await self.handover.deliveries.first(event):
            dropped(event)
            return Answer(channel_id=event.channel_id, session_id=session_id)
        if not event.attachments:
            reply = await self.commands.run(event.channel_id, session_id, event.text)
            if reply is not None:
                answer = Answer(
                    channel_id=event.channel_id,
                    text=reply.text,
                    is_error=reply.is_error,
                    request_id=request_id,
                )
                await self.deliver(answer)
                return answer
        if self.handover is not None and stored is not None:
            # Cluster mode: stored (with the files saved here), then run by the replica
            # leasing the session (a file that cannot travel waits for the lease here).
            here = adapter is None or not adapter.replies_anywhere
            return await self.handover.hand(
                event, stored, session_id, ticket, here, stored_here=self._handed_over
            )
        async with self.router.lock(session_id, ticket):
            return await self.run_turn(event, session_id, began=began)

    async def run_turn(
        self,
        event: ChannelEvent,
        session_id: str,
        send: Callable[[Outbound], Awaitable[None]] | None = None,
        stream: Callable[[Outbound], Awaitable[None]] | None = None,
        *,
        began: float | None = None,
        resume: bool = False,
    ) -> Answer:
        """Run the turn of ``event`` in ``session_id`` now (the caller holds the session's
        turn lock or lease) and send its answer and approval prompts with ``send``, its
        text chunks and tool progress with ``stream`` (by default both to the channel's
        adapter here, through :meth:`deliver`); returns the answer. With ``resume``, the
        turn was cut short on another replica: it continues (``Agent.run_turn``)."""
        began = time.monotonic() if began is None else began
        request_id = _request_id(event)
        adapter = self.adapter_for(event.channel_id)
        if send is None:
            send = self.deliver
            stream = None if adapter is None else partial(self._send, adapter)
        streams = adapter is None or adapter.capabilities.streaming
        on_event = self._forwarder(
            event.channel_id, session_id, stream if streams else None, request_id
        )
        guard = self._guard(session_id, event.channel_id, request_id, send)
        try:
            agent = self.agent_for(session_id)
        except Exception as exc:  # no provider configured, unknown preset, ...
            response = Answer.error(str(exc))
        else:
            response = await agent.run_turn(
                session_id,
                event.text,
                on_event,
                guard,
                attachments=event.attachments,
                channel_id=event.channel_id,
                sender=event.sender,
                resume=resume,
            )
        response = response.model_copy(
            update={
                "channel_id": event.channel_id,
                "session_id": session_id,
                "request_id": request_id,
            }
        )
        await send(response)
        outcome = "error" if response.is_error else "ok"
        seconds = time.monotonic() - began
        self.recorder.turn(channel_name(event.channel_id), session_id, seconds, outcome)
        return response

    def _guard(
        self,
        session_id: str,
        channel_id: str,
        request_id: str | None,
        send: Callable[[Outbound], Awaitable[None]],
    ) -> ToolGuard | None:
        if self.approvals is None:
            return None

        async def deliver(prompt: ApprovalPrompt) -> None:
            self._prompted[prompt.request.id] = None
            while len(self._prompted) > _PROMPTED_KEPT:
                self._prompted.popitem(last=False)
            await send(prompt.model_copy(update={"request_id": request_id}))

        tools = self.runtime.toolbox.tools
        return self.approvals.guard(session_id, channel_id, deliver, tools.approval_warnings)

    def _forwarder(
        self,
        channel_id: str,
        session_id: str,
        stream: Callable[[Outbound], Awaitable[None]] | None,
        request_id: str | None,
    ) -> Callable[[AgentEvent], Awaitable[None]] | None:
        if stream is None:
            return None

        async def forward(event: AgentEvent) -> None:
            base: dict[str, Any] = {
                "channel_id": channel_id,
                "session_id": session_id,
                "request_id": request_id,
            }
            progress: Outbound
            if isinstance(event, TextDelta):
                progress = TextChunk(**base, text=event.text)
            elif isinstance(event, ToolStarted):
                progress = ToolProgress(**base, call=event.call)
            elif isinstance(event, ToolFinished):
                progress = ToolProgress(**base, call=event.call, result=event.result)
            await stream(progress)

        return forward

    # -- adapters -------------------------------------------------------------------------

    @staticmethod
    def media_for(adapter: ChannelAdapter | None) -> tuple[Path | None, int]:
        """Where ``adapter``'s channel saves users' files here, and its largest file."""
        if adapter is None:
            return None, ChannelAdapter.max_media_bytes
        return adapter.media_dir, adapter.max_media_bytes

    def handed_over_media(self, channel_id: str) -> tuple[Path, int]:
        """Where files handed over for ``channel_id`` are written here (the channel's media
        directory, else ``media`` in openpista's home), and the largest one taken."""
        directory, limit = self.media_for(self.adapter_for(channel_id))
        return directory or home_dir() / "media", limit

    def adapter_for(self, channel_id: str) -> ChannelAdapter | None:
        """The adapter owning ``channel_id`` (longest matching prefix), if any."""
        owners = [a for a in self.adapters if channel_id.startswith(a.channel_prefix)]
        return max(owners, key=lambda a: len(a.channel_prefix), default=None)

    async def deliver(self, message: Outbound) -> None:
        """Send ``message`` to the adapter owning its channel id (logged if none does)."""
        adapter = self.adapter_for(message.channel_id)
        if adapter is None:
            log.warning("no enabled channel owns %r; answer dropped", message.channel_id)
            return
        await self._send(adapter, message)

    async def _send(self, adapter: ChannelAdapter, message: Outbound) -> None:
        """The one way to an adapter: only the kinds it accepts, only attachments a channel
        may send, files named in the text for a channel that sends none, and an answer
        longer than the channel holds as several (``capabilities.split``); once a part
        fails, the rest is not sent."""
        capabilities = adapter.capabilities
        if not capabilities.accepts(message):
            return
        message = screen_attachments(message)
        if isinstance(message, Answer) and message.attachments and not capabilities.files:
            named = [message.text, *(a.describe() for a in message.attachments)]
            message = message.model_copy(
                update={"text": "\n".join(part for part in named if part), "attachments": []}
            )
        for part in capabilities.split(message):
            try:
                if isinstance(part, TextChunk):  # a span per streamed chunk would drown the trace
                    await adapter.send(part)
                else:
                    described = {"openpista.channel": adapter.name, "openpista.kind": part.kind}
                    with self.recorder.tracing.span(f"send {part.kind}", described):
                        await adapter.send(part)
            except Exception:  # a broken channel must not break the turn
                log.exception("channel %s failed to send", adapter.name)
                self.recorder.error("send")
                return

    async def _supervise(self, adapter: ChannelAdapter, attempted: asyncio.Event) -> None:
        from tenacity import (
            AsyncRetrying,
            retry_if_exception_type,
            retry_if_not_exception_type,
            wait_exponential,
        )

        def report(state: Any) -> None:
            delay = state.next_action.sleep if state.next_action else 0.0
            self.recorder.channel_up(adapter.name, False)
            self.recorder.channel_restart(adapter.name)
            log.error(
                "channel %s failed (%s); restarting in %.1f s",
                adapter.name,
                state.outcome.exception() if state.outcome else "?",
                delay,
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Exception) & retry_if_not_exception_type(ConfigError),
            wait=wait_exponential(
                multiplier=0.5, max=self.runtime.settings.gateway.restart_max_delay
            ),
            before_sleep=report,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._serve(adapter, attempted)
        except ConfigError as exc:
            log.error("❌ channel %s is not served: %s", adapter.name, channel_problem(exc))
            self.adapters.remove(adapter)

    async def _serve(self, adapter: ChannelAdapter, attempted: asyncio.Event) -> None:
        """Start ``adapter`` and wait until it closes; on failure stop it and re-raise."""
        try:
            try:
                await adapter.start(self)
            finally:
                attempted.set()
            self.recorder.channel_up(adapter.name, True)
            await adapter.wait_closed()  # returns when it closed on its own (end of input)
        except Exception:
            with contextlib.suppress(Exception):
                await adapter.stop()
            raise


def _plugin_commands(runtime: Runtime) -> list[tuple[str, ChatCommand]]:
    """The chat commands plugins register (``register_chat_commands``)."""
    return runtime.host.collect(
        "register_chat_commands", lambda command: f"/{command.name}", runtime.context
    )


def _request_id(event: ChannelEvent) -> str | None:
    """The id the channel gave the message (its answers carry it back), if any."""
    request_id = event.metadata.get("request_id")
    return request_id if isinstance(request_id, str) else None
