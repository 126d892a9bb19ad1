"""Who spoke in which session: a person is a sender on one kind of channel
(``telegram:123``, ``web:alice``), whatever chat they wrote from (revision ``0006``).

The agent records the speaker of every turn; searches and notes scoped to a person use it,
so that one person never reads another's sessions or notes through the agent.

Only the owner (``openpista memory link``) joins identities into one person (revision
``0011``): each linked identity is a row of ``person_links`` naming its group by the group's
first identity in sort order; searches and notes of any of them span the whole group.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    Connection,
    ForeignKey,
    Index,
    String,
    and_,
    delete,
    insert,
    or_,
    select,
    union,
    update,
)

from openpista.memory.checks import MemoryStoreError, check_channel_id
from openpista.memory.engine import upsert
from openpista.memory.tables import (
    CHANNEL_ID_MAX_LENGTH,
    SESSION_ID_MAX_LENGTH,
    Base,
    ChannelSessionRow,
    Mapped,
    mapped_column,
)

PERSON_MAX_LENGTH = 255
"""Longest person id stored (``telegram:123``)."""
TERMINAL_KINDS = frozenset({"cli", "tui", "local"})
"""Channel kinds of the machine's own terminals (``openpista run``, the TUI, the daemon's
control socket): their user is one person, ``local:<user>`` (revision ``0018``)."""


class SessionPersonRow(Base):
    """One person (``person``) spoke in ``session_id`` from the chat ``channel_id``."""

    __tablename__ = "session_people"

    session_id: Mapped[str] = mapped_column(
        String(SESSION_ID_MAX_LENGTH),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        primary_key=True,
    )
    channel_id: Mapped[str] = mapped_column(String(CHANNEL_ID_MAX_LENGTH), primary_key=True)
    person: Mapped[str] = mapped_column(String(PERSON_MAX_LENGTH), primary_key=True)

    __table_args__ = (
        Index("ix_session_people_person", "person"),
        Index("ix_session_people_channel_id", "channel_id"),
    )


class PersonLinkRow(Base):
    """The identity ``identity`` belongs to the linked group named ``person``."""

    __tablename__ = "person_links"

    identity: Mapped[str] = mapped_column(String(PERSON_MAX_LENGTH), primary_key=True)
    person: Mapped[str] = mapped_column(String(PERSON_MAX_LENGTH), nullable=False)

    __table_args__ = (Index("ix_person_links_person", "person"),)


@dataclass(frozen=True, slots=True)
class Speaker:
    """Who wrote a turn's message: the chat (``telegram:-10042``) and the person in it
    (``telegram:7``); build one with :meth:`of`."""

    channel_id: str
    person: str

    @classmethod
    def of(cls, channel_id: str, sender: str) -> Speaker:
        """The speaker ``sender`` of ``channel_id``: the person is the sender prefixed with
        the channel's kind (the part of the channel id before the first ``:``); the
        machine's own terminals (:data:`TERMINAL_KINDS`) are one kind, ``local``."""
        cid = check_channel_id(channel_id)
        kind = cid.partition(":")[0]
        kind = "local" if kind in TERMINAL_KINDS else kind
        return cls(cid, check_person(f"{kind}:{sender}"))


def check_person(person: object) -> str:
    """``person`` if it is a storable person id: ``KIND:SENDER``."""
    if not isinstance(person, str) or ":" not in person or not person.partition(":")[2].strip():
        raise MemoryStoreError(f"a person is KIND:SENDER (e.g. telegram:123), not {person!r}")
    if len(person) > PERSON_MAX_LENGTH:
        raise MemoryStoreError(
            f"person id is {len(person)} characters long; the limit is {PERSON_MAX_LENGTH}"
        )
    return check_channel_id(person)  # the same characters as a channel id


def record_speaker(conn: Connection, session_id: str, speaker: Speaker) -> None:
    """Remember that ``speaker`` spoke in ``session_id`` (once per session and chat)."""
    conn.execute(
        upsert(conn, SessionPersonRow)
        .values(session_id=session_id, channel_id=speaker.channel_id, person=speaker.person)
        .on_conflict_do_nothing()
    )


def sessions_only_of(conn: Connection, target: str) -> list[str]:
    """The sessions ``target`` (a person or a chat) spoke in or is bound to, in which
    nobody else spoke and to which no other chat is bound."""
    people = SessionPersonRow
    involved = union(
        select(people.session_id).where(or_(people.person == target, people.channel_id == target)),
        select(ChannelSessionRow.session_id).where(ChannelSessionRow.channel_id == target),
    ).subquery()
    others = union(
        select(people.session_id).where(and_(people.person != target, people.channel_id != target)),
        select(ChannelSessionRow.session_id).where(ChannelSessionRow.channel_id != target),
    ).subquery()
    ids = select(involved.c.session_id).except_(select(others.c.session_id))
    return sorted(conn.scalars(ids))


def identities_of(conn: Connection, person: str) -> list[str]:
    """``person`` and every identity linked with it, sorted."""
    group = select(PersonLinkRow.person).where(PersonLinkRow.identity == person)
    linked = select(PersonLinkRow.identity).where(PersonLinkRow.person == group.scalar_subquery())
    return sorted({person, *conn.scalars(linked)})


def link_people(conn: Connection, first: str, second: str) -> list[str]:
    """Join ``first`` and ``second`` (with whatever each is linked to already) into one
    person; the identities of that person, sorted."""
    if first == second:
        raise MemoryStoreError(f"cannot link {first} with itself")
    members = sorted({*identities_of(conn, first), *identities_of(conn, second)})
    conn.execute(delete(PersonLinkRow).where(PersonLinkRow.identity.in_(members)))
    conn.execute(
        insert(PersonLinkRow), [{"identity": one, "person": members[0]} for one in members]
    )
    return members


def unlink_person(conn: Connection, identity: str) -> list[str]:
    """Make ``identity`` a person of its own again; the identities it was linked with."""
    others = [one for one in identities_of(conn, identity) if one != identity]
    rows = PersonLinkRow
    if len(others) <= 1:  # a group of one is no link
        conn.execute(delete(rows).where(rows.identity.in_([identity, *others])))
    else:
        conn.execute(delete(rows).where(rows.identity == identity))
        conn.execute(update(rows).where(rows.identity.in_(others)).values(person=others[0]))
    return others
