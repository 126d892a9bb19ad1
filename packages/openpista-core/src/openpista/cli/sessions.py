"""``openpista sessions``: the stored conversations."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from openpista.cli.main import CliState, columns, fail

if TYPE_CHECKING:
    from openpista.memory import MemoryStore

T = TypeVar("T")


@click.group(invoke_without_command=True)
@click.option("-n", "--limit", default=20, show_default=True, help="How many sessions to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
def sessions(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List stored sessions, most recently active first, with the chats bound to each
    (channel ids such as telegram:42; '-' for sessions of `openpista run`).

    Continue one with `openpista run -s ID -e "..."`. With a daemon running, it answers.
    `openpista sessions decisions ID` shows a session's tool-policy audit trail,
    `openpista sessions delete ID` deletes one, `openpista sessions search WORDS` finds
    messages, `openpista sessions embed` makes the vectors of semantic search.
    """
    if ctx.invoked_subcommand is not None:
        return
    state: CliState = ctx.obj
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


@sessions.command()
@click.argument("session_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
@click.pass_obj
def decisions(state: CliState, session_id: str, as_json: bool) -> None:
    """The tool-policy decisions of session ID, oldest first: each tool call, whether it
    ran, and who decided (the policy, the user's /approve or /deny, or the timeout)."""
    rows = with_store(state, lambda store: _decision_rows(store, session_id))
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(f"Session {session_id} has no tool decisions.")
        return
    table = [("WHEN", "CHAT", "TOOL", "ACTION", "BY", "DETAIL")]
    table += [
        (r["created_at"], r["channel_id"], r["tool"], r["action"], r["decided_by"], r["detail"])
        for r in rows
    ]
    for line in columns(table):
        click.echo(line)


@sessions.command()
@click.argument("session_id", metavar="ID")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def delete(state: CliState, session_id: str, yes: bool) -> None:
    """Delete session ID with its messages, chat bindings and decisions (a chat bound to it
    starts a new session with its next message). Refused while the daemon runs: stop it
    first, so that no chat it serves writes to the session meanwhile."""
    if state.daemon() is not None:
        fail("the daemon is running: stop it first (its chats may be writing to the session)")
    if not yes:
        click.confirm(f"Delete session {session_id} and all its messages?", abort=True)
    deleted = with_store(state, lambda store: store.delete_session(session_id))
    if not deleted:
        fail(f"no session {session_id!r}; `openpista sessions` lists them")
    click.echo(f"✓ deleted session {session_id}")


@sessions.command()
@click.argument("words", nargs=-1, required=True)
@click.option("--session", "session_id", metavar="ID", help="Only in session ID.")
@click.option("--chat", "channel_id", metavar="CHAT", help="Only in the sessions of CHAT.")
@click.option("--person", metavar="PERSON", help="Only in the sessions PERSON spoke in.")
@click.option("-n", "--limit", default=20, show_default=True, help="How many messages to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the messages as JSON.")
@click.pass_obj
def search(
    state: CliState,
    words: tuple[str, ...],
    session_id: str | None,
    channel_id: str | None,
    person: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Find the stored messages holding every one of WORDS (taken literally, case aside),
    most relevant first, with a snippet: `openpista sessions search dentist tuesday`.
    CHAT is a chat's id (telegram:42), PERSON a sender on a kind of channel (telegram:7).
    With semantic search on ([memory.embeddings]), also the messages nearest in meaning."""
    from openpista.memory import SearchScope

    scope = SearchScope(session_id=session_id, channel_id=channel_id, person=person)
    hits = _with_semantic_store(state, lambda store: store.search(" ".join(words), scope, limit))
    if as_json:
        click.echo(json.dumps([hit.as_dict() for hit in hits], indent=2, ensure_ascii=False))
        return
    if not hits:
        click.echo(f"No stored message holds: {' '.join(words)}")
        return
    table = [("WHEN", "SESSION", "ROLE", "MESSAGE")]
    table += [
        (hit.created_at.isoformat(timespec="seconds"), hit.session_id, hit.role, hit.snippet)
        for hit in hits
    ]
    for line in columns(table):
        click.echo(line)


@sessions.command()
@click.pass_obj
def embed(state: CliState) -> None:
    """Embed every stored message that has no vector by the [memory.embeddings] model yet
    (messages stored before semantic search was turned on, or while the provider was
    down), showing progress. Safe while the daemon runs."""
    from openpista.providers.base import ProviderError
    from openpista.providers.embedder import semantic_search_configured

    if not semantic_search_configured(state.settings()):
        fail("semantic search is off: set [memory.embeddings] model (docs/memory.md)")

    def shown(done: int, total: int) -> None:
        click.echo(f"embedded {done}/{total} messages")

    async def work(store: MemoryStore) -> tuple[str, int]:
        indexer = store.embeddings
        assert indexer is not None, "_with_semantic_store(required=True) fails without it"  # noqa: S101  an invariant for mypy
        try:
            return indexer.embedder.model, await indexer.index(shown)
        except ProviderError as exc:
            fail(f"embedding failed (run it again to go on): {exc}")
        raise AssertionError("not reached: fail() exits")

    model, count = _with_semantic_store(state, work, required=True)
    click.echo(f"✓ {count} message(s) embedded with {model}; every message has its vector")


def _with_semantic_store(
    state: CliState, work: Callable[[MemoryStore], Awaitable[T]], *, required: bool = False
) -> T:
    """:func:`with_store` with semantic search on as ``[memory.embeddings]`` says; a
    problem building the embedder is one ❌ line, then the search is full-text only (or,
    ``required``, the command fails)."""
    from openpista.cli.database import on_database
    from openpista.memory import MemoryStore

    settings = state.settings()

    async def open_(url: str) -> MemoryStore:
        store = await MemoryStore.open(url)
        from openpista.providers.embedder import (
            enable_semantic_search,
            semantic_search_configured,
        )

        if semantic_search_configured(settings):
            from openpista.plugins import PluginHost
            from openpista.runtime import build_providers

            registry = build_providers(PluginHost.load())
            problem = enable_semantic_search(store, settings, registry)
            if problem is not None:
                if required:
                    await store.close()
                    fail(problem)
                click.echo(problem, err=True)
        return store

    return on_database(state, open_, work)


async def _decision_rows(store: MemoryStore, session_id: str) -> list[dict[str, Any]]:
    return [
        {
            "created_at": d.created_at.isoformat(timespec="seconds"),
            "channel_id": d.channel_id,
            "tool": d.tool,
            "arguments": d.arguments,
            "action": d.action,
            "decided_by": d.decided_by,
            "detail": d.detail,
        }
        for d in await store.list_decisions(session_id)
    ]


def _stored_rows(state: CliState, limit: int) -> list[dict[str, Any]]:
    return with_store(state, lambda store: session_rows(store, limit))


def with_store(state: CliState, work: Callable[[MemoryStore], Awaitable[T]]) -> T:
    """``work(store)`` on the configured database; a store error is one ❌ line."""
    from openpista.cli.database import on_database
    from openpista.memory import MemoryStore

    return on_database(state, MemoryStore.open, work)
