"""scheduled tickets of Linear teams and Jira projects: slots and pauses keyed by scope

A schedule now belongs to a scope: `github:<repository id>` (the rows there were, kept
with their repository), `linear:<TEAM>` or `jira:<PROJECT>` (the control-plane config's).

Revision ID: a7b3c0d5e8f1
Revises: e5f1a8b3c6d9
Create Date: 2026-12-06 12:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7b3c0d5e8f1"
down_revision: str | None = "e5f1a8b3c6d9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("schedule_slots", "schedule_controls"):
        op.add_column(table, sa.Column("scope", sa.String(length=100), nullable=True))
    op.execute("UPDATE schedule_slots SET scope = 'github:' || repository_id::text")
    op.execute("UPDATE schedule_controls SET scope = 'github:' || repository_id::text")
    for table in ("schedule_slots", "schedule_controls"):
        op.alter_column(table, "scope", nullable=False)
    op.drop_constraint("uq_schedule_slots_slot", "schedule_slots", type_="unique")
    op.create_unique_constraint(
        "uq_schedule_slots_slot", "schedule_slots", ["scope", "schedule", "slot_at"]
    )
    op.alter_column("schedule_slots", "repository_id", nullable=True)
    op.drop_constraint("pk_schedule_controls", "schedule_controls", type_="primary")
    op.create_primary_key("pk_schedule_controls", "schedule_controls", ["scope", "schedule"])
    op.alter_column("schedule_controls", "repository_id", nullable=True)


def downgrade() -> None:
    # A team's or project's rows have no repository to go back to.
    op.execute("DELETE FROM schedule_slots WHERE repository_id IS NULL")
    op.execute("DELETE FROM schedule_controls WHERE repository_id IS NULL")
    op.alter_column("schedule_controls", "repository_id", nullable=False)
    op.drop_constraint("pk_schedule_controls", "schedule_controls", type_="primary")
    op.create_primary_key(
        "pk_schedule_controls", "schedule_controls", ["repository_id", "schedule"]
    )
    op.alter_column("schedule_slots", "repository_id", nullable=False)
    op.drop_constraint("uq_schedule_slots_slot", "schedule_slots", type_="unique")
    op.create_unique_constraint(
        "uq_schedule_slots_slot", "schedule_slots", ["repository_id", "schedule", "slot_at"]
    )
    for table in ("schedule_slots", "schedule_controls"):
        op.drop_column(table, "scope")
