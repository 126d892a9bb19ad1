"""``openpista tui``: the full-screen terminal chat (prompt-toolkit, imported on use)."""

from __future__ import annotations

import asyncio
import sys

import click

from openpista.cli.main import CliState, fail


@click.command()
@click.option("-s", "--session", metavar="ID", help="Open session ID (created when missing).")
@click.option(
    "-p", "--provider", metavar="NAME", help="Provider preset (default: [agent] provider)."
)
@click.option(
    "-m", "--model", metavar="MODEL", help="Model (default: the provider's configured one)."
)
@click.pass_obj
def tui(state: CliState, session: str | None, provider: str | None, model: str | None) -> None:
    """Chat with the agent in a full-screen terminal view.

    The home screen lists recent sessions, the model and whether it has an API key; Enter
    opens a session, n starts a new one. In a chat, answers stream in, tool calls show as
    they run, and the chat commands of every channel (/help, /model for this session,
    /session, /clear, /usage, /approve, /deny) plus /login and /quit do the rest.
    `openpista -s ID` is a shortcut for `openpista tui -s ID`.

    When `openpista start` runs, the chat is the daemon's (its turns, sessions and
    commands; Ctrl-C cancels a turn there); --no-daemon (before `tui`), -p or -m run it
    here instead.

    \b
    Examples:
      openpista tui
      openpista tui -s work
      openpista -s work
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        fail("openpista tui needs a terminal; use `openpista run -e TEXT` in scripts")
    client = state.daemon() if provider is None and model is None else None
    if client is not None:
        from openpista.control.client import DaemonError
        from openpista.tui.app import run_attached

        try:
            asyncio.run(run_attached(client, session, state.config_path))
        except DaemonError as exc:
            fail(str(exc))
        finally:
            client.close()
        return
    settings = state.settings()
    from openpista.tui.app import run_tui

    asyncio.run(run_tui(settings, session, provider, model))
