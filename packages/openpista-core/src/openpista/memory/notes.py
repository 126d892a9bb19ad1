"""Long-term notes: what a person asked the agent to remember (revision ``0006``).

Notes belong to one person (``telegram:123``, see :mod:`openpista.memory.people`): the
agent adds the asking person's notes to its system prompt, newest first, within a
character budget (:func:`notes_prompt`), and its ``memory.*`` tools only ever touch the
asking person's notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


def select_notes(conn: Connection, person: str) -> list[Note]:
    """``person``'s notes, newest first."""
    rows = conn.execute(
        select(NoteRow.id, NoteRow.person, NoteRow.text, NoteRow.created_at)
        .where(NoteRow.person == person)
        .order_by(NoteRow.id.desc())
    )
    return [Note(id=int(r.id), person=r.person, text=r.text, created_at=r.created_at) for r in rows]


def delete_notes(conn: Connection, person: str, note_id: int | None) -> int:
    """Delete ``person``'s note ``note_id`` (``None``: all of them); how many went."""
    statement = delete(NoteRow).where(NoteRow.person == person)
    if note_id is not None:
        statement = statement.where(NoteRow.id == note_id)
    return int(conn.execute(statement).rowcount)


def notes_prompt(notes: list[Note], budget: int = NOTES_BUDGET) -> str:
    """The system-prompt text for ``notes`` (newest first): as many whole notes as fit in
    ``budget`` characters, oldest of them first; empty without notes."""
    lines: list[str] = []
    used = 0
    for note in notes:
        line = f"- [{note.id}] {note.text}"
        if used + len(line) + 1 > budget:
            break
        lines.append(line)
        used += len(line) + 1
    if not lines:
        return ""
    return (
        "Notes this person asked you to remember (memory.forget removes one by its number):\n"
        + "\n".join(reversed(lines))
    )
