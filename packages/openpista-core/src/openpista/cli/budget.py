"""``openpista budget``: show the spending caps, raise or lower one while the daemon runs.

With a daemon running, the request goes through its control socket and applies from its
next LLM request on (a chat stopped by the budget goes on, no restart); without one, the
database is changed and the next start applies it. Either way the cap is stored: a restart
keeps it, ``openpista budget unset`` goes back to ``[budget]``.
"""

from __future__ import annotations

import json
from typing import Any

import click

from openpista.cli.main import CliState, fail


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the caps as JSON.")
@click.pass_context
def budget(ctx: click.Context, as_json: bool) -> None:
    """Show the spending caps in force ([budget], and those set here) and today's spend.

    \b
    Examples:
      openpista budget
      openpista budget set --daily 10
      openpista budget set --session 3f2a... 2.5
      openpista budget unset --daily
    """
    if ctx.invoked_subcommand is None:
        _show(ctx.obj, _request(ctx.obj, {"type": "budget"}), as_json)


@budget.command("set")
@click.option("--daily", "daily", type=float, metavar="USD", help="Every session, per UTC day.")
@click.option("--session", "session", nargs=2, metavar="ID USD", help="One session's cap.")
@click.pass_obj
def set_budget(state: CliState, daily: float | None, session: tuple[str, str] | None) -> None:
    """Set the daily cap or one session's, over [budget] (stored: a restart keeps it)."""
    if (daily is None) == (session is None):
        fail("give --daily USD or --session ID USD", code=2)
    if session is not None:
        try:
            usd = float(session[1])
        except ValueError:
            fail(f"--session ID USD: {session[1]!r} is not a number of USD", code=2)
        frame: dict[str, Any] = {"type": "budget", "session": session[0], "usd": usd}
    else:
        frame = {"type": "budget", "daily": daily}
    _show(state, _request(state, frame), as_json=False)


@budget.command("unset")
@click.option("--daily", is_flag=True, help="Back to [budget] daily_usd.")
@click.option("--session", metavar="ID", help="Back to [budget] per_session_usd.")
@click.pass_obj
def unset_budget(state: CliState, daily: bool, session: str | None) -> None:
    """Remove a cap set with `openpista budget set`: [budget] applies again."""
    if daily == (session is not None):
        fail("give --daily or --session ID", code=2)
    frame: dict[str, Any] = (
        {"type": "budget", "daily": None}
        if daily
        else {"type": "budget", "session": session, "usd": None}
    )
    _show(state, _request(state, frame), as_json=False)


def _request(state: CliState, frame: dict[str, Any]) -> dict[str, Any]:
    """The daemon's answer to ``frame``, or the same request answered in-process."""
    client = state.daemon()
    if client is None:
        return _in_process(state, frame)
    from openpista.control.client import DaemonError

    try:
        data: dict[str, Any] = client.request(frame)
    except DaemonError as exc:
        fail(str(exc))
    finally:
        client.close()
    return data


def _in_process(state: CliState, frame: dict[str, Any]) -> dict[str, Any]:
    from openpista.cli.sessions import with_store
    from openpista.control.budget import budget_request
    from openpista.control.chat import BadRequest
    from openpista.memory import MemoryStore
    from openpista.observability.usage import UsageMeter

    settings = state.settings()

    async def work(store: MemoryStore) -> dict[str, Any]:
        try:
            reply = await budget_request(UsageMeter(store, settings.budget), frame)
        except BadRequest as exc:
            fail(f"budget: {exc}", code=2)
        data: dict[str, Any] = reply["data"]
        return data

    return with_store(state, work)


def _show(state: CliState, report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    daily = report["daily"]
    source = "set with `openpista budget set`" if daily["set"] else "[budget] daily_usd"
    cap = f"${daily['usd']:g} ({source})" if daily["usd"] is not None else "none"
    click.echo(f"daily: {cap}, spent today (UTC) ${daily['spent_today']:.4f}")
    per_session = report["per_session_usd"]
    shown = f"${per_session:g} ([budget] per_session_usd)" if per_session is not None else "none"
    click.echo(f"per session: {shown}")
    for row in report["sessions"]:
        click.echo(f"session {row['session']}: ${row['usd']:g} (set), spent ${row['spent']:.4f}")
