"""``openpista memory``: people's notes, sessions as files, and purging a person or a chat."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from openpista.cli.main import CliState, columns, fail
from openpista.cli.sessions import with_store


@click.group()
def memory() -> None:
    """What openpista remembers: the notes people asked it to keep (`show`, `forget`),
    sessions as JSON or Markdown files (`export`, `import`), and deleting everything about
    a person or a chat (`purge`). PERSON is a sender on a kind of channel (telegram:7,
    web:alice): in a private chat, the chat's id."""


@memory.command()
@click.argument("person")
@click.option("--json", "as_json", is_flag=True, help="Print the notes as JSON.")
@click.pass_obj
def show(state: CliState, person: str, as_json: bool) -> None:
    """The notes of PERSON, newest first."""
    notes = with_store(state, lambda store: store.notes_of(person))
    if as_json:
        click.echo(json.dumps([note.as_dict() for note in notes], indent=2, ensure_ascii=False))
        return
    if not notes:
        click.echo(f"{person} has no notes.")
        return
    table = [("NOTE", "SINCE", "TEXT")]
    table += [(str(n.id), n.created_at.isoformat(timespec="seconds"), n.text) for n in notes]
    for line in columns(table):
        click.echo(line)


@memory.command()
@click.argument("person")
@click.argument("note_id", metavar="[NOTE]", type=int, required=False)
@click.option("--all", "every", is_flag=True, help="Forget every note of PERSON.")
@click.pass_obj
def forget(state: CliState, person: str, note_id: int | None, every: bool) -> None:
    """Delete note NOTE of PERSON (numbers as `show` lists them), or all with --all."""
    if (note_id is None) == (not every):
        fail("give a note number or --all (not both)")
    deleted = with_store(state, lambda store: store.forget(person, note_id))
    if note_id is not None and not deleted:
        fail(f"{person} has no note {note_id}; `openpista memory show {person}` lists them")
    click.echo(f"✓ forgot {deleted} note{'' if deleted == 1 else 's'} of {person}")


@memory.command()
@click.argument("target", metavar="PERSON_OR_CHAT")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def purge(state: CliState, target: str, yes: bool) -> None:
    """Delete everything stored about a person or a chat (telegram:123): their notes, the
    sessions only they took part in, their chat bindings. What they said in a conversation
    shared with others stays in it. Refused while the daemon runs: stop it first."""
    if state.daemon() is not None:
        fail("the daemon is running: stop it first (its chats may be writing meanwhile)")
    if not yes:
        click.confirm(f"Delete everything stored about {target}?", abort=True)
    sessions, notes = with_store(state, lambda store: store.purge(target))
    click.echo(
        f"✓ purged {target}: {sessions} session{'' if sessions == 1 else 's'}, "
        f"{notes} note{'' if notes == 1 else 's'}"
    )


@memory.command()
@click.argument("session_id", metavar="ID")
@click.option("--markdown", is_flag=True, help="Markdown for people instead of JSON.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file."
)
@click.pass_obj
def export(state: CliState, session_id: str, markdown: bool, output: Path | None) -> None:
    """Write session ID with every message: JSON that `openpista memory import` reads back,
    or Markdown (--markdown) to read."""
    from openpista.memory.transfer import session_json, session_markdown

    document = with_store(state, lambda store: store.export_session(session_id))
    text = (
        session_markdown(document)
        if markdown
        else json.dumps(session_json(document), indent=2, ensure_ascii=False) + "\n"
    )
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    click.echo(f"✓ exported session {session_id} to {output}")


@memory.command("import")
@click.argument("file", metavar="FILE")
@click.option("--as", "session_id", metavar="ID", default="", help="Store it as session ID.")
@click.pass_obj
def import_(state: CliState, file: str, session_id: str) -> None:
    """Store the session in FILE (JSON from `openpista memory export`; - reads stdin) as a
    new session: its id, or ID with --as. An existing session is never overwritten."""
    from openpista.memory import MemoryStoreError
    from openpista.memory.transfer import read_session

    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        document = read_session(json.loads(text))
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    except (ValueError, MemoryStoreError) as exc:  # JSON, encoding or content
        fail(f"cannot import {file}: {exc}")
    stored = with_store(state, lambda store: store.import_session(document, session_id))
    click.echo(f"✓ imported session {stored} ({len(document.messages)} messages)")
