"""The ``openpista`` command.

Start-up must stay fast: this module imports only click. Sub-commands live in their own
modules and are imported when invoked; plugin commands are loaded when the command line
asks for a name that is not built in, or for the list of commands.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import import_module
from typing import Any

import click

from openpista._version import __version__

# name -> (module:function, one-line help shown by --help without importing the module)
BUILTIN_COMMANDS = {
    "start": ("openpista.cli.start:start", "Run the agent daemon with every enabled channel."),
    "status": ("openpista.cli.start:status", "Tell whether the daemon runs (PID, uptime)."),
    "init": ("openpista.cli.init:init", "Write a starter config, step by step."),
    "run": ("openpista.cli.run:run", "Send one message to the agent and print its answer."),
    "send": ("openpista.cli.send:send", "Deliver a message to a chat through the daemon."),
    "model": ("openpista.cli.model:model", "List the LLM providers and models, or test one."),
    "plugins": ("openpista.cli.plugins:plugins", "List plugins and what each registered."),
    "sessions": ("openpista.cli.sessions:sessions", "List stored conversation sessions."),
    "memory": ("openpista.cli.memory:memory", "People's notes, session export/import, purge."),
    "usage": ("openpista.cli.usage:usage", "Show the tokens and cost of LLM responses."),
    "budget": ("openpista.cli.budget:budget", "Show the spending caps, or raise one live."),
    "workers": ("openpista.cli.workers:workers", "List worker tasks and their reports."),
    "cron": ("openpista.cli.cron:cron", "Show scheduled messages and their next run times."),
    "tui": ("openpista.cli.tui:tui", "Full-screen terminal chat with the agent."),
    "auth": ("openpista.cli.auth:auth", "Log in to providers, show or remove stored credentials."),
    "doctor": ("openpista.cli.doctor:doctor", "Check config, provider, channels, tools, database."),
}


class LazyGroup(click.Group):
    """A group whose built-in commands are imported on use and plugins load on demand."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugins_loaded = False

    def _load_plugin_commands(self) -> list[str]:
        """Add the plugins' commands (once); returns the warnings of plugins that failed
        (printed on stderr the first time)."""
        if self._plugins_loaded:
            return []
        self._plugins_loaded = True
        from openpista.plugins import PluginHost

        host = PluginHost.load(builtins=False)
        host.collect("register_commands", lambda *_: "", cli=self)
        warnings = [f"warning: {problem}" for problem in host.problems]
        for warning in warnings:
            click.echo(warning, err=True)
        return warnings

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return sorted({*BUILTIN_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = BUILTIN_COMMANDS.get(cmd_name)
        if target is not None:
            module_name, attr = target[0].split(":")
            command: click.Command = getattr(import_module(module_name), attr)
            return command
        self._load_plugin_commands()
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from openpista.cli.command_index import plugin_rows

        rows = [(name, short) for name, (_, short) in BUILTIN_COMMANDS.items()]
        plugin, warnings = plugin_rows(self._plugin_rows)
        if self._plugins_loaded is False:  # read from the index: the same warnings again
            for warning in warnings:
                click.echo(warning, err=True)
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows + plugin))

    def _plugin_rows(self) -> tuple[list[tuple[str, str]], list[str], list[str] | None]:
        """The plugins' command rows, their warnings, and the modules imported to find them
        (``None`` when they were loaded before: then the rows are not kept in the index)."""
        loaded_before = self._plugins_loaded
        before = set(sys.modules)
        warnings = self._load_plugin_commands()
        rows = [(name, command.get_short_help_str()) for name, command in self.commands.items()]
        return rows, warnings, None if loaded_before else sorted(set(sys.modules) - before)


class CliState:
    """Shared by all sub-commands: the config path, loaded on first use, and whether to
    talk to a running daemon."""

    def __init__(self, config_path: str | None, no_daemon: bool = False) -> None:
        self.config_path = config_path
        self.no_daemon = no_daemon
        self._settings: Any = None

    def daemon(self) -> Any:
        """A :class:`~openpista.control.client.ControlClient` connected to the running
        daemon, or ``None`` (none runs, or ``--no-daemon``): then run in-process. Loads no
        configuration (the daemon has its own); exits with a ❌ line if the daemon refuses."""
        if self.no_daemon:
            return None
        from openpista.control.client import ControlClient, DaemonError

        try:
            return ControlClient.connect()
        except DaemonError as exc:
            fail(str(exc))

    def settings(self) -> Any:
        """The loaded :class:`openpista.config.Settings`; exits with a clear error if invalid."""
        if self._settings is None:
            from openpista.config import ConfigError, load_config

            try:
                self._settings = load_config(self.config_path)
            except ConfigError as exc:
                fail(str(exc), code=2)
        return self._settings


def columns(rows: Sequence[Sequence[str]], gap: int = 2) -> list[str]:
    """``rows`` as lines of left-aligned columns, each as wide as its longest cell."""
    widths = [
        max(len(row[i]) for row in rows if i < len(row))
        for i in range(max(map(len, rows), default=0))
    ]
    return [
        (" " * gap).join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]


def fail(message: str, code: int = 1) -> None:
    """Print ``❌ message`` to stderr (``message`` as is when it starts with ❌) and exit
    with ``code``."""
    click.echo(message if message.startswith("❌") else f"❌ {message}", err=True)
    sys.exit(code)


@click.group(
    cls=LazyGroup,
    invoke_without_command=True,  # `openpista -s ID` opens the TUI
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "-V", "--version", prog_name="openpista")
@click.option(
    "-c",
    "--config",
    "config_path",
    envvar="OPENPISTA_CONFIG",
    metavar="PATH",
    help="Config file (default: ~/.openpista/config.toml; env OPENPISTA_CONFIG).",
)
@click.option(
    "-s",
    "--session",
    metavar="ID",
    help="Open the full-screen chat (openpista tui) on session ID.",
)
@click.option(
    "--no-daemon",
    is_flag=True,
    envvar="OPENPISTA_NO_DAEMON",
    help="Run here even when a daemon runs (run, tui, sessions, status; env OPENPISTA_NO_DAEMON).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, session: str | None, no_daemon: bool) -> None:
    """openpista: an autonomous AI agent that acts on this computer for you.

    \b
    Examples:
      openpista run -e "list the files in /tmp"
      openpista run -s work -e "and now count them"
      openpista model test
      openpista plugins --json
      openpista -s work          (full-screen chat on session "work")
    """
    ctx.obj = CliState(config_path, no_daemon)
    if ctx.invoked_subcommand is not None:
        if session is not None:
            raise click.UsageError("-s ID without a command opens the TUI; give -s after it")
        return
    if session is None:
        click.echo(ctx.get_help())
        return
    assert isinstance(ctx.command, click.Group)  # noqa: S101  an invariant for mypy, not a check
    tui = ctx.command.get_command(ctx, "tui")
    assert tui is not None  # noqa: S101  an invariant for mypy, not a check
    ctx.invoke(tui, session=session)


def main() -> None:
    """Entry point of the ``openpista`` console script."""
    cli(prog_name="openpista")
