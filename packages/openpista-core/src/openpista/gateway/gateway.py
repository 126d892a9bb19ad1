"""The gateway: adapters put events on one bounded queue; turns run; answers go back.

Every event is routed to its chat's session (:class:`ChannelRouter`); one turn runs at a
time per session and turns of different sessions run concurrently, up to
``[gateway] max_concurrent_turns``. When that many turns are in flight the dispatcher stops
taking events, the queue fills up and adapters wait in :meth:`Gateway.submit`: backpressure
instead of unbounded growth.

Adapters are supervised: one whose start fails, or whose ``wait_closed()`` raises, is logged
and restarted with exponential backoff while the others keep serving. One whose start raises
:class:`~openpista.config.ConfigError` is not retried (its configuration will not change):
it is reported once with ❌ and left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from openpista.agent import ERROR_PREFIX, AgentEvent, ToolFinished, ToolStarted
from openpista.config import ConfigError
from openpista.gateway.router import ChannelRouter
from openpista.models import AgentResponse, ChannelEvent
from openpista.outbox import screen as screen_attachments
from openpista.providers.base import TextDelta, warm_up

if TYPE_CHECKING:
    from openpista.agent import Agent, ToolGuard
    from openpista.channels import ChannelAdapter
    from openpista.gateway.approvals import ApprovalBroker
    from openpista.runtime import Runtime

log = logging.getLogger(__name__)


STOPPING_NOTICE = (
    f"{ERROR_PREFIX}openpista is restarting or stopping and did not take this message; "
    "send it again in a moment."
)
CANCELLED_NOTICE = (
    f"{ERROR_PREFIX}openpista is restarting or stopping: this answer was cancelled at the "
    "shutdown deadline ([gateway] shutdown_deadline = {deadline:g} s). Ask again in a moment."
)


class GatewayClosedError(RuntimeError):
    """Raised by :meth:`Gateway.submit` once the gateway is shutting down."""


def channel_problem(exc: BaseException) -> str:
    """One line about a channel that cannot be built or started: a configuration error's
    own message (it names the option), else the error's type and message."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {text}"


class Gateway:
    """Runs agent turns for events from any adapter and sends the answers back."""

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
        for adapter in self.adapters:
            # Adapters that need the gateway (history, /model, notices to other channels)
            # declare a ``gateway`` attribute; the gateway serving them fills it in.
            if hasattr(adapter, "gateway") and getattr(adapter, "gateway", None) is None:
                adapter.gateway = self
        self.queue: asyncio.Queue[ChannelEvent] = asyncio.Queue(maxsize=settings.queue_size)
        self._slots = asyncio.Semaphore(settings.max_concurrent_turns)
        self._turns: dict[asyncio.Task[AgentResponse], ChannelEvent] = {}
        self._unstarted: list[ChannelEvent] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._warm = asyncio.Event()
        self._provider: str | None = None
        self._model: str | None = None
        self._agent: Agent | None = agent

    # -- model ----------------------------------------------------------------------------

    @property
    def agent(self) -> Agent:
        """The agent answering turns (built on first use from ``[agent]``)."""
        if self._agent is None:
            self._agent = self.runtime.agent(self._provider, self._model)
        return self._agent

    def set_model(self, provider: str | None, model: str | None) -> None:
        """Answer from now on with ``provider``/``model`` (raises if it cannot be built)."""
        self._agent = self.runtime.agent(provider, model)
        self._provider, self._model = provider, model

    def reload_model(self) -> None:
        """Build the agent again with the current choice (after a login changed the keys)."""
        self.set_model(self._provider, self._model)

    @property
    def current_model(self) -> tuple[str, str]:
        """``(provider, model)`` of the agent."""
        return self.agent.provider.name, self.agent.provider.model

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
        ``[gateway] shutdown_deadline``; with ``drain``, however long they take), then
        cancel what is left, and stop the adapters.

        Until the adapters stop, every message that arrives (or waited in the queue) is
        answered with :data:`STOPPING_NOTICE`, and each turn cancelled at the deadline
        tells its chat so (:data:`CANCELLED_NOTICE`): nothing is dropped in silence.
        """
        self._closing = True
        if deadline is None and not drain:
            deadline = self.runtime.settings.gateway.shutdown_deadline
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        refuser = asyncio.create_task(self._refuse_while_stopping())
        if self.approvals is not None:
            # Turns waiting for an answer end now, denied and recorded, not cancelled.
            await self.approvals.close()
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
        for adapter in self.adapters:
            try:
                await adapter.stop()
            except Exception:
                log.exception("channel %s failed to stop", adapter.name)

    # -- events ---------------------------------------------------------------------------

    async def submit(self, event: ChannelEvent) -> None:
        """Queue an event for the agent; waits while the queue is full."""
        if self._closing:
            raise GatewayClosedError("openpista is shutting down")
        await self.queue.put(event)

    async def _dispatch(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self._slots.acquire()
            except asyncio.CancelledError:
                self._unstarted.append(event)  # stopping: :meth:`stop` answers it
                raise
            turn = asyncio.create_task(self._guarded(event))
            self._turns[turn] = event
            turn.add_done_callback(self._turn_done)

    def _turn_done(self, turn: asyncio.Task[AgentResponse]) -> None:
        del self._turns[turn]
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
            AgentResponse(
                channel_id=event.channel_id,
                text=text,
                is_error=True,
                request_id=_request_id(event),
            )
        )

    async def _guarded(self, event: ChannelEvent) -> AgentResponse:
        try:
            return await self.handle(event)
        except Exception as exc:  # the daemon outlives any one turn
            log.exception("turn for %s failed", event.channel_id)
            response = AgentResponse(
                channel_id=event.channel_id,
                text=f"{ERROR_PREFIX}internal error: {type(exc).__name__}: {exc}",
                is_error=True,
            )
            await self.deliver(response)
            return response

    async def handle(self, event: ChannelEvent) -> AgentResponse:
        """Run one turn for ``event`` now; deltas, progress and the answer go to its adapter.

        ``/approve`` and ``/deny`` answers are given to the approval broker instead.
        """
        request_id = _request_id(event)
        if self.approvals is not None:
            confirmation = self.approvals.answer(event.channel_id, event.text)
            if confirmation is not None:
                reply = AgentResponse(
                    channel_id=event.channel_id, text=confirmation, request_id=request_id
                )
                await self.deliver(reply)
                return reply
        session_id = event.session_id or await self.router.session_for(event.channel_id)
        adapter = self.adapter_for(event.channel_id)
        on_event = self._forwarder(event.channel_id, session_id, adapter, request_id)
        guard = self._guard(session_id, event.channel_id, request_id)
        async with self.router.lock(session_id):
            try:
                agent = self.agent
            except Exception as exc:  # no provider configured, unknown preset, ...
                response = AgentResponse(text=f"{ERROR_PREFIX}{exc}", is_error=True)
            else:
                response = await agent.run_turn(
                    session_id,
                    event.text,
                    on_event,
                    guard,
                    attachments=event.attachments,
                    channel_id=event.channel_id,
                )
        response = response.model_copy(
            update={
                "channel_id": event.channel_id,
                "session_id": session_id,
                "request_id": request_id,
            }
        )
        await self.deliver(response)
        return response

    def _guard(self, session_id: str, channel_id: str, request_id: str | None) -> ToolGuard | None:
        if self.approvals is None:
            return None

        async def deliver(response: AgentResponse) -> None:
            await self.deliver(response.model_copy(update={"request_id": request_id}))

        tools = self.runtime.toolbox.tools
        return self.approvals.guard(session_id, channel_id, deliver, tools.approval_warnings)

    def _forwarder(
        self,
        channel_id: str,
        session_id: str,
        adapter: ChannelAdapter | None,
        request_id: str | None,
    ) -> Callable[[AgentEvent], Awaitable[None]] | None:
        if adapter is None or not adapter.supports_streaming:
            return None

        async def forward(event: AgentEvent) -> None:
            base: dict[str, Any] = {
                "channel_id": channel_id,
                "session_id": session_id,
                "request_id": request_id,
            }
            if isinstance(event, TextDelta):
                progress = AgentResponse(**base, delta=True, text=event.text)
            elif isinstance(event, ToolStarted):
                progress = AgentResponse(**base, delta=True, tool_call=event.call)
            elif isinstance(event, ToolFinished):
                progress = AgentResponse(**base, delta=True, tool_result=event.result)
            await self._send(adapter, progress)

        return forward

    # -- adapters -------------------------------------------------------------------------

    def adapter_for(self, channel_id: str) -> ChannelAdapter | None:
        """The adapter owning ``channel_id`` (longest matching prefix), if any."""
        owners = [a for a in self.adapters if channel_id.startswith(a.channel_prefix)]
        return max(owners, key=lambda a: len(a.channel_prefix), default=None)

    async def deliver(self, response: AgentResponse) -> None:
        """Send ``response`` to the adapter owning its channel id (logged if none does)."""
        adapter = self.adapter_for(response.channel_id)
        if adapter is None:
            log.warning("no enabled channel owns %r; answer dropped", response.channel_id)
            return
        await self._send(adapter, response)

    async def _send(self, adapter: ChannelAdapter, response: AgentResponse) -> None:
        try:
            # The one way to an adapter: only attachments a channel may send get through.
            await adapter.send(screen_attachments(response))
        except Exception:  # a broken channel must not break the turn
            log.exception("channel %s failed to send", adapter.name)

    async def _supervise(self, adapter: ChannelAdapter, attempted: asyncio.Event) -> None:
        from tenacity import (
            AsyncRetrying,
            retry_if_exception_type,
            retry_if_not_exception_type,
            wait_exponential,
        )

        def report(state: Any) -> None:
            delay = state.next_action.sleep if state.next_action else 0.0
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
                await adapter.start(self.queue)
            finally:
                attempted.set()
            wait_closed = getattr(adapter, "wait_closed", None)
            if wait_closed is not None:
                await wait_closed()  # returns when it closed on its own (end of input)
        except Exception:
            with contextlib.suppress(Exception):
                await adapter.stop()
            raise


def _request_id(event: ChannelEvent) -> str | None:
    """The id the channel gave the message (its answers carry it back), if any."""
    request_id = event.metadata.get("request_id")
    return request_id if isinstance(request_id, str) else None
