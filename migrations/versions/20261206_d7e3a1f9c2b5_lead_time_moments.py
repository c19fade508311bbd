"""each ticket's first moments (labelled, PR, done) stored for lead time, backfilled

Revision ID: d7e3a1f9c2b5
Revises: c5d2f0a8e1b4
Create Date: 2026-12-06 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d7e3a1f9c2b5"
down_revision: str | None = "c5d2f0a8e1b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MOMENTS = ("labelled_at", "pr_at", "done_at")

# The moments as the dashboard read them from the activity log until now: a state row's
# `new` is where the ticket went (rows without one, a removed issue's cancel, count as
# leaving the backlog). One pass over the log, grouped by ticket.
BACKFILL = """
UPDATE ticket_states ts
SET labelled_at = m.labelled_at, pr_at = m.pr_at, done_at = m.done_at
FROM (
    SELECT ticket_id,
           min(at) FILTER (WHERE data->>'new' IS DISTINCT FROM 'backlog') AS labelled_at,
           min(at) FILTER (WHERE data->>'new' = 'in_review') AS pr_at,
           min(at) FILTER (WHERE data->>'new' = 'done') AS done_at
    FROM activity
    WHERE kind = 'state'
    GROUP BY ticket_id
) m
WHERE m.ticket_id = ts.ticket_id
"""


def upgrade() -> None:
    for name in MOMENTS:
        op.add_column("ticket_states", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.execute(BACKFILL)
    op.create_index("ix_ticket_states_done_at", "ticket_states", ["done_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ticket_states_done_at", table_name="ticket_states")
    for name in reversed(MOMENTS):
        op.drop_column("ticket_states", name)
