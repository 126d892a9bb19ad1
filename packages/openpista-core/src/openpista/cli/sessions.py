"""``openpista sessions``: the stored conversations."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from openpista.cli.main import CliState, columns, fail

if TYPE_CHECKING:
    from openpista.memory import MemoryStore


@click.command()
@click.option("-n", "--limit", default=20, show_default=True, help="How many sessions to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_obj
def sessions(state: CliState, limit: int, as_json: bool) -> None:
    """List stored sessions, most recently active first, with the chats bound to each
    (channel ids such as telegram:42; '-' for sessions of `openpista run`).

    Continue one with `openpista run -s ID -e "..."`. With a daemon running, it answers.
    """
    client = state.daemon()
    if client is None:
        rows = _stored_rows(state, limit)
    else:
        from openpista.control.client import DaemonError

        try:
            rows = client.request({"type": "sessions", "limit": limit})
        except DaemonError as exc:
            fail(str(exc))
        finally:
            client.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo('No sessions yet. Start one with: openpista run -e "hello"')
        return
    table = [("SESSION", "CHAT", "UPDATED", "MESSAGES", "TITLE")]
    table += [
        (
            row["id"],
            ", ".join(row["channels"]) or "-",
            row["updated_at"],
            str(row["messages"]),
            row["title"] or "",
        )
        for row in rows
    ]
    for line in columns(table):
        click.echo(line)


async def session_rows(store: MemoryStore, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` sessions of ``store`` as the rows the command
    shows (also the daemon's answer to a ``sessions`` request on its control socket)."""
    found = await store.list_sessions(limit=limit)
    chats = await store.channels_of([s.id for s in found])
    return [
        {
            "id": s.id,
            "channels": chats.get(s.id, []),
            "title": s.title,
            "messages": s.message_count,
            "updated_at": s.updated_at.isoformat(timespec="seconds"),
        }
        for s in found
    ]


def _stored_rows(state: CliState, limit: int) -> list[dict[str, Any]]:
    import asyncio

    from openpista.cli.database import database_problem
    from openpista.memory import MemoryStore, MemoryStoreError

    settings = state.settings()

    async def fetch() -> list[dict[str, Any]]:
        store = await MemoryStore.open(settings.database.url)
        try:
            return await session_rows(store, limit)
        finally:
            await store.close()

    try:
        return asyncio.run(fetch())
    except MemoryStoreError as exc:
        fail(database_problem(exc, settings.database.url) or str(exc))
    return []  # not reached: fail() exits
