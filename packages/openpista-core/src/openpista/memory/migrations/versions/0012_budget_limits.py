"""Budget limits the operator set at run time (``openpista budget set``).

``budget_limits``: one row per limit raised (or lowered) while the daemon runs, overriding
``[budget]``: ``kind`` ``daily`` (``session_id`` empty) or ``session`` (one session's cap),
its ``usd`` and when it was set. A restart keeps them; ``openpista budget unset`` removes
one (the configuration applies again).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A new table only: nothing stored before is touched.
    op.create_table(
        "budget_limits",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("session_id", sa.String(255), nullable=False),
        sa.Column("usd", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "session_id", name="pk_budget_limits"),
    )


def downgrade() -> None:
    op.drop_table("budget_limits")
