"""ticket states: the PR, the gated head, review feedback and what a ticket waits for

Revision ID: 7d1e0c5a9b21
Revises: 6ac758818f5b
Create Date: 2026-11-22 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7d1e0c5a9b21"
down_revision: str | None = "6ac758818f5b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ticket_states", sa.Column("feedback", sa.Text(), nullable=True))
    op.add_column("ticket_states", sa.Column("pr_number", sa.Integer(), nullable=True))
    op.add_column("ticket_states", sa.Column("head_sha", sa.String(length=64), nullable=True))
    op.add_column("ticket_states", sa.Column("waiting", sa.Text(), nullable=True))
    op.add_column(
        "ticket_states",
        sa.Column("gates_only", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("ticket_states", "gates_only")
    op.drop_column("ticket_states", "waiting")
    op.drop_column("ticket_states", "head_sha")
    op.drop_column("ticket_states", "pr_number")
    op.drop_column("ticket_states", "feedback")
