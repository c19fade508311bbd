"""staying in step: redeliveries asked of GitHub, and where each sweep got to

Revision ID: a4c1e9d2b7f3
Revises: 9f3a2e7c4d10
Create Date: 2026-12-06 02:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a4c1e9d2b7f3"
down_revision: str | None = "9f3a2e7c4d10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "redelivery_requests",
        sa.Column("guid", sa.String(length=200), nullable=False),
        sa.Column("github_delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(length=100), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "asked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("guid", name=op.f("pk_redelivery_requests")),
    )
    op.create_table(
        "sync_marks",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sync_marks")),
    )


def downgrade() -> None:
    op.drop_table("sync_marks")
    op.drop_table("redelivery_requests")
