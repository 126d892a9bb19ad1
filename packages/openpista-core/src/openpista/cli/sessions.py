"""``openpista sessions``: the stored conversations."""

from __future__ import annotations

import asyncio
import json

import click

from openpista.cli.main import CliState, fail


@click.command()
@click.option("-n", "--limit", default=20, show_default=True, help="How many sessions to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_obj
def sessions(state: CliState, limit: int, as_json: bool) -> None:
    """List stored sessions, most recently active first.

    Continue one with `openpista run -s ID -e "..."`.
    """
    from openpista.cli.database import database_problem
    from openpista.memory.store import MemoryStore, MemoryStoreError

    settings = state.settings()

    async def fetch() -> list[dict[str, object]]:
        store = await MemoryStore.open(settings.database.url)
        try:
            found = await store.list_sessions(limit=limit)
        finally:
            await store.close()
        return [
            {
                "id": s.id,
                "title": s.title,
                "messages": s.message_count,
                "updated_at": s.updated_at.isoformat(timespec="seconds"),
            }
            for s in found
        ]

    try:
        rows = asyncio.run(fetch())
    except MemoryStoreError as exc:
        fail(database_problem(exc, settings.database.url) or str(exc))
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo('No sessions yet. Start one with: openpista run -e "hello"')
        return
    for row in rows:
        title = f"  {row['title']}" if row["title"] else ""
        click.echo(f"{row['id']}  {row['updated_at']}  {row['messages']:>4} messages{title}")
