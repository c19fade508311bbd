"""indexes the web pages read by at the issue's scale (bench-web: 10,000 tickets, 100,000
runs, 1,000,000 events)

Revision ID: e8f4b2a0d3c6
Revises: d7e3a1f9c2b5
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e8f4b2a0d3c6"
down_revision: str | None = "d7e3a1f9c2b5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Exactly the expression /tickets/list searches with (bot.web.ticket_list), or the planner
# cannot use the index.
SEARCH = "to_tsvector('simple'::regconfig, (title || ' '::text) || body)"
# What the dashboard counts per run, so its range scans never read the wide rows.
RUN_NUMBERS = ["ticket_id", "workflow", "harness_version_id", "state", "status", "cost_usd"]
# What a harness's impact page counts per run of its versions.
VERSION_RUNS = ["id", "ticket_id", "state", "status", "cost_usd", "queued_at"]
# The activity rows the dashboard and a harness's impact page look for, exactly as their
# queries (bot.web.metrics_queries) say them: a review sending a ticket back, a move to
# in_review (the run's PR).
SENT_BACK = (
    "kind = 'state' AND (data ->> 'old') = 'in_review'"
    " AND (data ->> 'new') NOT IN ('in_review', 'merging', 'done')"
)
PR_MOVES = "kind = 'state' AND (data ->> 'new') = 'in_review'"


def upgrade() -> None:
    op.create_index(
        "ix_tickets_search", "tickets", [sa.text(SEARCH)], unique=False, postgresql_using="gin"
    )
    op.create_index("ix_tickets_updated_at_id", "tickets", ["updated_at", "id"], unique=False)
    op.create_index("ix_tickets_source_key", "tickets", ["source", "key"], unique=False)
    op.create_index(
        "ix_runs_queued_at", "runs", ["queued_at"], unique=False, postgresql_include=RUN_NUMBERS
    )
    op.create_index("ix_runs_machine_queued_at", "runs", ["machine", "queued_at"], unique=False)
    op.create_index("ix_runs_workflow", "runs", ["workflow"], unique=False)
    op.create_index("ix_runs_provider", "runs", [sa.text("(spec ->> '_provider')")], unique=False)
    op.create_index(
        "ix_runs_harness_version_id",
        "runs",
        ["harness_version_id"],
        unique=False,
        postgresql_include=VERSION_RUNS,
    )
    op.create_index("ix_activity_at_id", "activity", ["at", "id"], unique=False)
    op.create_index("ix_activity_kind_at_id", "activity", ["kind", "at", "id"], unique=False)
    op.create_index(
        "ix_activity_sent_back",
        "activity",
        ["ticket_id"],
        unique=False,
        postgresql_where=sa.text(SENT_BACK),
    )
    op.create_index(
        "ix_activity_pr_moves",
        "activity",
        ["run_id"],
        unique=False,
        postgresql_include=["at"],
        postgresql_where=sa.text(PR_MOVES),
    )


def downgrade() -> None:
    op.drop_index("ix_activity_pr_moves", table_name="activity")
    op.drop_index("ix_activity_sent_back", table_name="activity")
    op.drop_index("ix_activity_kind_at_id", table_name="activity")
    op.drop_index("ix_activity_at_id", table_name="activity")
    op.drop_index("ix_runs_harness_version_id", table_name="runs")
    op.drop_index("ix_runs_provider", table_name="runs")
    op.drop_index("ix_runs_workflow", table_name="runs")
    op.drop_index("ix_runs_machine_queued_at", table_name="runs")
    op.drop_index("ix_runs_queued_at", table_name="runs")
    op.drop_index("ix_tickets_source_key", table_name="tickets")
    op.drop_index("ix_tickets_updated_at_id", table_name="tickets")
    op.drop_index("ix_tickets_search", table_name="tickets")
