"""tickets: what Linear and Jira say besides the common fields (team, state, components)

Revision ID: 9f3a2e7c4d10
Revises: 8e2f1d6b7c30
Create Date: 2026-11-22 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "9f3a2e7c4d10"
down_revision: str | None = "8e2f1d6b7c30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tickets", sa.Column("tracker", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("tickets", "tracker")
