"""Long-term notes: what a person asked the agent to remember (revision ``0006``).

Notes belong to one person (``telegram:123``, see :mod:`openpista.memory.people`): the
agent adds the asking person's notes to its system prompt, newest first, within a
character budget (:func:`notes_prompt`), and its ``memory.*`` tools only ever touch the
asking person's notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Index, String, Text, delete, func, insert, select

from openpista.memory.checks import MemoryStoreError, check_text
from openpista.memory.people import PERSON_MAX_LENGTH
from openpista.memory.tables import Base, Mapped, MessageId, UTCDateTime, mapped_column

NOTE_MAX_LENGTH = 1000
"""Longest note, in characters."""
NOTES_PER_PERSON = 200
"""Most notes one person may keep."""
NOTES_BUDGET = 2000
"""Characters of notes the system prompt gets at most (the newest notes that fit)."""
NOTES_FILE_MAX_LENGTH = 1_000_000
"""Longest text :func:`parse_notes_text` reads, in characters."""


class NoteRow(Base):
    """One note of one person; ``id`` gives the order."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(MessageId, primary_key=True, autoincrement=True)
    person: Mapped[str] = mapped_column(String(PERSON_MAX_LENGTH), nullable=False)
    text: Mapped[str] = mapped_column(Text(), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (Index("ix_notes_person_id", "person", "id"),)


@dataclass(frozen=True, slots=True)
class Note:
    """A stored note."""

    id: int
    person: str
    text: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """The note as JSON-ready values."""
        return {
            "id": self.id,
            "person": self.person,
            "text": self.text,
            "created_at": self.created_at.isoformat(),
        }


def check_note(note: object) -> str:
    """``note`` stripped, if it is storable note text."""
    if not isinstance(note, str):
        raise MemoryStoreError(f"a note is text, not {type(note).__name__}")
    stripped = " ".join(note.split())
    if not stripped:
        raise MemoryStoreError("a note must not be empty")
    if len(stripped) > NOTE_MAX_LENGTH:
        raise MemoryStoreError(
            f"the note is {len(stripped)} characters long; the limit is {NOTE_MAX_LENGTH}"
        )
    check_text(stripped, "the note")
    return stripped


def insert_note(conn: Connection, person: str, note: str, now: datetime) -> Note:
    """Add ``note`` to ``person``'s notes; refused beyond :data:`NOTES_PER_PERSON`."""
    count = conn.scalar(select(func.count(NoteRow.id)).where(NoteRow.person == person)) or 0
    if count >= NOTES_PER_PERSON:
        raise MemoryStoreError(
            f"{person} keeps {count} notes already (the limit); forget some first"
        )
    new_id = conn.execute(
        insert(NoteRow).values(person=person, text=note, created_at=now).returning(NoteRow.id)
    ).scalar_one()
    return Note(id=int(new_id), person=person, text=note, created_at=now)


def select_notes(conn: Connection, identities: Sequence[str]) -> list[Note]:
    """The notes of ``identities`` (one person's), newest first."""
    rows = conn.execute(
        select(NoteRow.id, NoteRow.person, NoteRow.text, NoteRow.created_at)
        .where(NoteRow.person.in_(list(identities)))
        .order_by(NoteRow.id.desc())
    )
    return [Note(id=int(r.id), person=r.person, text=r.text, created_at=r.created_at) for r in rows]


def delete_notes(conn: Connection, identities: Sequence[str], note_id: int | None) -> int:
    """Delete the note ``note_id`` of ``identities`` (``None``: all of theirs); how many
    went."""
    statement = delete(NoteRow).where(NoteRow.person.in_(list(identities)))
    if note_id is not None:
        statement = statement.where(NoteRow.id == note_id)
    return int(conn.execute(statement).rowcount)


def notes_prompt(notes: list[Note], budget: int = NOTES_BUDGET) -> str:
    """The system-prompt text for ``notes`` (newest first): as many whole notes as fit in
    ``budget`` characters, oldest of them first; empty without notes."""
    lines = _prompt_lines(notes, budget)
    if not lines:
        return ""
    return (
        "Notes this person asked you to remember (memory.forget removes one by its number):\n"
        + "\n".join(reversed(lines))
    )


def _prompt_lines(notes: list[Note], budget: int) -> list[str]:
    """The prompt lines of the newest ``notes`` that fit in ``budget``, newest first."""
    lines: list[str] = []
    used = 0
    for note in notes:
        line = f"- [{note.id}] {note.text}"
        if used + len(line) + 1 > budget:
            break
        lines.append(line)
        used += len(line) + 1
    return lines


class NotesEdit(NamedTuple):
    """What :func:`replace_notes` did: notes kept as they were, added, and deleted; and
    how many of the notes fit the system prompt (:data:`NOTES_BUDGET`)."""

    kept: int
    added: int
    removed: int
    shown: int


def replace_notes(
    conn: Connection, person: str, identities: Sequence[str], texts: list[str], now: datetime
) -> NotesEdit:
    """Make ``texts`` (checked notes, oldest first) the notes of ``identities`` (one
    person's): a note whose text is unchanged keeps its number and time, the others are
    deleted, new texts are added as ``person``'s notes, in order."""
    if len(texts) > NOTES_PER_PERSON:
        raise MemoryStoreError(f"{len(texts)} notes; a person keeps at most {NOTES_PER_PERSON}")
    unused: dict[str, list[int]] = {}
    for note in reversed(select_notes(conn, identities)):  # oldest first
        unused.setdefault(note.text, []).append(note.id)
    kept: list[int] = []
    added: list[str] = []
    for text in texts:
        if unused.get(text):
            kept.append(unused[text].pop(0))
        else:
            added.append(text)
    gone = [note_id for ids in unused.values() for note_id in ids]
    if gone:
        conn.execute(delete(NoteRow).where(NoteRow.id.in_(gone)))
    if added:
        conn.execute(
            insert(NoteRow), [{"person": person, "text": t, "created_at": now} for t in added]
        )
    shown = len(_prompt_lines(select_notes(conn, identities), NOTES_BUDGET))
    return NotesEdit(len(kept), len(added), len(gone), shown)


_NOTES_HEADER = """\
# The notes of {people}: one note per line, oldest first. Save and quit to store them.
# Delete a line to forget that note; add a line to remember a new one. Lines that start
# with # are ignored (start a note with \\# to keep its #); an empty file forgets them all.
# At most {count} notes of {length} characters; the system prompt shows the newest
# that fit in {budget} characters.
"""


def notes_text(notes: list[Note], identities: Sequence[str]) -> str:
    """``notes`` (newest first) as the text ``openpista memory edit`` opens in an editor:
    a commented header, then one note per line, oldest first."""
    header = _NOTES_HEADER.format(
        people=", ".join(identities),
        count=NOTES_PER_PERSON,
        length=NOTE_MAX_LENGTH,
        budget=NOTES_BUDGET,
    )
    lines = ["\\" + n.text if n.text.startswith(("#", "\\")) else n.text for n in notes]
    return header + "".join(line + "\n" for line in reversed(lines))


def parse_notes_text(text: str) -> list[str]:
    """The notes in ``text`` (as :func:`notes_text` writes it), each checked; raises
    :class:`MemoryStoreError` naming the first bad line."""
    if len(text) > NOTES_FILE_MAX_LENGTH:
        raise MemoryStoreError(
            f"the notes are {len(text)} characters long; the limit is {NOTES_FILE_MAX_LENGTH}"
        )
    notes: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("#") or not line.strip():
            continue
        try:
            notes.append(check_note(line[1:] if line.startswith("\\") else line))
        except MemoryStoreError as exc:
            raise MemoryStoreError(f"line {number}: {exc}") from None
    if len(notes) > NOTES_PER_PERSON:
        raise MemoryStoreError(f"{len(notes)} notes; a person keeps at most {NOTES_PER_PERSON}")
    return notes
