"""The prompt-toolkit application: keys become actions, the state is rendered, effects run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.data_structures import Point
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import ConditionalContainer, HSplit, Layout, Window
from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl
from prompt_toolkit.layout.dimension import Dimension

from openpista.home import local_user
from openpista.tui import view
from openpista.tui.state import (
    Action,
    Effect,
    Failed,
    GoHome,
    HistoryNext,
    HistoryPrev,
    Interrupt,
    LeaveWorkers,
    LoadHome,
    MoveSelection,
    NewSession,
    OpenSelected,
    OpenSession,
    Quit,
    ResponseReceived,
    Scroll,
    ShowWorkers,
    State,
    Submit,
)
from openpista.tui.update import update

if TYPE_CHECKING:
    from openpista.config import Settings
    from openpista.control.client import ControlClient

PAGE = 10  # lines per PageUp/PageDown
LEAVE_DEADLINE = 2.0  # seconds a running turn gets to finish when the user quits


class Effects(Protocol):
    """Runs the app's effects: in this process (:class:`~openpista.tui.effects.EffectRunner`)
    or in the daemon (:class:`~openpista.tui.remote.RemoteEffects`)."""

    async def run(self, effect: Effect) -> None: ...

    async def finish(self, deadline: float) -> None:
        """The app has ended: let running turns end within ``deadline`` seconds."""


EffectsFactory = Callable[[Callable[[Action], None], Callable[[], None]], Effects]
"""Builds the :class:`Effects` of an app from its ``dispatch`` and its ``exit``."""


class TuiApp:
    """One full-screen chat; build it, then ``await run(session)``. ``state.commands`` are
    the chat commands of the gateway answering it."""

    def __init__(self, effects: EffectsFactory, state: State) -> None:
        self.state = state
        self.effects = effects(self.dispatch, self._exit)
        self._tasks: set[asyncio.Task[None]] = set()
        self.input = Buffer(multiline=True)
        self.application: Application[None] = self._build()

    # -- data flow ----------------------------------------------------------------------

    def dispatch(self, action: Action) -> None:
        """Apply ``action``, sync the widgets with the new state, start its effects."""
        before = self.state
        self.state, effects = update(before, action)
        if self.state.input_rev != before.input_rev:
            self.input.set_document(Document(self.state.input), bypass_readonly=True)
        if self.state.screen != before.screen:
            self._focus()
        for effect in effects:
            self.spawn(effect)
        self.application.invalidate()

    def spawn(self, effect: Effect) -> None:
        """Run ``effect`` in the background (its outcome comes back as an action)."""
        self._track(self.effects.run(effect))

    def _track(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, session_id: str | None = None) -> None:
        """Show the home screen (or ``session_id``'s chat) until the user quits."""
        self.spawn(LoadHome())
        if session_id is not None:
            self.spawn(OpenSession(session_id))
        try:
            await self.application.run_async()
        finally:
            await self.effects.finish(LEAVE_DEADLINE)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _exit(self) -> None:
        future = self.application.future
        if future is not None and not future.done():
            self.application.exit()

    # -- widgets ------------------------------------------------------------------------

    def _build(self) -> Application[None]:
        is_home = Condition(lambda: self.state.screen == "home")
        is_chat = Condition(lambda: self.state.screen == "chat")
        is_workers = Condition(lambda: self.state.screen == "workers")
        self.home_window = Window(
            FormattedTextControl(lambda: view.home(self.state), focusable=True),
            wrap_lines=True,
        )
        self.workers_window = Window(
            FormattedTextControl(lambda: view.workers(self.state), focusable=True),
            wrap_lines=True,
        )
        self.chat_window = Window(
            FormattedTextControl(
                lambda: view.scrollback(self.state),
                get_cursor_position=self._scroll_position,
                focusable=False,
            ),
            wrap_lines=True,
        )
        self.input_window = Window(
            BufferControl(buffer=self.input),
            height=Dimension(min=1, max=8),
            dont_extend_height=True,
            wrap_lines=True,
            get_line_prefix=lambda line, wrap: "› " if line == 0 and not wrap else "  ",
        )
        body = HSplit(
            [
                Window(FormattedTextControl(lambda: view.header(self.state)), height=1),
                ConditionalContainer(self.home_window, filter=is_home),
                ConditionalContainer(self.workers_window, filter=is_workers),
                ConditionalContainer(
                    HSplit(
                        [
                            self.chat_window,
                            Window(height=1, char="─", style="class:rule"),
                            self.input_window,
                        ]
                    ),
                    filter=is_chat,
                ),
                Window(FormattedTextControl(lambda: view.toolbar(self.state)), height=1),
            ]
        )
        return Application(
            layout=Layout(body, focused_element=self.home_window),
            key_bindings=self._keys(is_home, is_chat, is_workers),
            style=view.STYLE,
            full_screen=True,
            mouse_support=False,  # keep the terminal's own selection and copy
        )

    def _scroll_position(self) -> Point:
        # The window keeps the cursor line visible: pointing it at the last line (minus
        # what the user scrolled up) keeps the newest text on screen.
        last = view.line_count(view.scrollback(self.state)) - 1
        return Point(x=0, y=max(0, last - self.state.scroll))

    def _focus(self) -> None:
        targets = {"chat": self.input_window, "workers": self.workers_window}
        self.application.layout.focus(targets.get(self.state.screen, self.home_window))

    def _keys(self, is_home: Condition, is_chat: Condition, is_workers: Condition) -> KeyBindings:
        kb = KeyBindings()
        dispatch = self.dispatch
        empty_input = Condition(lambda: not self.input.text)

        @kb.add("c-c")
        def _interrupt(event: KeyPressEvent) -> None:
            dispatch(Interrupt())

        @kb.add("c-d", filter=is_home | empty_input)
        @kb.add("q", filter=is_home)
        def _quit(event: KeyPressEvent) -> None:
            dispatch(Quit())

        self._list_keys(kb, is_home, is_workers)

        @kb.add("enter", filter=is_home)
        def _open(event: KeyPressEvent) -> None:
            dispatch(OpenSelected())

        @kb.add("n", filter=is_home)
        def _new(event: KeyPressEvent) -> None:
            dispatch(NewSession())

        @kb.add("enter", filter=is_chat)
        def _send(event: KeyPressEvent) -> None:
            dispatch(Submit(self.input.text))

        @kb.add("escape", "enter", filter=is_chat)
        def _newline(event: KeyPressEvent) -> None:
            self.input.insert_text("\n")

        @kb.add("escape", filter=is_chat & empty_input)
        def _home(event: KeyPressEvent) -> None:
            dispatch(GoHome())

        @kb.add("up", filter=is_chat)
        def _previous(event: KeyPressEvent) -> None:
            if self.input.document.cursor_position_row > 0:
                self.input.cursor_up()
            else:
                dispatch(HistoryPrev(self.input.text))

        @kb.add("down", filter=is_chat)
        def _next(event: KeyPressEvent) -> None:
            document = self.input.document
            if document.cursor_position_row < document.line_count - 1:
                self.input.cursor_down()
            else:
                dispatch(HistoryNext(self.input.text))

        @kb.add("pageup", filter=is_chat)
        def _page_up(event: KeyPressEvent) -> None:
            dispatch(Scroll(PAGE))

        @kb.add("pagedown", filter=is_chat)
        def _page_down(event: KeyPressEvent) -> None:
            dispatch(Scroll(-PAGE))

        return kb

    def _list_keys(self, kb: KeyBindings, is_home: Condition, is_workers: Condition) -> None:
        """The keys of the two list screens: the sessions and the worker dashboard."""
        dispatch = self.dispatch
        is_list = is_home | is_workers

        @kb.add("up", filter=is_list)
        @kb.add("k", filter=is_list)
        def _up(event: KeyPressEvent) -> None:
            dispatch(MoveSelection(-1))

        @kb.add("down", filter=is_list)
        @kb.add("j", filter=is_list)
        def _down(event: KeyPressEvent) -> None:
            dispatch(MoveSelection(1))

        @kb.add("w", filter=is_home)
        def _workers(event: KeyPressEvent) -> None:
            dispatch(ShowWorkers())

        @kb.add("escape", filter=is_workers)
        @kb.add("q", filter=is_workers)
        def _leave_workers(event: KeyPressEvent) -> None:
            dispatch(LeaveWorkers())


async def run_tui(
    settings: Settings,
    session_id: str | None = None,
    provider: str | None = None,
    model: str | None = None,
) -> None:
    """Open the runtime and a gateway with the TUI's channel, and run the app here."""
    from openpista.gateway.approvals import ApprovalBroker
    from openpista.gateway.gateway import Gateway
    from openpista.runtime import Runtime
    from openpista.tui.adapter import TuiAdapter
    from openpista.tui.effects import EffectRunner
    from openpista.worker_service import WorkerReports
    from openpista.workers import worker_hub

    runtime = await Runtime.open(settings)
    try:
        approvals = ApprovalBroker.for_runtime(runtime)
        gateway = Gateway(runtime, approvals=approvals)
        problems = list(runtime.problems)
        if provider or model:
            try:
                gateway.set_model(provider, model)
            except Exception as exc:
                problems.append(f"-p/-m: {exc}")
        state = State(
            config_path=str(settings.source_path or "~/.openpista/config.toml"),
            warnings=tuple(problems),
            commands=tuple(gateway.commands.names),
        )
        app = TuiApp(
            lambda dispatch, exit_app: EffectRunner(
                runtime, gateway, dispatch, local_user(), exit_app
            ),
            state,
        )
        runner = app.effects
        assert isinstance(runner, EffectRunner)  # noqa: S101  an invariant for mypy, not a check
        gateway.adapters.append(TuiAdapter(lambda message: app.dispatch(ResponseReceived(message))))
        # The runs of this process's tools, for the dashboard (which also shows those of
        # a daemon writing to the same database).
        recorder = await WorkerReports.open(worker_hub(), settings.database.url)
        runner.worker_log = recorder.log
        await gateway.start()
        try:
            with _logs_in_chat(app):
                await app.run(session_id)
        finally:
            await gateway.stop(deadline=LEAVE_DEADLINE)  # the user asked to leave
            await runner.close()
            await recorder.close()
    finally:
        await runtime.close()


async def run_attached(
    client: ControlClient, session_id: str | None = None, config: str | None = None
) -> None:
    """Run the app against the daemon behind ``client``: its turns, history and chat
    commands are the daemon's (nothing heavy is imported here); ``config`` is passed to
    ``/login``."""
    from openpista.tui.remote import RemoteEffects, attach

    connection, home = await attach(client)
    try:
        state = State(
            config_path=str(home.get("config", "")),
            warnings=tuple(str(w) for w in home.get("warnings", [])),
            commands=tuple(str(c) for c in home.get("commands", [])),
        )
        app = TuiApp(
            lambda dispatch, exit_app: RemoteEffects(
                connection, dispatch, local_user(), exit_app, config
            ),
            state,
        )
        with _logs_in_chat(app):
            await app.run(session_id)
    finally:
        await connection.close()


@contextlib.contextmanager
def _logs_in_chat(app: TuiApp) -> Iterator[None]:
    # Log records written to the terminal would tear the full-screen view apart.
    handler = ChatLogHandler(app)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


class ChatLogHandler(logging.Handler):
    """Shows warnings and errors logged while the app runs as error lines in the chat."""

    def __init__(self, app: TuiApp) -> None:
        super().__init__(logging.WARNING)
        self.app = app
        self.loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        action = Failed(f"{record.levelname.lower()}: {record.getMessage()}")
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self.loop.call_soon_threadsafe(self.app.dispatch, action)
