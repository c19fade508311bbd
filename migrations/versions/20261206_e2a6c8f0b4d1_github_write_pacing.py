"""github_writes, github_writes_paced: each installation's content-creating requests paced

GitHub's secondary rate limits allow an installation 80 content-creating requests a minute
and 500 an hour; the outbox sent them as fast as it could (some 1,400 in a minute for 200
tickets, `make bench-scale`). It now logs each one it sends and holds an installation's
effects back while its last minute or hour is full (bot/effects/pacing.py).

Revision ID: e2a6c8f0b4d1
Revises: d1f7b3e9a5c2
Create Date: 2026-12-06 18:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e2a6c8f0b4d1"
down_revision: str | None = "d1f7b3e9a5c2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "github_writes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_github_writes")),
    )
    op.create_index(
        "ix_github_writes_installation_id_at",
        "github_writes",
        ["installation_id", "at"],
        unique=False,
    )
    op.create_table(
        "github_writes_paced",
        sa.Column("installation_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("installation_id", name=op.f("pk_github_writes_paced")),
    )


def downgrade() -> None:
    op.drop_table("github_writes_paced")
    op.drop_index("ix_github_writes_installation_id_at", table_name="github_writes")
    op.drop_table("github_writes")
