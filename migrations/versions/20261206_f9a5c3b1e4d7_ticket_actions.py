"""what people pressed on ticket pages, carried out by the control worker

Revision ID: f9a5c3b1e4d7
Revises: e8f4b2a0d3c6
Create Date: 2026-12-06 09:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f9a5c3b1e4d7"
down_revision: str | None = "e8f4b2a0d3c6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ticket_actions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.BigInteger(), nullable=False),
        sa.Column("request", sa.String(length=64), nullable=False),
        sa.Column("command", sa.String(length=32), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(length=128), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_actions_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_actions")),
        sa.UniqueConstraint("request", name=op.f("uq_ticket_actions_request")),
    )
    op.create_index(
        "ix_ticket_actions_ticket_id_id", "ticket_actions", ["ticket_id", "id"], unique=False
    )
    op.create_index(
        "ix_ticket_actions_pending",
        "ticket_actions",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_ticket_actions_pending", table_name="ticket_actions")
    op.drop_index("ix_ticket_actions_ticket_id_id", table_name="ticket_actions")
    op.drop_table("ticket_actions")
