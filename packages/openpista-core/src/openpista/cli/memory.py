"""``openpista memory``: people's notes, links between a person's identities, sessions as
files, and purging a person or a chat."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from openpista.cli.main import CliState, columns, fail
from openpista.cli.sessions import with_store

if TYPE_CHECKING:
    from openpista.memory import MemoryStore, Note


@click.group()
def memory() -> None:
    """What openpista remembers: the notes people asked it to keep (`show`, `edit`,
    `forget`), one person's identities on several channels (`link`, `unlink`), sessions as
    JSON or Markdown files (`export`, `import`), and deleting everything about a person or
    a chat (`purge`). PERSON is a sender on a kind of channel (telegram:7, web:alice): in a
    private chat, the chat's id."""


@memory.command()
@click.argument("person")
@click.option("--json", "as_json", is_flag=True, help="Print the notes as JSON.")
@click.pass_obj
def show(state: CliState, person: str, as_json: bool) -> None:
    """The notes of PERSON (and of the identities linked with it), newest first."""

    async def read(store: MemoryStore) -> tuple[list[Note], list[str]]:
        return await store.notes_of(person), await store.linked(person)

    notes, linked = with_store(state, read)
    if as_json:
        click.echo(json.dumps([note.as_dict() for note in notes], indent=2, ensure_ascii=False))
        return
    if linked:
        click.echo(f"{person} is linked with {', '.join(linked)}.")
    if not notes:
        click.echo(f"{person} has no notes.")
        return
    table = [("NOTE", "SINCE", "TEXT")]
    table += [(str(n.id), n.created_at.isoformat(timespec="seconds"), n.text) for n in notes]
    for line in columns(table):
        click.echo(line)


@memory.command()
@click.argument("person")
@click.option(
    "--set",
    "texts",
    metavar="TEXT",
    multiple=True,
    help="A note to keep, instead of editing (repeat for several).",
)
@click.option(
    "--from",
    "source",
    metavar="FILE",
    help="Read the notes from FILE (- for stdin), one per line, as the editor shows them.",
)
@click.pass_obj
def edit(state: CliState, person: str, texts: tuple[str, ...], source: str | None) -> None:
    """Edit the notes of PERSON (and of the identities linked with it) in $VISUAL or
    $EDITOR, one note per line; or set them with --set / --from. Every note is checked
    before anything is saved, then all are saved at once: unchanged notes keep their
    numbers, new ones become PERSON's."""
    from openpista.memory import MemoryStoreError
    from openpista.memory.notes import NOTES_BUDGET, notes_text, parse_notes_text

    if texts and source is not None:
        fail("give --set or --from, not both")
    try:
        if source is not None:
            notes = parse_notes_text(_read(source))
        elif texts:
            notes = list(texts)  # each checked by the store
        else:
            current = with_store(state, lambda store: _current(store, person))
            edited = _edit_in_editor(notes_text(*current))
            if edited is None:
                click.echo(f"no change to the notes of {person}")
                return
            notes = parse_notes_text(edited)
    except MemoryStoreError as exc:
        fail(f"the notes were not saved: {exc}")
    done = with_store(state, lambda store: store.replace_notes(person, notes))
    click.echo(
        f"✓ notes of {person}: {done.kept} kept, {done.added} added, {done.removed} forgotten"
    )
    if done.shown < done.kept + done.added:
        click.echo(
            f"⚠ only the newest {done.shown} fit in the system prompt ({NOTES_BUDGET} characters)"
        )


async def _current(store: MemoryStore, person: str) -> tuple[list[Note], list[str]]:
    """The notes of ``person`` and its identities, for :func:`notes_text`."""
    return await store.notes_of(person), [person, *await store.linked(person)]


def _read(source: str) -> str:
    """The text of ``source`` (``-``: stdin); :class:`MemoryStoreError` when unreadable."""
    from openpista.memory import MemoryStoreError

    try:
        if source == "-":
            return sys.stdin.read()
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise MemoryStoreError(f"cannot read {source}: {reason}") from None


def _edit_in_editor(text: str) -> str | None:
    """``text`` after the user's editor ($VISUAL, else $EDITOR, else vi) saved it, from a
    file only they can read; ``None`` when they left it unchanged."""
    command = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory(prefix="openpista-notes-") as folder:
        path = Path(folder) / "notes.txt"
        path.write_text(text, encoding="utf-8")
        try:
            # The user's own editor setting, run as they would run it themselves.
            status = subprocess.call([*shlex.split(command), str(path)])  # noqa: S603  own editor
        except (OSError, ValueError) as exc:
            fail(f"cannot run the editor {command!r}: {exc}")
        if status != 0:
            fail(f"the editor {command!r} exited with status {status}: the notes were not saved")
        edited = _read(str(path))
    return None if edited == text else edited


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
@click.argument("first", metavar="PERSON")
@click.argument("second", metavar="OTHER")
@click.pass_obj
def link(state: CliState, first: str, second: str) -> None:
    """Make PERSON and OTHER (e.g. telegram:1 web:alice) one person: the notes and the
    conversations of either are theirs in both (memory.search, the system prompt). Only
    the owner links, here; nothing said in a chat can."""
    people = with_store(state, lambda store: store.link(first, second))
    click.echo(f"✓ linked {', '.join(people)}: one person")


@memory.command()
@click.argument("person")
@click.pass_obj
def unlink(state: CliState, person: str) -> None:
    """Make PERSON a person of its own again (its notes stay its own)."""
    others = with_store(state, lambda store: store.unlink(person))
    if not others:
        fail(f"{person} is not linked with anyone")
    click.echo(f"✓ unlinked {person} from {', '.join(others)}")


@memory.command()
@click.argument("target", metavar="PERSON_OR_CHAT")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def purge(state: CliState, target: str, yes: bool) -> None:
    """Delete everything stored about a person or a chat (telegram:123): their notes and
    links, the sessions only they took part in, their chat bindings, and what they said in
    conversations shared with others (the rest of those stays). Refused while the daemon
    runs: stop it first."""
    if state.daemon() is not None:
        fail("the daemon is running: stop it first (its chats may be writing meanwhile)")
    if not yes:
        click.confirm(f"Delete everything stored about {target}?", abort=True)
    purged = with_store(state, lambda store: store.purge(target))
    click.echo(
        f"✓ purged {target}: {_count(purged.sessions, 'session')}, "
        f"{_count(purged.notes, 'note')}, {_count(purged.messages, 'message')} in shared sessions"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


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
