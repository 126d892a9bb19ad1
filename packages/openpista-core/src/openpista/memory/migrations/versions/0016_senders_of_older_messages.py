"""Who wrote the older messages: ``messages.sender`` for the user messages stored before
revision 0011 (and imported without one), where the session has exactly one recorded person.

In such a session (``session_people`` names one person) every user message is that person's,
so ``openpista memory purge PERSON`` can remove them when the session is shared later. In a
session where several people spoke the writer of an older message is not known: its sender
stays NULL (purge removes those messages only with a session that was the person's alone).
The downgrade changes nothing: a sender filled here is as true as one stored by the agent.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FILL = (
    "UPDATE messages SET sender = ("
    "SELECT MIN(p.person) FROM session_people p WHERE p.session_id = messages.session_id) "
    "WHERE role = 'user' AND sender IS NULL AND session_id IN ("
    "SELECT session_id FROM session_people GROUP BY session_id "
    "HAVING COUNT(DISTINCT person) = 1)"
)


def upgrade() -> None:
    op.execute(_FILL)


def downgrade() -> None:
    """Nothing to undo (see the module docstring)."""
