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

# An identity already present as local: keeps its row; of cli:X and tui:X, tui:X goes.
_UPGRADE = (
    "DELETE FROM person_links WHERE (identity LIKE 'cli:%' OR identity LIKE 'tui:%') "
    "AND 'local:' || SUBSTR(identity, 5) IN (SELECT identity FROM person_links)",
    "DELETE FROM person_links WHERE identity LIKE 'tui:%' "
    "AND 'cli:' || SUBSTR(identity, 5) IN (SELECT identity FROM person_links)",
    # both prefixes are four characters long
    "UPDATE person_links SET identity = 'local:' || SUBSTR(identity, 5) "
    "WHERE identity LIKE 'cli:%' OR identity LIKE 'tui:%'",
    "UPDATE person_links SET person = 'local:' || SUBSTR(person, 5) "
    "WHERE person LIKE 'cli:%' OR person LIKE 'tui:%'",
    "UPDATE session_people SET person = 'local:' || SUBSTR(person, 5) "
    "WHERE person LIKE 'cli:%' OR person LIKE 'tui:%'",
    "UPDATE notes SET person = 'local:' || SUBSTR(person, 5) "
    "WHERE person LIKE 'cli:%' OR person LIKE 'tui:%'",
    "UPDATE messages SET sender = 'local:' || SUBSTR(sender, 5) "
    "WHERE sender LIKE 'cli:%' OR sender LIKE 'tui:%'",
)


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    """Nothing to undo (see the module docstring)."""
