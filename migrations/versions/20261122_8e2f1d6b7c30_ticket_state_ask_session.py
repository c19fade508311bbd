"""ticket states: the agent session `/ask` resumes

Revision ID: 8e2f1d6b7c30
Revises: 7d1e0c5a9b21
Create Date: 2026-11-22 11:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8e2f1d6b7c30"
down_revision: str | None = "7d1e0c5a9b21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ticket_states", sa.Column("ask_session_id", sa.String(length=200), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("ticket_states", "ask_session_id")
