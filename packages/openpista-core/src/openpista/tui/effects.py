"""Running the TUI's effects against the runtime and the gateway; outcomes become actions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from openpista.models import Answer, ChannelEvent
from openpista.observability.report import today_spend
from openpista.tui.adapter import CHANNEL_ID
from openpista.tui.login import login_in_terminal
from openpista.tui.state import (
    WORKER_TIME,
    Action,
    CancelTurns,
    CommandAnswered,
    Effect,
    Exit,
    Failed,
    HomeLoaded,
    LoadHome,
    LoadWorkers,
    Login,
    ModelChanged,
    ModelInfo,
    OpenSession,
    ResponseReceived,
    RunCommand,
    SendMessage,
    SessionOpened,
    SessionRow,
    TurnsCancelled,
    WorkerEventReceived,
    WorkerRow,
    WorkersLoaded,
)

if TYPE_CHECKING:
    from openpista.gateway.gateway import Gateway
    from openpista.memory import WorkerLog
    from openpista.runtime import Runtime

SESSIONS_SHOWN = 20
WORKERS_SHOWN = 30


def model_info(runtime: Runtime, gateway: Gateway, session_id: str | None = None) -> ModelInfo:
    """The model answering ``session_id`` (its ``/model`` choice, else the default) and its
    key status; works when no key is configured yet."""
    from openpista.auth.status import key_summary, stored_logins
    from openpista.config import ConfigError

    settings, registry = runtime.settings, runtime.providers
    try:
        provider, model = gateway.model_of(session_id) if session_id else gateway.current_model
    except Exception:  # no key yet: show what would answer, /login explains the fix
        provider, model = settings.agent.provider, settings.agent.model or ""
    try:
        preset = registry.get(provider)
    except ConfigError:
        return ModelInfo(provider, model, "unknown provider", (), tuple(registry.names()))
    model = model or settings.provider_settings(preset.name).model or preset.default_model
    return ModelInfo(
        provider=preset.name,
        model=model,
        key_status=key_summary(preset, settings, stored_logins()),
        key_env=preset.api_key_env,
        providers=tuple(registry.names()),
    )


async def worker_rows(log: WorkerLog) -> tuple[WorkerRow, ...]:
    """The newest worker tasks of ``log`` with their log lines, as the dashboard lists them
    (also the daemon's answer to a ``workers`` request on its control socket)."""
    rows = []
    for listed in await log.tasks(limit=WORKERS_SHOWN):
        task = await log.task(listed.task_id, reports=True) or listed
        rows.append(
            WorkerRow(
                task_id=task.task_id,
                status=task.status,
                created=task.created_at.astimezone().strftime(WORKER_TIME),
                duration=task.duration,
                exit_code=task.exit_code,
                channel_id=task.channel_id,
                percent=task.percent,
                logs=tuple(line for r in task.reports for line in r.body.get("log", [])),
            )
        )
    return tuple(rows)


class EffectRunner:
    """Runs one effect at a time on request; each outcome is handed to ``dispatch``."""

    def __init__(
        self,
        runtime: Runtime,
        gateway: Gateway,
        dispatch: Callable[[Action], None],
        sender: str,
        exit_app: Callable[[], None],
    ) -> None:
        self.runtime = runtime
        self.gateway = gateway
        self.dispatch = dispatch
        self.sender = sender
        self.exit_app = exit_app
        self._bound: str | None = None  # the session the gateway's router has for the TUI
        self._turns: set[asyncio.Task[Any]] = set()
        self.worker_log: WorkerLog | None = None
        """Where the dashboard reads worker tasks (set by :func:`~openpista.tui.app.run_tui`)."""
        self._following: asyncio.Task[None] | None = None

    async def run(self, effect: Effect) -> None:
        """Run ``effect``; a failure becomes a :class:`Failed` action, never a crash."""
        try:
            outcome = await self._run(effect)
        except Exception as exc:
            outcome = Failed(str(exc) or type(exc).__name__)
        if outcome is not None:
            self.dispatch(outcome)

    async def _run(self, effect: Effect) -> Action | None:
        if isinstance(effect, LoadHome):
            return await self.load_home()
        if isinstance(effect, OpenSession):
            return await self.open_session(effect.session_id)
        if isinstance(effect, SendMessage):
            self.send(effect)
            return None
        if isinstance(effect, CancelTurns):
            for turn in list(self._turns):
                turn.cancel()
            return TurnsCancelled()
        if isinstance(effect, RunCommand):
            return await self.run_command(effect.session_id, effect.text)
        if isinstance(effect, Login):
            return await self.login(effect.provider)
        if isinstance(effect, LoadWorkers):
            return await self.load_workers()
        if isinstance(effect, Exit):
            self.exit_app()
            return None
        raise TypeError(f"unknown effect {effect!r}")

    def send(self, effect: SendMessage) -> None:
        """Start the turn of ``effect`` (it runs after the chat's earlier ones) and stream
        it to the TUI's channel; :class:`CancelTurns` cancels it."""
        event = ChannelEvent(
            channel_id=CHANNEL_ID,
            session_id=effect.session_id,
            sender=self.sender,
            text=effect.text,
        )
        turn = asyncio.get_running_loop().create_task(self._turn(event))
        self._turns.add(turn)
        turn.add_done_callback(self._turns.discard)

    async def _turn(self, event: ChannelEvent) -> None:
        try:
            await self.gateway.handle(event)
        except Exception as exc:  # the turn's own failure ends it like an error answer
            text = f"internal error: {type(exc).__name__}: {exc}"
            answer = Answer.error(text, session_id=event.session_id or "")
            self.dispatch(ResponseReceived(answer))

    async def finish(self, deadline: float) -> None:
        """Let the running turns end within ``deadline`` seconds (the user is leaving),
        then cancel them."""
        if self._turns:
            await asyncio.wait(self._turns, timeout=deadline)
        for turn in list(self._turns):
            turn.cancel()
        await asyncio.gather(*self._turns, return_exceptions=True)

    async def run_command(self, session_id: str, text: str) -> Action:
        """Have the gateway answer the chat command ``text`` of ``session_id``'s chat, as
        for every channel; a command that moved the chat (``/session ID``, ``/clear``)
        opens the session it moved to."""
        if self._bound != session_id:
            # The gateway answers a chat's commands for the session bound to its channel.
            await self.gateway.router.bind(CHANNEL_ID, session_id)
            self._bound = session_id
        reply = await self.gateway.run_command(CHANNEL_ID, text)
        if reply is None:
            return Failed(f"{text.split()[0]} is no chat command")
        if reply.session_id is not None and reply.session_id != session_id:
            self._bound = reply.session_id
            return await self.open_session(reply.session_id, notice=reply.text)
        name = text.split()[0][1:].lower()
        model = model_info(self.runtime, self.gateway, session_id)
        return CommandAnswered(name, reply.text, reply.is_error, model)

    async def login(self, provider: str | None) -> Action:
        """Run ``openpista auth login`` on the terminal while the TUI steps aside, then
        rebuild the agent so that the next message uses the new key."""
        code = await login_in_terminal(self.runtime.settings.source_path, provider)
        if code != 0:
            return Failed(f"login did not complete (exit status {code}); try /login again")
        self.gateway.reload_model()
        return ModelChanged(model_info(self.runtime, self.gateway))

    async def load_home(self) -> HomeLoaded:
        """The recent sessions and the model."""
        found = await self.runtime.memory.list_sessions(limit=SESSIONS_SHOWN)
        rows = tuple(
            SessionRow(
                id=s.id,
                title=s.title,
                updated=s.updated_at.astimezone().strftime("%Y-%m-%d %H:%M"),
                messages=s.message_count,
            )
            for s in found
        )
        spend = await today_spend(self.runtime)
        return HomeLoaded(rows, model_info(self.runtime, self.gateway), spend)

    async def load_workers(self) -> Action:
        """The newest worker tasks with their log lines, for the dashboard; from then on
        each event of this process's worker feed is dispatched as it happens."""
        if self.worker_log is None:
            return Failed("the worker history is not available here")
        if self._following is None:  # subscribed before the read: no event falls between
            from openpista.worker_service import worker_feed

            queue = worker_feed().subscribe()
            self._following = asyncio.get_running_loop().create_task(self._follow(queue))
        return WorkersLoaded(await worker_rows(self.worker_log))

    async def close(self) -> None:
        """Stop following the worker feed."""
        following, self._following = self._following, None
        if following is not None:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)

    async def _follow(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        from openpista.worker_service import worker_feed

        try:
            while True:
                self.dispatch(WorkerEventReceived(await queue.get()))
        finally:
            worker_feed().unsubscribe(queue)

    async def open_session(self, session_id: str | None, notice: str = "") -> SessionOpened:
        """Open ``session_id`` (a new id when ``None``) and load its stored messages.

        Nothing is written: every event names its session, and the agent creates the
        session with the first message, so a chat left empty leaves no trace (a chat
        command binds the TUI's channel to it, which stores it).
        """
        memory = self.runtime.memory
        session_id = session_id or uuid.uuid4().hex
        found = await memory.get_session(session_id)
        messages = tuple(await memory.load_messages(session_id)) if found is not None else ()
        model = model_info(self.runtime, self.gateway, session_id)
        return SessionOpened(session_id, messages, model, notice)
