"""One person for the machine's own terminals: ``cli:``, ``tui:`` and ``local:`` speakers of
the same user become ``local:<user>``.

``openpista run`` in-process spoke as ``cli:<user>``, the in-process TUI as ``tui:<user>``
and everything through the daemon's control socket as ``local:<user>``: one human, three
people, whose notes and sessions did not reach each other. From this revision the agent
records them all as ``local:<user>`` (:class:`openpista.memory.people.Speaker`); the stored
persons are renamed the same way in ``session_people``, ``notes``, ``messages.sender`` and
``person_links`` (an identity that already exists as ``local:`` there keeps that row). The
downgrade changes nothing: which terminal a stored person came from is not kept.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TERMINAL = "(({column} LIKE 'cli:%') OR ({column} LIKE 'tui:%'))"
_LOCAL = "'local:' || SUBSTR({column}, 5)"  # both prefixes are four characters long


def _rename(table: str, column: str) -> str:
    where = _TERMINAL.format(column=column)
    return f"UPDATE {table} SET {column} = {_LOCAL.format(column=column)} WHERE {where}"


def upgrade() -> None:
    # person_links.identity is the key: an identity already present as local: wins.
    op.execute(
        f"DELETE FROM person_links WHERE {_TERMINAL.format(column='identity')} AND "
        f"{_LOCAL.format(column='identity')} IN (SELECT identity FROM person_links)"
    )
    op.execute(
        "DELETE FROM person_links WHERE "
        f"{_TERMINAL.format(column='identity')} AND identity IN ("
        f"SELECT MIN(identity) FROM person_links WHERE {_TERMINAL.format(column='identity')} "
        f"GROUP BY {_LOCAL.format(column='identity')} HAVING COUNT(*) > 1)"
    )
    for table, column in (
        ("person_links", "identity"),
        ("person_links", "person"),
        ("session_people", "person"),
        ("notes", "person"),
        ("messages", "sender"),
    ):
        op.execute(_rename(table, column))


def downgrade() -> None:
    """Nothing to undo (see the module docstring)."""
