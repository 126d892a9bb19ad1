"""``openpista usage``: tokens and cost of the stored LLM responses."""

from __future__ import annotations

import json

import click

from openpista.cli.main import CliState, columns, fail
from openpista.cli.sessions import with_store


@click.command()
@click.option("--session", "session_id", metavar="ID", help="Only this session.")
@click.option("--channel", metavar="C", help="Only this channel (telegram) or chat (telegram:42).")
@click.option("--since", metavar="AGE", help="Only since then: 30m, 12h, 7d, 2w or today.")
@click.option("--json", "as_json", is_flag=True, help="Print the totals as JSON.")
@click.pass_obj
def usage(
    state: CliState, session_id: str | None, channel: str | None, since: str | None, as_json: bool
) -> None:
    """Tokens and cost of the LLM responses, per provider and model, costliest first.

    Costs come from litellm's local price map, or [budget.prices] in the config; responses
    of a model with no known price are counted as unpriced. Days are UTC.

    \b
    Examples:
      openpista usage --since today
      openpista usage --channel telegram --since 7d --json
    """
    from openpista.memory.usage import UsageFilter
    from openpista.observability.report import parse_since, totals_table

    try:
        start = parse_since(since) if since is not None else None
    except ValueError as exc:
        fail(str(exc), code=2)
    where = UsageFilter(since=start, session_id=session_id, channel=channel)
    totals = with_store(state, lambda store: store.usage_totals(where))
    if as_json:
        report = {
            "since": start.isoformat(timespec="seconds") if start else None,
            "session": session_id,
            "channel": channel,
            "models": [t.as_dict() for t in totals],
        }
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    if not totals:
        click.echo("No LLM usage recorded for this selection.")
        return
    for line in columns(totals_table(totals)):
        click.echo(line)
