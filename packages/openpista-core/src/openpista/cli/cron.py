"""``openpista cron``: the scheduled messages of the ``[[cron]]`` config entries."""

from __future__ import annotations

import json

import click

from openpista.cli.main import CliState, fail

MESSAGE_WIDTH = 60


def _clip(text: str, limit: int = MESSAGE_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@click.group()
def cron() -> None:
    """Scheduled messages ([[cron]] entries of the config)."""


@cron.command("list")
@click.option(
    "-n",
    "--count",
    default=1,
    show_default=True,
    type=click.IntRange(1, 100),
    help="How many next run times to show per entry.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@click.pass_obj
def list_(state: CliState, count: int, as_json: bool) -> None:
    """Show each scheduled message and its next run times (local time).

    The index (#0, #1, ...) is the entry's position in the config file.
    """
    from datetime import UTC, datetime

    from openpista.config import ConfigError
    from openpista.scheduler import entry_label, next_runs, validate_cron

    settings = state.settings()
    entries = settings.cron
    try:
        validate_cron(entries)
    except ConfigError as exc:
        where = f"{settings.source_path}: " if settings.source_path else ""
        fail(f"{where}{exc}")
    runs = next_runs(entries, datetime.now(UTC), count)
    rows = [
        {
            "index": index,
            "name": entry.name,
            "schedule": entry.schedule,
            "channel": entry.channel,
            "message": entry.message,
            "enabled": entry.enabled,
            "next_runs": [t.isoformat(timespec="seconds") for t in times],
        }
        for index, (entry, times) in enumerate(runs)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(
            "No scheduled messages. Add a [[cron]] entry to the config file "
            "(see the [[cron]] section of config.example.toml and docs/cron.md)."
        )
        return
    for index, (entry, times) in enumerate(runs):
        state_note = "" if entry.enabled else "  (disabled)"
        click.echo(
            f"{entry_label(entry, index)}  [{entry.schedule}]  -> {entry.channel}{state_note}"
        )
        click.echo(f"    message: {_clip(entry.message)}")
        label = "next run" if entry.enabled else "would run"
        for moment in times:
            click.echo(f"    {label}: {moment.strftime('%Y-%m-%d %H:%M:%S %Z')}".rstrip())
