"""machines an admin paused, resumed or drained, and who did

Revision ID: c5d2f0a8e1b4
Revises: a4c1e9d2b7f3
Create Date: 2026-12-06 07:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c5d2f0a8e1b4"
down_revision: str | None = "a4c1e9d2b7f3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "machine_controls",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("changed_by", sa.String(length=100), nullable=False),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_machine_controls")),
    )
    op.create_table(
        "machine_actions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("machine", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("by", sa.String(length=100), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_machine_actions")),
    )
    op.create_index(
        "ix_machine_actions_machine_id", "machine_actions", ["machine", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_machine_actions_machine_id", table_name="machine_actions")
    op.drop_table("machine_actions")
    op.drop_table("machine_controls")
