"""``openpista run``: one message in, the streamed answer out."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import click

from openpista.cli.main import CliState, fail


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
    "-p", "--provider", metavar="NAME", help="Provider preset (default: [agent] provider)."
)
@click.option(
    "-m", "--model", metavar="MODEL", help="Model (default: the provider's configured one)."
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
    settings = state.settings()
    session_id = session or uuid.uuid4().hex
    code = asyncio.run(_run(settings, text, session_id, provider, model, quiet))
    sys.exit(code)


async def _run(
    settings: object,
    text: str,
    session_id: str,
    provider: str | None,
    model: str | None,
    quiet: bool,
) -> int:
    from openpista.agent import AgentEvent, ToolFinished, ToolStarted
    from openpista.cli.database import database_problem
    from openpista.config import ConfigError, Settings
    from openpista.memory.store import MemoryStoreError
    from openpista.providers.base import ProviderError, TextDelta
    from openpista.runtime import Runtime

    assert isinstance(settings, Settings)
    printed: list[str] = []  # answer text streamed since the last tool round

    def show(event: AgentEvent) -> None:
        if isinstance(event, TextDelta):
            printed.append(event.text)
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif quiet:
            return
        elif isinstance(event, ToolStarted):
            _end_line(printed)
            args = json.dumps(event.call.arguments, ensure_ascii=False)
            click.echo(click.style(f"⚙ {event.call.name} {_clip(args)}", dim=True), err=True)
        elif isinstance(event, ToolFinished):
            mark = "✗" if event.result.is_error else "✓"
            first_line = event.result.output.strip().splitlines()[:1]
            summary = f"{mark} {event.result.name}: {_clip(first_line[0] if first_line else '')}"
            click.echo(click.style(summary, dim=True), err=True)

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
        response = await agent.run_turn(session_id, text, on_event=show)
    finally:
        await runtime.close()
    if response.is_error:
        _end_line(printed)
        click.echo(response.text, err=True)
        return 1
    if "".join(printed) != response.text:  # not streamed, or a notice after the stream
        _end_line(printed)
        printed.append(response.text)
        sys.stdout.write(response.text)
    _end_line(printed)
    click.echo(click.style(f"session: {session_id}", dim=True), err=True)
    return 0


def _end_line(printed: list[str]) -> None:
    """Finish the streamed line, if any, so that what follows starts on its own line."""
    text = "".join(printed)
    if text and not text.endswith("\n"):
        sys.stdout.write("\n")
        sys.stdout.flush()
    printed.clear()


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
