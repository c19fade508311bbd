"""questions an agent asked a person: the open question of a ticket waiting for an answer

Revision ID: e5f1a8b3c6d9
Revises: d4e0f7a2b5c8
Create Date: 2026-12-06 12:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e5f1a8b3c6d9"
down_revision: str | None = "d4e0f7a2b5c8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ticket_states", sa.Column("question", sa.Text(), nullable=True))
    op.add_column("ticket_states", sa.Column("question_run_id", sa.String(128), nullable=True))
    op.add_column("ticket_states", sa.Column("asked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "ticket_states", sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True)
    )
    # The reminder's scan: only the few tickets waiting for an answer are in it.
    op.create_index(
        "ix_ticket_states_asked_at",
        "ticket_states",
        ["asked_at"],
        postgresql_where=sa.text("needs_input"),
    )


def downgrade() -> None:
    op.drop_index("ix_ticket_states_asked_at", table_name="ticket_states")
    for column in ("reminded_at", "asked_at", "question_run_id", "question"):
        op.drop_column("ticket_states", column)
