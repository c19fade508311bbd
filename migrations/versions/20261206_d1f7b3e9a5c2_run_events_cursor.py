"""run_event_cursors: each run's event stream read up to here

The engine's sweep read every open run's whole Redis stream on each tick to find the events
it had not persisted (200 runs of a minute's output: some 24,000 entries decoded a tick,
`make bench-scale`); it now reads on from the last entry it persisted.

Revision ID: d1f7b3e9a5c2
Revises: c4e9a2d7f1b6
Create Date: 2026-12-06 17:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d1f7b3e9a5c2"
down_revision: str | None = "c4e9a2d7f1b6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_event_cursors",
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("entry_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_run_event_cursors_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_event_cursors")),
    )


def downgrade() -> None:
    op.drop_table("run_event_cursors")
