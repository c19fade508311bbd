"""the metrics dashboard's rollups: runs and gate failures per day, a ticket's runs

Revision ID: b2c8d5e0f3a6
Revises: a1b7c4d9e2f5
Create Date: 2026-12-06 10:30:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "b2c8d5e0f3a6"
down_revision: str | None = "a1b7c4d9e2f5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _scope() -> list[sa.Column[Any]]:
    """What the dashboard filters on; a missing repository or harness version is 0, a
    missing provider '' (key columns cannot be NULL)."""
    return [
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("workflow", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("harness_version_id", sa.BigInteger(), nullable=False),
    ]


_SCOPE = ("day", "repository_id", "workflow", "provider", "harness_version_id")


def _ticket_id(table: str) -> list[Any]:
    return [
        sa.Column("ticket_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f(f"fk_{table}_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "run_stats_daily",
        *_scope(),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(*_SCOPE, "outcome", name=op.f("pk_run_stats_daily")),
    )
    op.create_table(
        "run_totals_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("day", "outcome", name=op.f("pk_run_totals_daily")),
    )
    op.create_table(
        "gate_failures_daily",
        *_scope(),
        sa.Column("hook", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(*_SCOPE, "hook", name=op.f("pk_gate_failures_daily")),
    )
    op.create_table(
        "ticket_run_kinds",
        *_ticket_id("ticket_run_kinds"),
        sa.Column("workflow", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("harness_version_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "ticket_id",
            "workflow",
            "provider",
            "harness_version_id",
            name=op.f("pk_ticket_run_kinds"),
        ),
    )
    op.create_table(
        "ticket_run_totals",
        *_ticket_id("ticket_run_totals"),
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("gates_failed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_ticket_run_totals")),
    )
    # Every run already over, counted as the engine now counts one when it ends
    # (bot/tables/stats.py): by the day it was queued, its outcome the status or "lost".
    op.execute("""
        INSERT INTO run_stats_daily
            (day, repository_id, workflow, provider, harness_version_id, outcome, runs, cost_usd)
        SELECT (r.queued_at AT TIME ZONE 'UTC')::date, coalesce(t.repository_id, 0),
               r.workflow, coalesce(r.spec->>'_provider', ''), coalesce(r.harness_version_id, 0),
               coalesce(r.status, r.state), count(*), coalesce(sum(r.cost_usd), 0)
        FROM runs r JOIN tickets t ON t.id = r.ticket_id
        WHERE r.state IN ('finished', 'lost')
        GROUP BY 1, 2, 3, 4, 5, 6
    """)
    op.execute("""
        INSERT INTO run_totals_daily (day, outcome, runs, cost_usd)
        SELECT day, outcome, sum(runs), sum(cost_usd) FROM run_stats_daily GROUP BY 1, 2
    """)
    # A blocking hook that did not exit 0 (or timed out) in a run that failed its gates.
    op.execute("""
        INSERT INTO gate_failures_daily
            (day, repository_id, workflow, provider, harness_version_id, hook, failures)
        SELECT (r.queued_at AT TIME ZONE 'UTC')::date, coalesce(t.repository_id, 0),
               r.workflow, coalesce(r.spec->>'_provider', ''), coalesce(r.harness_version_id, 0),
               coalesce(hook->>'name', ''), count(*)
        FROM runs r JOIN tickets t ON t.id = r.ticket_id,
             jsonb_array_elements(
                 CASE WHEN jsonb_typeof(r.result->'hook_results') = 'array'
                      THEN r.result->'hook_results' ELSE '[]'::jsonb END
             ) AS hook
        WHERE r.state = 'finished' AND r.status = 'gates_failed'
          AND hook->>'on_failure' = 'block'
          AND (coalesce((hook->>'exit_code')::integer, -1) <> 0
               OR coalesce((hook->>'timed_out')::boolean, false))
        GROUP BY 1, 2, 3, 4, 5, 6
    """)
    op.execute("""
        INSERT INTO ticket_run_kinds (ticket_id, workflow, provider, harness_version_id)
        SELECT DISTINCT r.ticket_id, r.workflow, coalesce(r.spec->>'_provider', ''),
               coalesce(r.harness_version_id, 0)
        FROM runs r
        WHERE r.state IN ('finished', 'lost')
    """)
    op.execute("""
        INSERT INTO ticket_run_totals (ticket_id, repository_id, runs, cost_usd, gates_failed)
        SELECT r.ticket_id, coalesce(t.repository_id, 0), count(*),
               coalesce(sum(r.cost_usd), 0), coalesce(bool_or(r.status = 'gates_failed'), false)
        FROM runs r JOIN tickets t ON t.id = r.ticket_id
        WHERE r.state IN ('finished', 'lost')
        GROUP BY 1, 2
    """)


def downgrade() -> None:
    op.drop_table("ticket_run_totals")
    op.drop_table("ticket_run_kinds")
    op.drop_table("gate_failures_daily")
    op.drop_table("run_totals_daily")
    op.drop_table("run_stats_daily")
