"""``openpista workers``: the history of worker tasks and their reports."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from openpista.cli.main import CliState, columns, fail

if TYPE_CHECKING:
    from openpista.memory import WorkerLog

T = TypeVar("T")
STATUSES = ("created", "running", "finished", "failed", "ended")


@click.group(invoke_without_command=True)
@click.option("--status", type=click.Choice(STATUSES), help="Only tasks with this status.")
@click.option("--since", help="Only tasks created since (ISO-8601 or Unix seconds).")
@click.option("-n", "--limit", default=50, show_default=True, help="How many tasks to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
def workers(
    ctx: click.Context, status: str | None, since: str | None, limit: int, as_json: bool
) -> None:
    """List worker tasks, newest first: status, duration, exit code, chat.

    `openpista workers show ID` prints one task with its reports and log lines.
    """
    if ctx.invoked_subcommand is not None:
        return
    from openpista.worker_api import parse_since

    try:
        since_at = parse_since(since) if since else None
    except ValueError as exc:
        fail(str(exc))
    rows = [
        task.public() for task in _with_log(ctx.obj, lambda log: log.tasks(status, since_at, limit))
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("No worker tasks yet.")
        return
    table = [("TASK", "STATUS", "CREATED", "DURATION", "EXIT", "CHAT")]
    table += [
        (
            row["task_id"],
            row["status"],
            row["created_at"][:19],
            "-" if row["duration"] is None else f"{row['duration']:.1f} s",
            "-" if row["exit_code"] is None else str(row["exit_code"]),
            row["channel_id"] or "-",
        )
        for row in rows
    ]
    for line in columns(table):
        click.echo(line)


@workers.command()
@click.argument("task_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON.")
@click.pass_obj
def show(state: CliState, task_id: str, as_json: bool) -> None:
    """One worker task with its reports and log lines."""
    from openpista.worker_api import task_detail

    found = _with_log(state, lambda log: log.task(task_id, reports=True))
    if found is None:
        fail(f"no worker task {task_id!r} (`openpista workers` lists them)")
        return
    detail = task_detail(found)
    if as_json:
        click.echo(json.dumps(detail, indent=2, ensure_ascii=False))
        return
    click.echo(_summary(detail))
    for line in detail["logs"]:
        click.echo(f"  {line}")
    final = [r for r in detail["reports"] if r["kind"] in ("finished", "failed")]
    if final and final[-1].get("output"):
        click.echo("--- output ---")
        click.echo(final[-1]["output"])


def _summary(detail: dict[str, Any]) -> str:
    exit_code = "-" if detail["exit_code"] is None else detail["exit_code"]
    return (
        f"task {detail['task_id']}: {detail['status']}, exit code {exit_code}, "
        f"{len(detail['reports'])} reports, chat {detail['channel_id'] or '-'}"
    )


def _with_log(state: CliState, work: Callable[[WorkerLog], Awaitable[T]]) -> T:
    """``work(log)`` on the configured database; a store error is one ❌ line."""
    from openpista.cli.database import on_database
    from openpista.memory import WorkerLog

    return on_database(state, WorkerLog.open, work)
