"""the board: the gates of each ticket's latest finished run for its cards, an index for
each column's newest cards and one for its totals

Revision ID: a1b7c4d9e2f5
Revises: f9a5c3b1e4d7
Create Date: 2026-12-06 10:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a1b7c4d9e2f5"
down_revision: str | None = "f9a5c3b1e4d7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ticket_states",
        sa.Column("checks", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    # From each ticket's latest run with a result (not an /ask), as the engine now keeps it.
    op.execute("""
        UPDATE ticket_states ts SET checks = latest.checks
        FROM (
            SELECT DISTINCT ON (r.ticket_id) r.ticket_id,
                (SELECT coalesce(jsonb_agg(jsonb_build_object(
                            'name', 'openase/' || (h.value->>'name'),
                            'passed', coalesce((h.value->>'passed')::boolean, false),
                            'gate', coalesce(h.value->>'on_failure', 'block'))
                            ORDER BY h.ordinality), '[]'::jsonb)
                 FROM jsonb_array_elements(
                        CASE WHEN jsonb_typeof(r.result->'hook_results') = 'array'
                             THEN r.result->'hook_results' ELSE '[]'::jsonb END
                      ) WITH ORDINALITY AS h
                 WHERE h.value->>'phase' = 'on_complete') AS checks
            FROM runs r
            WHERE jsonb_typeof(r.result) = 'object' AND r.workflow <> 'ask'
            ORDER BY r.ticket_id, r.finished_at DESC NULLS LAST, r.queued_at DESC
        ) latest
        WHERE latest.ticket_id = ts.ticket_id
    """)

    op.create_index(
        "ix_ticket_states_state_updated_at",
        "ticket_states",
        ["state", "updated_at", "ticket_id"],
        unique=False,
    )
    op.create_index(
        "ix_tickets_board",
        "tickets",
        ["state", "source", "repository_id", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_tickets_board", table_name="tickets")
    op.drop_index("ix_ticket_states_state_updated_at", table_name="ticket_states")
    op.drop_column("ticket_states", "checks")
