"""The terminal channel of ``openpista start``: standard input in, standard output out.

Each non-empty input line is one message (channel id ``cli:local``). ``/quit``, ``/exit``
or the end of input closes the channel and calls ``on_close`` (the daemon stops when the
terminal is its only channel). Answers stream to standard output as they arrive; tool
progress goes to standard error, dimmed on a terminal.

Input is read by a thread with ``select`` + ``os.read`` on the file descriptor, which works
the same for a TTY, a pipe and a redirected file, never blocks the event loop, and never
sets ``O_NONBLOCK`` on a descriptor that a TTY shares with standard output.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import select
import sys
import threading
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, ClassVar

from openpista.channels import Capabilities, ChannelAdapter, ChannelContext
from openpista.cli.console import Console, clip
from openpista.home import local_user
from openpista.models import Answer, ApprovalPrompt, ChannelEvent, Outbound, TextChunk
from openpista.plugin_settings import PluginSettings

if TYPE_CHECKING:
    from openpista.config import Settings

CHANNEL_ID = "cli:local"
QUIT_COMMANDS = frozenset({"/quit", "/exit"})
_POLL_SECONDS = 0.2  # how soon the reader thread notices stop()


class CliAdapter(ChannelAdapter):
    """Chat with the agent on this process's standard input and output.

    ``stdin`` may be a file object or a file descriptor; ``stdout``/``stderr`` are text
    streams (defaults: the process's own). ``on_close`` is called once when the user ends
    the conversation (``/quit``, ``/exit``, end of input); it may return an awaitable.
    """

    name = "cli"
    channel_prefix = "cli:"
    capabilities = Capabilities(streaming=True)

    def __init__(
        self,
        *,
        stdin: IO[Any] | int | None = None,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
        sender: str | None = None,
        on_close: Callable[[], object] | None = None,
    ) -> None:
        self.stdin = sys.stdin if stdin is None else stdin
        self.console = Console(stdout or sys.stdout, stderr or sys.stderr)
        self.sender = sender or local_user()
        self.on_close = on_close
        self._closed = asyncio.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._close_task: asyncio.Future[Any] | None = None

    async def start(self, ctx: ChannelContext) -> None:
        """Start reading lines; returns at once."""
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._stopping.clear()
        self._closed = asyncio.Event()
        fd = self.stdin if isinstance(self.stdin, int) else self.stdin.fileno()
        self._thread = threading.Thread(
            target=_read_lines,
            args=(fd, loop, lines, self._stopping),
            name="openpista-cli-stdin",
            daemon=True,  # a blocked read must never hold the process open
        )
        self._thread.start()
        self._consumer = asyncio.create_task(self._consume(lines, ctx))

    async def wait_closed(self) -> None:
        """Return once the user has ended the conversation (the gateway supervises this)."""
        await self._closed.wait()

    async def stop(self) -> None:
        """Stop reading; what was already written stays."""
        self._stopping.set()
        consumer = self._consumer
        if consumer is not None and consumer is not asyncio.current_task():
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
        thread = self._thread
        if thread is not None:
            # os.read returns quickly after select said ready; never wait for long.
            await asyncio.to_thread(thread.join, _POLL_SECONDS * 5)
        self.console.end_line()

    async def send(self, message: Outbound) -> None:
        """Write one message: a streamed chunk, tool progress, an approval or the answer."""
        key = message.session_id or message.channel_id
        console = self.console
        if isinstance(message, ApprovalPrompt):
            console.line(message.request.prompt())
        elif isinstance(message, TextChunk):
            console.stream(key, message.text)
        elif isinstance(message, Answer):
            streamed = console.finish_stream(key)
            if message.is_error:
                console.line(message.text, err=True)
            elif message.text and message.text != streamed:
                console.line(message.text)  # not streamed, or a notice after the stream
        elif message.result is None:
            console.finish_stream(key)  # a tool round splits the answer
            args = json.dumps(message.call.arguments, ensure_ascii=False)
            console.line(f"⚙ {message.call.name} {clip(args)}", err=True, dim=True)
        else:
            console.finish_stream(key)
            result = message.result
            mark = "✗" if result.is_error else "✓"
            first = result.output.strip().splitlines()[:1]
            console.line(f"{mark} {result.name}: {clip(first[0] if first else '')}", True, True)

    async def _consume(self, lines: asyncio.Queue[str | None], ctx: ChannelContext) -> None:
        while True:
            line = await lines.get()
            if line is None or line.strip() in QUIT_COMMANDS:
                break
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            await ctx.submit(ChannelEvent(channel_id=CHANNEL_ID, sender=self.sender, text=text))
        self._stopping.set()
        self._closed.set()
        if self.on_close is not None:
            outcome = self.on_close()
            if asyncio.isfuture(outcome) or asyncio.iscoroutine(outcome):
                self._close_task = asyncio.ensure_future(outcome)


class CliSettings(PluginSettings):
    """``[channels.cli]``: ``enabled`` (default true) and ``sender``, the name the terminal's
    user speaks as (default: the login name)."""

    section: ClassVar[str] = "channels.cli"

    enabled: bool = True
    sender: str | None = None


def create_cli_adapter(settings: CliSettings, config: Settings) -> CliAdapter:
    """The ``[channels.cli]`` factory, handed its options validated by core."""
    return CliAdapter(sender=settings.sender or None)


def _read_lines(
    fd: int,
    loop: asyncio.AbstractEventLoop,
    lines: asyncio.Queue[str | None],
    stopping: threading.Event,
) -> None:
    """Thread body: read ``fd`` until end of input or ``stopping``; hand over whole lines."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""

    def hand_over(item: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(lines.put_nowait, item)

    try:
        while not stopping.is_set():
            ready, _, _ = select.select([fd], [], [], _POLL_SECONDS)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            pending += decoder.decode(chunk, final=not chunk)
            *complete, pending = pending.split("\n")
            for line in complete:
                hand_over(line)
            if not chunk:
                if pending:
                    hand_over(pending)
                break
    except (OSError, ValueError):
        pass  # a closed descriptor is the end of input
    hand_over(None)
