"""who used each harness and skill version, and each harness version's runs summed up,
kept by triggers for the harness, skill and impact pages

Revision ID: c3d9e6f1a4b7
Revises: b2c8d5e0f3a6
Create Date: 2026-12-06 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c3d9e6f1a4b7"
down_revision: str | None = "b2c8d5e0f3a6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Triggers rather than calls in the engine: runs are written by dispatch, /ask, the result
# taker and run tracking (finished, lost), and in bulk by COPY; a trigger sees every one of
# them in the writer's transaction, so a summary is always the sum of its rows.

# A run_versions row: its versions are used by the run's (repository, workflow), as the
# pages joined them (runs, then tickets; no run or no repository, no row). Pairs stay once
# seen: runs are never deleted but with their ticket.
_USAGE = (
    """
CREATE FUNCTION version_usage_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO harness_usage (harness_version_id, repository_id, workflow)
    SELECT NEW.harness_version_id, t.repository_id, r.workflow
    FROM runs r JOIN tickets t ON t.id = r.ticket_id
    WHERE r.id = NEW.run_id AND t.repository_id IS NOT NULL
    ON CONFLICT DO NOTHING;
    INSERT INTO skill_usage (skill_version_id, repository_id, workflow)
    SELECT DISTINCT s.id, t.repository_id, r.workflow
    FROM runs r JOIN tickets t ON t.id = r.ticket_id, unnest(NEW.skill_version_ids) AS s(id)
    WHERE r.id = NEW.run_id AND t.repository_id IS NOT NULL
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$
""",
    """
CREATE TRIGGER version_usage AFTER INSERT OR UPDATE OF harness_version_id, skill_version_ids
ON run_versions FOR EACH ROW EXECUTE FUNCTION version_usage_add()
""",
)

# A runs row's part in its harness version's sums: taken out as it was (update, delete),
# put in as it is (insert, update). A ticket counts while a pair row has runs.
_IMPACT = (
    """
CREATE FUNCTION harness_impact_runs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    pair integer;
    gone integer := 0;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.harness_version_id IS NOT DISTINCT FROM NEW.harness_version_id
            AND OLD.ticket_id = NEW.ticket_id THEN
        IF NEW.harness_version_id IS NOT NULL THEN
            UPDATE harness_impact SET
                ended = ended + (NEW.state IN ('finished', 'lost'))::int
                              - (OLD.state IN ('finished', 'lost'))::int,
                succeeded = succeeded + (NEW.status IS NOT DISTINCT FROM 'succeeded')::int
                                      - (OLD.status IS NOT DISTINCT FROM 'succeeded')::int,
                cost_usd = cost_usd + coalesce(NEW.cost_usd, 0) - coalesce(OLD.cost_usd, 0)
            WHERE harness_version_id = NEW.harness_version_id;
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.harness_version_id IS NOT NULL THEN
        UPDATE harness_impact_tickets SET runs = runs - 1
        WHERE harness_version_id = OLD.harness_version_id AND ticket_id = OLD.ticket_id
        RETURNING runs INTO pair;
        IF pair = 0 THEN
            DELETE FROM harness_impact_tickets
            WHERE harness_version_id = OLD.harness_version_id AND ticket_id = OLD.ticket_id;
            gone := 1;
        END IF;
        UPDATE harness_impact SET
            runs = runs - 1,
            ended = ended - (OLD.state IN ('finished', 'lost'))::int,
            succeeded = succeeded - (OLD.status IS NOT DISTINCT FROM 'succeeded')::int,
            cost_usd = cost_usd - coalesce(OLD.cost_usd, 0),
            tickets = tickets - gone
        WHERE harness_version_id = OLD.harness_version_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.harness_version_id IS NOT NULL THEN
        INSERT INTO harness_impact_tickets AS p (harness_version_id, ticket_id, runs)
        VALUES (NEW.harness_version_id, NEW.ticket_id, 1)
        ON CONFLICT (harness_version_id, ticket_id) DO UPDATE SET runs = p.runs + 1
        RETURNING runs INTO pair;
        INSERT INTO harness_impact AS i
            (harness_version_id, runs, ended, succeeded, cost_usd, tickets)
        VALUES (
            NEW.harness_version_id,
            1,
            (NEW.state IN ('finished', 'lost'))::int,
            (NEW.status IS NOT DISTINCT FROM 'succeeded')::int,
            coalesce(NEW.cost_usd, 0),
            (pair = 1)::int
        )
        ON CONFLICT (harness_version_id) DO UPDATE SET
            runs = i.runs + 1,
            ended = i.ended + excluded.ended,
            succeeded = i.succeeded + excluded.succeeded,
            cost_usd = i.cost_usd + excluded.cost_usd,
            tickets = i.tickets + excluded.tickets;
    END IF;
    RETURN NULL;
END $$
""",
    """
CREATE TRIGGER harness_impact_runs
AFTER INSERT OR DELETE OR UPDATE OF harness_version_id, ticket_id, state, status, cost_usd
ON runs FOR EACH ROW EXECUTE FUNCTION harness_impact_runs()
""",
)

# A ticket's move to in_review that a run caused (its activity row names the run): the
# run's time to PR, from its queueing to the first such move.
_PRS = (
    """
CREATE FUNCTION harness_impact_pr() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO harness_impact_prs AS p (run_id, harness_version_id, to_pr_seconds)
    SELECT r.id, r.harness_version_id, extract(epoch FROM NEW.at - r.queued_at)
    FROM runs r WHERE r.id = NEW.run_id AND r.harness_version_id IS NOT NULL
    ON CONFLICT (run_id) DO UPDATE
        SET to_pr_seconds = least(p.to_pr_seconds, excluded.to_pr_seconds);
    RETURN NULL;
END $$
""",
    """
CREATE TRIGGER harness_impact_pr AFTER INSERT ON activity FOR EACH ROW
WHEN (NEW.kind = 'state' AND NEW.data ->> 'new' = 'in_review' AND NEW.run_id IS NOT NULL)
EXECUTE FUNCTION harness_impact_pr()
""",
)

# The rows already stored, summed as the triggers would have. The triggers come first: they
# lock the tables against writers until this commits, so the sums miss no row.
_BACKFILL = (
    """
    INSERT INTO harness_usage (harness_version_id, repository_id, workflow)
    SELECT DISTINCT rv.harness_version_id, t.repository_id, r.workflow
    FROM run_versions rv JOIN runs r ON r.id = rv.run_id JOIN tickets t ON t.id = r.ticket_id
    WHERE t.repository_id IS NOT NULL
    """,
    """
    INSERT INTO skill_usage (skill_version_id, repository_id, workflow)
    SELECT DISTINCT s.id, t.repository_id, r.workflow
    FROM run_versions rv JOIN runs r ON r.id = rv.run_id JOIN tickets t ON t.id = r.ticket_id,
         unnest(rv.skill_version_ids) AS s(id)
    WHERE t.repository_id IS NOT NULL
    """,
    """
    INSERT INTO harness_impact_tickets (harness_version_id, ticket_id, runs)
    SELECT harness_version_id, ticket_id, count(*)
    FROM runs WHERE harness_version_id IS NOT NULL
    GROUP BY harness_version_id, ticket_id
    """,
    """
    INSERT INTO harness_impact (harness_version_id, runs, ended, succeeded, cost_usd, tickets)
    SELECT harness_version_id, count(*),
           count(*) FILTER (WHERE state IN ('finished', 'lost')),
           count(*) FILTER (WHERE status = 'succeeded'),
           coalesce(sum(cost_usd), 0),
           count(DISTINCT ticket_id)
    FROM runs WHERE harness_version_id IS NOT NULL
    GROUP BY harness_version_id
    """,
    """
    INSERT INTO harness_impact_prs (run_id, harness_version_id, to_pr_seconds)
    SELECT r.id, r.harness_version_id, extract(epoch FROM min(a.at) - r.queued_at)
    FROM activity a JOIN runs r ON r.id = a.run_id
    WHERE a.kind = 'state' AND a.data ->> 'new' = 'in_review'
      AND r.harness_version_id IS NOT NULL
    GROUP BY r.id, r.harness_version_id, r.queued_at
    """,
)


def _usage_table(name: str, version: str, versions: str) -> None:
    op.create_table(
        name,
        sa.Column(version, sa.BigInteger(), nullable=False),
        sa.Column("repository_id", sa.BigInteger(), nullable=False),
        sa.Column("workflow", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            [version], [f"{versions}.id"], name=op.f(f"fk_{name}_{version}_{versions}")
        ),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f(f"fk_{name}_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(version, "repository_id", "workflow", name=op.f(f"pk_{name}")),
    )


def upgrade() -> None:
    _usage_table("harness_usage", "harness_version_id", "harness_versions")
    _usage_table("skill_usage", "skill_version_id", "skill_versions")
    op.create_table(
        "harness_impact",
        sa.Column("harness_version_id", sa.BigInteger(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("ended", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("tickets", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["harness_version_id"],
            ["harness_versions.id"],
            name=op.f("fk_harness_impact_harness_version_id_harness_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("harness_version_id", name=op.f("pk_harness_impact")),
    )
    op.create_table(
        "harness_impact_tickets",
        sa.Column("harness_version_id", sa.BigInteger(), nullable=False),
        sa.Column("ticket_id", sa.BigInteger(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["harness_version_id"],
            ["harness_versions.id"],
            name=op.f("fk_harness_impact_tickets_harness_version_id_harness_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "harness_version_id", "ticket_id", name=op.f("pk_harness_impact_tickets")
        ),
    )
    op.create_table(
        "harness_impact_prs",
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("harness_version_id", sa.BigInteger(), nullable=False),
        sa.Column("to_pr_seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["harness_version_id"],
            ["harness_versions.id"],
            name=op.f("fk_harness_impact_prs_harness_version_id_harness_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_harness_impact_prs_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_harness_impact_prs")),
    )
    op.create_index(
        "ix_harness_impact_prs_harness_version_id",
        "harness_impact_prs",
        ["harness_version_id"],
        postgresql_include=["to_pr_seconds"],
    )
    for statement in (*_USAGE, *_IMPACT, *_PRS, *_BACKFILL):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER harness_impact_pr ON activity")
    op.execute("DROP TRIGGER harness_impact_runs ON runs")
    op.execute("DROP TRIGGER version_usage ON run_versions")
    op.execute("DROP FUNCTION harness_impact_pr()")
    op.execute("DROP FUNCTION harness_impact_runs()")
    op.execute("DROP FUNCTION version_usage_add()")
    op.drop_index("ix_harness_impact_prs_harness_version_id", table_name="harness_impact_prs")
    for table in (
        "harness_impact_prs",
        "harness_impact_tickets",
        "harness_impact",
        "skill_usage",
        "harness_usage",
    ):
        op.drop_table(table)
