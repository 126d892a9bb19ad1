"""The terminal channel: a real pipe for standard input, captured output."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from openpista.builtins import channels
from openpista.channels import Capabilities
from openpista.config import Settings
from openpista.gateway.cli_adapter import CHANNEL_ID, CliAdapter, create_cli_adapter
from openpista.gateway.gateway import Gateway
from openpista.models import (
    Answer,
    ApprovalPrompt,
    ApprovalRequest,
    ChannelEvent,
    TextChunk,
    ToolCall,
    ToolProgress,
    ToolResult,
)
from openpista.plugins import PluginHost
from openpista.runtime import Runtime
from openpista_testing.adapters import QueueContext
from openpista_testing.cli import emulator_settings
from openpista_testing.emulator import LlmEmulator


@dataclass
class Terminal:
    """A CliAdapter reading the write end of a pipe that the test controls."""

    adapter: CliAdapter
    write_fd: int
    ctx: QueueContext
    stdout: io.StringIO
    stderr: io.StringIO
    closed: list[str] = field(default_factory=list)

    def type(self, text: str) -> None:
        os.write(self.write_fd, text.encode())

    def eof(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    async def next_event(self) -> ChannelEvent:
        return await asyncio.wait_for(self.ctx.events.get(), timeout=5)


@pytest.fixture
async def terminal() -> AsyncIterator[Terminal]:
    read_fd, write_fd = os.pipe()
    stdout, stderr = io.StringIO(), io.StringIO()
    term = Terminal(
        CliAdapter(stdin=read_fd, stdout=stdout, stderr=stderr, sender="ada"),
        write_fd,
        QueueContext(),
        stdout,
        stderr,
    )
    term.adapter.on_close = lambda: term.closed.append("closed")
    await term.adapter.start(term.ctx)
    yield term
    term.eof()
    await term.adapter.stop()
    os.close(read_fd)


async def test_each_line_becomes_an_event_of_the_local_chat(terminal: Terminal) -> None:
    terminal.type("hello agent\n\n   \nsecond line\n")
    first = await terminal.next_event()
    assert first.channel_id == CHANNEL_ID == "cli:local"
    assert first.sender == "ada"
    assert first.text == "hello agent"
    assert (await terminal.next_event()).text == "second line"  # blank lines are skipped
    assert terminal.closed == []


async def test_a_line_arriving_in_pieces_is_one_event(terminal: Terminal) -> None:
    terminal.type("héllo ")
    await asyncio.sleep(0.05)
    terminal.type("wörld\r\n")
    assert (await terminal.next_event()).text == "héllo wörld"


async def test_end_of_input_closes_and_calls_on_close(terminal: Terminal) -> None:
    terminal.type("last words without newline")
    terminal.eof()
    assert (await terminal.next_event()).text == "last words without newline"
    await asyncio.wait_for(terminal.adapter.wait_closed(), timeout=5)
    assert terminal.closed == ["closed"]


@pytest.mark.parametrize("command", ["/quit", "/exit", "  /quit  "])
async def test_quit_commands_close(terminal: Terminal, command: str) -> None:
    terminal.type(f"{command}\nnever sent\n")
    await asyncio.wait_for(terminal.adapter.wait_closed(), timeout=5)
    assert terminal.closed == ["closed"]
    assert terminal.ctx.events.empty()


async def test_on_close_may_be_a_coroutine() -> None:
    read_fd, write_fd = os.pipe()
    done = asyncio.Event()

    async def on_close() -> None:
        done.set()

    adapter = CliAdapter(stdin=read_fd, stdout=io.StringIO(), on_close=on_close)
    await adapter.start(QueueContext())
    os.close(write_fd)
    await asyncio.wait_for(done.wait(), timeout=5)
    await adapter.stop()
    os.close(read_fd)


async def test_stop_ends_the_reader_without_input(terminal: Terminal) -> None:
    await asyncio.wait_for(terminal.adapter.stop(), timeout=5)
    assert terminal.closed == []  # stopping is not the user leaving


def response(text: str = "", **fields: Any) -> Answer:
    return Answer(channel_id=CHANNEL_ID, session_id="s", text=text, **fields)


def chunk(text: str, session_id: str = "s") -> TextChunk:
    return TextChunk(channel_id=CHANNEL_ID, session_id=session_id, text=text)


async def test_streamed_answer_is_printed_once(terminal: Terminal) -> None:
    for piece in ("Hel", "lo ", "there"):
        await terminal.adapter.send(chunk(piece))
    assert terminal.stdout.getvalue() == "Hello there"
    await terminal.adapter.send(response("Hello there"))
    assert terminal.stdout.getvalue() == "Hello there\n"


async def test_answer_not_streamed_is_printed_whole(terminal: Terminal) -> None:
    await terminal.adapter.send(response("whole answer"))
    assert terminal.stdout.getvalue() == "whole answer\n"


async def test_tool_progress_goes_to_stderr_and_splits_the_answer(terminal: Terminal) -> None:
    call = ToolCall(id="c", name="system.run", arguments={"command": "ls"})
    result = ToolResult(call_id="c", name="system.run", output="a.txt\nb.txt")
    send = terminal.adapter.send
    await send(chunk("Looking"))
    await send(ToolProgress(channel_id=CHANNEL_ID, session_id="s", call=call))
    await send(ToolProgress(channel_id=CHANNEL_ID, session_id="s", call=call, result=result))
    await send(chunk("Two files."))
    await send(response("Two files."))
    assert terminal.stdout.getvalue() == "Looking\nTwo files.\n"
    assert terminal.stderr.getvalue() == '⚙ system.run {"command": "ls"}\n✓ system.run: a.txt\n'


async def test_errors_and_approvals(terminal: Terminal) -> None:
    request = ApprovalRequest(id="ap1", tool="system.run", arguments={"command": "rm x"})
    await terminal.adapter.send(ApprovalPrompt(channel_id=CHANNEL_ID, request=request))
    assert "/approve ap1" in terminal.stdout.getvalue()
    assert terminal.stdout.getvalue().endswith("\n")
    await terminal.adapter.send(response("❌ the provider said no", is_error=True))
    assert terminal.stderr.getvalue() == "❌ the provider said no\n"


async def test_interleaved_answers_never_share_a_line(terminal: Terminal) -> None:
    send = terminal.adapter.send
    await send(chunk("first answer "))
    await send(chunk("other", session_id="other"))
    await send(Answer(channel_id=CHANNEL_ID, text="✅ approved"))
    await send(chunk("continues"))
    await send(response("first answer continues"))
    assert terminal.stdout.getvalue().splitlines() == [
        "first answer ",
        "other",
        "✅ approved",
        "continues",
    ]


def test_factory_and_plugin_registration() -> None:
    from openpista import ConfigError
    from openpista.gateway.cli_adapter import CliSettings
    from openpista.plugin_context import PluginContext
    from openpista.plugins import PluginHost
    from openpista.runtime import channel_factories

    settings = Settings.model_validate({"channels": {"cli": {"sender": "grace"}}})
    factory = channel_factories(PluginHost.load(entry_points=False), PluginContext(settings))
    adapter = factory["cli"](settings.channels["cli"], settings)
    assert isinstance(adapter, CliAdapter)
    assert (adapter.name, adapter.channel_prefix) == ("cli", "cli:")
    assert adapter.capabilities == Capabilities(streaming=True)
    assert adapter.sender == "grace"
    registered: list[tuple[str, Callable[..., object]]] = []
    channels.register_channels(lambda name, factory: registered.append((name, factory)), settings)
    assert registered == [("cli", create_cli_adapter)]
    wrong = Settings.model_validate({"channels": {"cli": {"sendr": "grace"}}})
    with pytest.raises(ConfigError, match=r"^\[channels\.cli\] sendr: unknown option"):
        CliSettings.from_config(wrong)


async def test_piped_lines_are_answered_through_the_gateway_before_it_closes(
    tmp_path: Path, llm_emulator: LlmEmulator
) -> None:
    llm_emulator.reply_text("first answer", chunk_size=3)
    llm_emulator.reply_text("second answer", chunk_size=3)
    settings = emulator_settings(llm_emulator, tmp_path)
    runtime = await Runtime.open(settings, PluginHost.load(entry_points=False))
    read_fd, write_fd = os.pipe()
    stdout, stderr = io.StringIO(), io.StringIO()
    closed = asyncio.Event()
    adapter = CliAdapter(stdin=read_fd, stdout=stdout, stderr=stderr, on_close=closed.set)
    gateway = Gateway(runtime, [adapter])
    try:
        await gateway.start()
        os.write(write_fd, b"one\ntwo\n")
        os.close(write_fd)
        await asyncio.wait_for(closed.wait(), timeout=10)
        await gateway.stop(drain=True)  # what was typed is answered, as in the daemon
        assert stdout.getvalue() == "first answer\nsecond answer\n", stderr.getvalue()
        [session] = await runtime.memory.list_sessions()
        assert session.message_count == 4
    finally:
        await runtime.close()
        os.close(read_fd)
