"""``openpista run``: one message in, the streamed answer out.

With a daemon running, the turn runs inside it (its warm provider, tools and policy, as a
local chat) through the control socket; otherwise here. The choice is made before anything
heavy is imported: the attached path loads only the stdlib and click.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import click

from openpista.cli.main import CliState, fail
from openpista.home import local_user


@click.command()
@click.option(
    "-e",
    "--execute",
    "text",
    metavar="TEXT",
    help="The message to send. '-' reads it from standard input.",
)
@click.option("-s", "--session", metavar="ID", help="Continue (or create) the stored session ID.")
@click.option(
    "-p",
    "--provider",
    metavar="NAME",
    help="Provider preset (default: [agent] provider). Runs here, not in the daemon.",
)
@click.option(
    "-m",
    "--model",
    metavar="MODEL",
    help="Model (default: the provider's configured one). Runs here, not in the daemon.",
)
@click.option("-q", "--quiet", is_flag=True, help="Do not show tool calls on standard error.")
@click.pass_obj
def run(
    state: CliState,
    text: str | None,
    session: str | None,
    provider: str | None,
    model: str | None,
    quiet: bool,
) -> None:
    """Send one message to the agent and print its answer as it streams.

    The agent may run tools (shell commands, skills) before answering; each call is shown on
    standard error, the answer goes to standard output. The conversation is stored: the
    session ID is printed at the end, and -s ID continues it later. Exits 1 on failure.

    When `openpista start` runs, the turn runs in the daemon (Ctrl-C cancels it there);
    --no-daemon (before `run`) runs it here instead.

    \b
    Examples:
      openpista run -e "list the files in /tmp"
      echo "what is my kernel version?" | openpista run -e -
    """
    if text is None:
        raise click.UsageError("give the message with -e TEXT (or -e - to read standard input)")
    if text == "-":
        text = sys.stdin.read()
    if not text.strip():
        raise click.UsageError("the message is empty")
    session_id = session or uuid.uuid4().hex
    printer = TurnPrinter(quiet)
    client = state.daemon() if provider is None and model is None else None
    if client is not None:
        sys.exit(_attached(client, text, session_id, printer))
    import asyncio

    from openpista import collector

    collector.pause()  # until the turn starts: start-up builds no garbage worth a pass
    try:
        settings = state.settings()
        if settings.cluster.enabled:
            fail(
                "[cluster] is enabled: a turn runs only in a replica, which holds its "
                "session's lease (start `openpista start` here; -p/-m would run it in this "
                "process)"
            )
        code = asyncio.run(_run(settings, text, session_id, provider, model, printer))
    finally:
        collector.resume()  # (done as the turn starts; here when it never started)
    sys.exit(code)


class TurnPrinter:
    """Prints one turn the same way in-process and attached: the answer streams to
    standard output, tool calls go to standard error (unless ``quiet``)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.printed: list[str] = []  # answer text streamed since the last tool round

    def chunk(self, text: str) -> None:
        self.printed.append(text)
        sys.stdout.write(text)
        sys.stdout.flush()

    def tool_started(self, name: str, arguments: dict[str, Any]) -> None:
        if self.quiet:
            return
        import json

        self.end_line()
        args = json.dumps(arguments, ensure_ascii=False)
        click.echo(click.style(f"⚙ {name} {_clip(args)}", dim=True), err=True)

    def tool_finished(self, name: str, output: str, is_error: bool) -> None:
        if self.quiet:
            return
        mark = "✗" if is_error else "✓"
        first_line = output.strip().splitlines()[:1]
        summary = f"{mark} {name}: {_clip(first_line[0] if first_line else '')}"
        click.echo(click.style(summary, dim=True), err=True)

    def finish(self, text: str, is_error: bool, session_id: str) -> int:
        """Print the end of the turn; returns the exit code."""
        if is_error:
            self.end_line()
            click.echo(text, err=True)
            return 1
        if "".join(self.printed) != text:  # not streamed, or a notice after the stream
            self.end_line()
            self.printed.append(text)
            sys.stdout.write(text)
        self.end_line()
        click.echo(click.style(f"session: {session_id}", dim=True), err=True)
        return 0

    def end_line(self) -> None:
        """Finish the streamed line, if any, so that what follows starts on its own line."""
        text = "".join(self.printed)
        if text and not text.endswith("\n"):
            sys.stdout.write("\n")
            sys.stdout.flush()
        self.printed.clear()


async def _run(
    settings: object,
    text: str,
    session_id: str,
    provider: str | None,
    model: str | None,
    printer: TurnPrinter,
) -> int:
    from openpista import collector
    from openpista.agent import AgentEvent, ToolFinished, ToolStarted
    from openpista.cli.database import database_problem
    from openpista.config import ConfigError, Settings
    from openpista.memory import MemoryStoreError
    from openpista.providers.base import ProviderError, TextDelta
    from openpista.runtime import Runtime

    assert isinstance(settings, Settings)  # noqa: S101  an invariant for mypy, not a check

    def show(event: AgentEvent) -> None:
        if isinstance(event, TextDelta):
            printer.chunk(event.text)
        elif isinstance(event, ToolStarted):
            printer.tool_started(event.call.name, event.call.arguments)
        elif isinstance(event, ToolFinished):
            printer.tool_finished(event.result.name, event.result.output, event.result.is_error)

    try:
        runtime = await Runtime.open(settings)
    except MemoryStoreError as exc:
        fail(database_problem(exc, settings.database.url) or str(exc))
    try:
        for problem in runtime.problems:
            click.echo(f"warning: {problem}", err=True)
        try:
            agent = runtime.agent(provider, model)
        except (ProviderError, ConfigError) as exc:
            fail(str(exc))
        guard = _terminal_guard(runtime, session_id, printer)
        collector.resume()
        response = await agent.run_turn(
            session_id,
            text,
            on_event=show,
            guard=guard,
            channel_id=RUN_CHANNEL,
            sender=local_user(),
        )
    finally:
        await runtime.close()
    return printer.finish(response.text, response.is_error, session_id)


RUN_CHANNEL = "cli:run"
"""The chat of an in-process ``openpista run``: a local one (``[policy] local`` applies)."""


def _terminal_guard(runtime: Any, session_id: str, printer: TurnPrinter) -> Any:
    """The ``[policy]`` guard of an in-process turn: denied calls never run, approvals are
    asked on this terminal (the end of input: no), decisions are recorded as in the daemon."""
    import asyncio

    from openpista.gateway.approvals import ApprovalBroker
    from openpista.models import ApprovalPrompt

    broker = ApprovalBroker.for_runtime(runtime)

    async def ask(prompt: ApprovalPrompt) -> None:
        request = prompt.request
        approve = await asyncio.to_thread(_ask, printer, request.prompt())
        broker.answer(RUN_CHANNEL, f"/{'approve' if approve else 'deny'} {request.id}")

    warnings = runtime.toolbox.tools.approval_warnings
    return broker.guard(session_id, RUN_CHANNEL, ask, warnings)


def _attached(client: Any, text: str, session_id: str, printer: TurnPrinter) -> int:
    """Run the turn in the daemon through ``client``: print what streams back, ask its
    approvals here; Ctrl-C cancels the turn in the daemon. Returns the exit code."""
    from openpista.control.client import DaemonError, DaemonGoneError

    try:
        client.send({"type": "run", "text": text, "session": session_id, "sender": local_user()})
        cancelled = False
        while True:
            try:
                frame = client.receive()
            except KeyboardInterrupt:
                if cancelled:  # a second Ctrl-C: leave; the daemon ends the turn anyway
                    return 130
                cancelled = True
                client.send({"type": "cancel"})
                continue
            if frame["type"] == "cancelled":
                printer.end_line()
                click.echo("❌ cancelled: the turn was stopped in the daemon", err=True)
                return 130
            if frame["type"] == "error":
                printer.end_line()
                click.echo(str(frame.get("message")), err=True)
                return 1
            message = frame.get("message")
            if frame["type"] != "outbound" or not isinstance(message, dict):
                continue  # a frame of a newer daemon: nothing to show
            kind = message.get("kind")
            if kind == "chunk":
                printer.chunk(str(message.get("text", "")))
            elif kind == "tool":
                call, result = message.get("call") or {}, message.get("result")
                if result is None:
                    printer.tool_started(str(call.get("name")), call.get("arguments") or {})
                else:
                    printer.tool_finished(
                        str(result.get("name")), str(result.get("output", "")), result["is_error"]
                    )
            elif kind == "approval":
                request = message.get("request") or {}
                try:
                    answer = _ask(printer, str(frame.get("prompt", "")))
                except KeyboardInterrupt:  # Ctrl-C while asked: cancel the turn
                    cancelled = True
                    client.send({"type": "cancel"})
                    continue
                client.send({"type": "approval", "id": request.get("id"), "approve": answer})
            elif kind == "answer":
                text = str(message.get("text", ""))
                return printer.finish(text, bool(message.get("is_error")), session_id)
    except DaemonGoneError:
        printer.end_line()
        fail("the daemon stopped during the turn; its answer is lost (see `openpista status`)")
    except DaemonError as exc:
        printer.end_line()
        fail(str(exc))
    finally:
        client.close()
    return 1  # not reached: fail() exits


def _ask(printer: TurnPrinter, prompt: str) -> bool:
    """Ask on this terminal whether the tool call may run (the end of input: no)."""
    printer.end_line()
    lines = prompt.splitlines()
    # The last line tells chat users to type /approve ID; here the question is asked.
    click.echo("\n".join(lines[:-1] if len(lines) > 1 else lines), err=True)
    click.echo("Run it? [y/N]: ", nl=False, err=True)
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        click.echo(err=True)  # the end of input: finish the question's line
    return answer.strip().lower() in ("y", "yes")


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
