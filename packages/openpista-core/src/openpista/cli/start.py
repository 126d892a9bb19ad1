"""``openpista start`` and ``openpista status``: the daemon."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

import click

from openpista.cli.main import CliState, fail

if TYPE_CHECKING:
    from openpista.gateway.daemon import DaemonState


@click.command()
@click.option(
    "--no-terminal",
    is_flag=True,
    help="Do not read messages from this terminal (serve only the other channels).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log what the daemon does (to stderr).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Log lines as text or one JSON object each (default: [logging] format).",
)
@click.pass_obj
def start(state: CliState, no_terminal: bool, verbose: bool, log_format: str | None) -> None:
    """Run the agent daemon: every enabled channel, cron, until Ctrl-C or SIGTERM.

    The terminal channel reads messages from standard input (also from a pipe) and answers
    on standard output; /quit ends it, and the daemon too when it is the only channel.
    Only one daemon runs at a time (PID file: [gateway] pid_file).

    \b
    Examples:
      openpista start
      printf 'what time is it?\\n' | openpista start
      openpista start --no-terminal      # with Telegram, web, ... enabled
    """
    from openpista import collector

    collector.pause()  # until the daemon serves (gateway.daemon resumes it)
    try:
        from openpista.cli.database import database_problem
        from openpista.gateway.daemon import DaemonRunningError, serve
        from openpista.memory import MemoryStoreError
        from openpista.observability.logs import setup_logging

        settings = state.settings()
        level = logging.INFO if verbose else logging.WARNING
        setup_logging(settings, level=level, log_format=log_format)  # type: ignore[arg-type]
        try:
            code = asyncio.run(serve(settings, terminal=not no_terminal))
        except DaemonRunningError as exc:
            fail(str(exc))
        except MemoryStoreError as exc:
            fail(database_problem(exc, settings.database.url) or str(exc))
        except Exception as exc:  # a clear last word instead of a trace
            fail(f"{type(exc).__name__}: {exc}")
    finally:
        collector.resume()  # (done once it serves; here when it never did)
    sys.exit(code)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option(
    "--cluster",
    is_flag=True,
    help="List the replicas on the [database] PostgreSQL, their leases and load instead.",
)
@click.pass_obj
def status(state: CliState, as_json: bool, cluster: bool) -> None:
    """Tell whether the daemon runs: PID, uptime, serving channels, the addresses it
    listens on, and whether it is ready (its provider warmed up). The running daemon
    answers through its control socket; --no-daemon (before `status`) reads its PID file.

    With --cluster: every replica connected to the shared PostgreSQL, the roles it leads
    (cron, Telegram polling, ...), the sessions whose turn runs on it now, and how many
    events wait in the inbox (docs/scale-out.md).

    Exits 0 when it runs (with --cluster: when a replica runs) and 3 when it does not.
    """
    if cluster:
        cluster_status(state, as_json)
    client = state.daemon()
    if client is None:
        from openpista.gateway.daemon import PidFile

        info = status_info(PidFile(state.settings().gateway.pid_file).state())
    else:
        from openpista.control.client import DaemonError

        try:
            info = client.request({"type": "status"})
        except DaemonError as exc:
            fail(str(exc))
        finally:
            client.close()
    if as_json:
        click.echo(json.dumps(info))
    elif not info["running"]:
        click.echo("openpista is not running (start it with `openpista start`).")
    else:
        click.echo(
            f"openpista is running: PID {info['pid']}, up {_duration(info['uptime'])}, "
            f"channels: {', '.join(info['channels']) or 'none'}, "
            f"{'ready' if info['ready'] else 'warming up'}"
        )
        for item in info["listeners"]:
            click.echo(f"  {item['name']}: {item['url']}")
    sys.exit(0 if info["running"] else 3)


def cluster_status(state: CliState, as_json: bool) -> None:
    """``status --cluster``: the replicas, one line each, and the inbox's depth (or JSON);
    exits 0, 3 with no replica."""
    from dataclasses import asdict

    from openpista.cluster import ClusterError, cluster_overview

    try:
        overview = asyncio.run(cluster_overview(state.settings()))
    except ClusterError as exc:
        fail(str(exc))
    replicas = overview.replicas
    if as_json:
        click.echo(json.dumps(asdict(overview)))
    elif not replicas:
        click.echo("no openpista replica is connected to the cluster's database.")
    for replica in [] if as_json else replicas:
        roles = f", leads: {', '.join(replica.roles)}" if replica.roles else ""
        click.echo(
            f"{replica.replica_id}: from {replica.address} since {replica.since}, "
            f"{len(replica.sessions)} turn(s) running{roles}"
        )
        for session_id in replica.sessions:
            click.echo(f"  lease: {session_id}")
    if not as_json and (replicas or overview.waiting):
        click.echo(f"inbox: {overview.waiting} event(s) waiting")
    sys.exit(0 if replicas else 3)


def status_info(running: DaemonState | None) -> dict[str, Any]:
    """What ``status --json`` prints about ``running`` (``None``: no daemon runs); also
    the daemon's answer to a ``status`` request on its control socket."""
    if running is None:
        return {"running": False}
    return {
        "running": True,
        "pid": running.pid,
        "uptime": round(running.uptime, 1),
        "channels": running.channels,
        "ready": running.ready,
        "listeners": [{"name": item.name, "url": item.url} for item in running.listeners],
    }


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    units = ((days, "d"), (hours, "h"), (minutes, "m"))
    return " ".join([*(f"{n}{unit}" for n, unit in units if n), f"{secs}s"])
