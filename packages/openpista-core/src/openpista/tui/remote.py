"""Running the TUI's effects in the daemon, over its control socket.

The turns run in the daemon (its warm provider, tools and policy, as a ``local:`` chat)
and stream back; the home screen, a session's history, the chat commands and the worker
dashboard are the daemon's answers. Nothing heavy is imported: no litellm, no SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from openpista.control.client import ControlClient, DaemonError, DaemonGoneError
from openpista.control.protocol import Frame
from openpista.control.stream import StreamClient
from openpista.models import Answer, Message, Outbound
from openpista.tui.login import login_in_terminal
from openpista.tui.state import (
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

DAEMON_GONE = "❌ the daemon stopped; its answer is lost (leave, then `openpista start` again)"
_OUTBOUND: TypeAdapter[Outbound] = TypeAdapter(Outbound)


async def attach(client: ControlClient) -> tuple[StreamClient, dict[str, Any]]:
    """``client``'s connection as a :class:`StreamClient`, and the daemon's ``home``
    answer (its chat commands, configuration and warnings, for the app's first state)."""
    connection = await StreamClient.over(client.socket)
    try:
        home = await connection.request({"type": "home"})
    except BaseException:
        await connection.close()
        raise
    return connection, home


class RemoteEffects:
    """Runs the app's effects through ``connection``; each outcome goes to ``dispatch``.

    The socket carries one turn at a time: messages sent meanwhile wait here, in order, as
    they would in the daemon's queue.
    """

    def __init__(
        self,
        connection: StreamClient,
        dispatch: Callable[[Action], None],
        sender: str,
        exit_app: Callable[[], None],
        config: str | None = None,
    ) -> None:
        self.connection = connection
        self.dispatch = dispatch
        self.sender = sender
        self.exit_app = exit_app
        self.config = config
        self._sends: asyncio.Queue[SendMessage] = asyncio.Queue()
        self._session: str | None = None  # of the turn that runs
        self._answered = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        connection.on_frame = self._received

    async def run(self, effect: Effect) -> None:
        """Run ``effect``; a failure becomes a :class:`Failed` action, never a crash."""
        try:
            outcome = await self._run(effect)
        except DaemonGoneError:
            outcome = Failed(DAEMON_GONE)
        except DaemonError as exc:
            outcome = Failed(str(exc))
        except Exception as exc:  # an answer this client cannot read (a newer daemon)
            outcome = Failed(f"the daemon's answer is unreadable: {type(exc).__name__}: {exc}")
        if outcome is not None:
            self.dispatch(outcome)

    async def _run(self, effect: Effect) -> Action | None:
        if isinstance(effect, LoadHome):
            return await self.load_home()
        if isinstance(effect, OpenSession):
            return await self.open_session(effect.session_id)
        if isinstance(effect, SendMessage):
            self._sends.put_nowait(effect)
            if self._sender is None:
                self._sender = asyncio.get_running_loop().create_task(self._send_all())
            return None
        if isinstance(effect, CancelTurns):
            while not self._sends.empty():
                self._sends.get_nowait()
            if self._session is not None:
                await self.connection.send({"type": "cancel"})
            return TurnsCancelled()
        if isinstance(effect, RunCommand):
            return await self.run_command(effect.session_id, effect.text)
        if isinstance(effect, Login):
            code = await login_in_terminal(self.config, effect.provider)
            if code != 0:
                return Failed(f"login did not complete (exit status {code}); try /login again")
            reloaded = await self.connection.request({"type": "reload"})
            return ModelChanged(_model(reloaded["model"]))
        if isinstance(effect, LoadWorkers):  # and follow the daemon's worker feed
            rows = await self.connection.request({"type": "workers", "follow": True})
            return WorkersLoaded(tuple(_worker(row) for row in rows))
        if isinstance(effect, Exit):
            self.exit_app()
            return None
        raise TypeError(f"unknown effect {effect!r}")

    async def finish(self, deadline: float) -> None:
        """Wait up to ``deadline`` seconds for the running turn's answer (the user is
        leaving; the daemon cancels a turn whose client has gone)."""
        if self._session is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), deadline)
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    async def load_home(self) -> HomeLoaded:
        """The daemon's recent sessions, its model and today's spend."""
        home = await self.connection.request({"type": "home"})
        rows = tuple(
            SessionRow(
                id=str(row["id"]),
                title=row.get("title"),
                updated=_local_time(str(row.get("updated_at", ""))),
                messages=int(row.get("messages", 0)),
            )
            for row in home["sessions"]
        )
        return HomeLoaded(rows, _model(home["model"]), str(home.get("spend", "")))

    async def open_session(self, session_id: str | None, notice: str = "") -> SessionOpened:
        """Open ``session_id`` (a new id when ``None``) with its stored messages."""
        session_id = session_id or uuid.uuid4().hex
        found = await self.connection.request({"type": "history", "session": session_id})
        messages = tuple(Message.model_validate(m) for m in found["messages"])
        if found.get("omitted"):
            older = f"{found['omitted']} older messages are not shown"
            notice = f"{notice}\n{older}" if notice else older
        return SessionOpened(session_id, messages, _model(found["model"]), notice)

    async def run_command(self, session_id: str, text: str) -> Action:
        """The daemon's answer to the chat command ``text``; a command that moved the
        chat (``/session ID``, ``/clear``) opens the session it moved to."""
        frame = {"type": "command", "session": session_id, "text": text}
        reply = await self.connection.request(frame)
        if reply["session"] != session_id:
            return await self.open_session(str(reply["session"]), notice=str(reply["text"]))
        name = text.split()[0][1:].lower()
        return CommandAnswered(
            name, str(reply["text"]), bool(reply["is_error"]), _model(reply["model"])
        )

    async def _send_all(self) -> None:
        """Run the waiting messages' turns in the daemon, one after another."""
        while True:
            message = await self._sends.get()
            self._answered.clear()
            self._session = message.session_id
            frame = {
                "type": "run",
                "text": message.text,
                "session": message.session_id,
                "sender": self.sender,
            }
            try:
                await self.connection.send(frame)
            except DaemonError:
                self._received(None)
            await self._answered.wait()
            self._session = None

    def _received(self, frame: Frame | None) -> None:
        """A frame of the running turn or of the worker feed (``None``: the daemon has
        gone)."""
        if frame is None:
            self._end_turn(DAEMON_GONE)
        elif frame["type"] == "cancelled":
            self._answered.set()
        elif frame["type"] == "error":  # the turn did not start
            self._end_turn(str(frame.get("message")))
        elif frame["type"] == "worker_event":
            if isinstance(event := frame.get("event"), dict):
                self.dispatch(WorkerEventReceived(event))
        elif frame["type"] == "outbound":
            try:
                message = _OUTBOUND.validate_python(frame.get("message"))
            except ValidationError:
                return  # a message of a newer daemon: nothing to show
            self.dispatch(ResponseReceived(message))
            if isinstance(message, Answer):
                self._answered.set()

    def _end_turn(self, problem: str) -> None:
        """The running turn ends with ``problem`` (or it is shown, when none runs)."""
        if self._session is not None:
            self.dispatch(ResponseReceived(Answer.error(problem, session_id=self._session)))
        else:
            self.dispatch(Failed(problem))
        self._answered.set()


def _model(data: dict[str, Any]) -> ModelInfo:
    return ModelInfo(
        provider=str(data.get("provider", "")),
        model=str(data.get("model", "")),
        key_status=str(data.get("key_status", "")),
        key_env=tuple(data.get("key_env", ())),
        providers=tuple(data.get("providers", ())),
    )


def _worker(row: dict[str, Any]) -> WorkerRow:
    return WorkerRow(**{**row, "logs": tuple(row.get("logs", ()))})


def _local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso
