"""The metrics dashboard's rollups (bot/web/metrics_queries.py reads them): counted by the
engine in the transaction that takes a run's result or declares it lost (bot/engine/
results.py), so the dashboard reads a few narrow rows instead of every run and its result.

A run is counted once, when it is over, under what the dashboard filters on: the UTC day it
was queued, its ticket's repository, its workflow, its provider (`spec->>'_provider'`) and
its harness version. A missing one is stored as 0 or '' (a key column cannot be NULL), which
no filter asks for. The same runs are also counted per day and outcome alone, for the
unfiltered dashboard, and per ticket. Runs still queued or running are not here: the
dashboard reads those few from `runs` itself. Migration b2c8d5e0f3a6 filled these from the
runs stored before it; `rebuild` does the same for a store filled behind the engine's back
(the bench's COPY).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Float, ForeignKey, Integer, String, Text, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from harness_store.db import Base


class RunDay(Base):
    """Runs over, and their cost, per queueing day, scope and outcome."""

    __tablename__ = "run_stats_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)  # queued_at's UTC date
    repository_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # 0: none
    workflow: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(Text, primary_key=True)  # '': none
    harness_version_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # 0: none
    outcome: Mapped[str] = mapped_column(String(32), primary_key=True)  # status, or "lost"
    runs: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[float] = mapped_column(Float)


class GateFailureDay(Base):
    """Blocking gates that failed, per queueing day, scope and hook name."""

    __tablename__ = "gate_failures_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    repository_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workflow: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(Text, primary_key=True)
    harness_version_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hook: Mapped[str] = mapped_column(Text, primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)


class RunTotalDay(Base):
    """Runs over, and their cost, per queueing day and outcome: the unfiltered dashboard's."""

    __tablename__ = "run_totals_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    outcome: Mapped[str] = mapped_column(String(32), primary_key=True)
    runs: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[float] = mapped_column(Float)


class TicketRunKind(Base):
    """A kind of run a ticket had (one over): whether the dashboard's filters match one."""

    __tablename__ = "ticket_run_kinds"

    ticket_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    workflow: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(Text, primary_key=True)
    harness_version_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class TicketRunTotal(Base):
    """A ticket's runs over: what they all cost, and whether one failed its gates (a done
    ticket's first pass); its repository, for the dashboard's filter."""

    __tablename__ = "ticket_run_totals"

    ticket_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True
    )
    repository_id: Mapped[int] = mapped_column(BigInteger)  # the ticket's, 0: none
    runs: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[float] = mapped_column(Float)
    gates_failed: Mapped[bool] = mapped_column(Boolean)


@dataclass(frozen=True)
class RunOver:
    """A run that just ended, as the rollups count it."""

    ticket_id: int
    workflow: str
    provider: str | None
    harness_version_id: int | None
    queued_at: datetime
    outcome: str  # RunResult.status, or "lost"
    cost_usd: float | None
    failed_gates: Iterable[str] = ()  # names of the blocking hooks that failed


_RUN_DAY = text("""
INSERT INTO run_stats_daily AS s
    (day, repository_id, workflow, provider, harness_version_id, outcome, runs, cost_usd)
SELECT (CAST(:queued_at AS timestamptz) AT TIME ZONE 'UTC')::date,
       coalesce(t.repository_id, 0), :workflow, :provider, :version, :outcome, 1, :cost
FROM tickets t WHERE t.id = :ticket
ON CONFLICT (day, repository_id, workflow, provider, harness_version_id, outcome)
DO UPDATE SET runs = s.runs + 1, cost_usd = s.cost_usd + excluded.cost_usd""")

_RUN_TOTAL = text("""
INSERT INTO run_totals_daily AS s (day, outcome, runs, cost_usd)
VALUES ((CAST(:queued_at AS timestamptz) AT TIME ZONE 'UTC')::date, :outcome, 1, :cost)
ON CONFLICT (day, outcome)
DO UPDATE SET runs = s.runs + 1, cost_usd = s.cost_usd + excluded.cost_usd""")

_TICKET_KIND = text("""
INSERT INTO ticket_run_kinds (ticket_id, workflow, provider, harness_version_id)
VALUES (:ticket, :workflow, :provider, :version)
ON CONFLICT DO NOTHING""")

_TICKET_TOTAL = text("""
INSERT INTO ticket_run_totals AS s (ticket_id, repository_id, runs, cost_usd, gates_failed)
SELECT t.id, coalesce(t.repository_id, 0), 1, :cost, :gates_failed
FROM tickets t WHERE t.id = :ticket
ON CONFLICT (ticket_id)
DO UPDATE SET repository_id = excluded.repository_id, runs = s.runs + 1,
              cost_usd = s.cost_usd + excluded.cost_usd,
              gates_failed = s.gates_failed OR excluded.gates_failed""")

_GATE_DAY = text("""
INSERT INTO gate_failures_daily AS s
    (day, repository_id, workflow, provider, harness_version_id, hook, failures)
SELECT (CAST(:queued_at AS timestamptz) AT TIME ZONE 'UTC')::date,
       coalesce(t.repository_id, 0), :workflow, :provider, :version, :hook, :failures
FROM tickets t WHERE t.id = :ticket
ON CONFLICT (day, repository_id, workflow, provider, harness_version_id, hook)
DO UPDATE SET failures = s.failures + excluded.failures""")


async def count_run(session: AsyncSession, run: RunOver) -> None:
    """Add the run to the rollups, in the caller's transaction (the one ending the run; late
    in it, as the rows of the day are shared by every run that ends that day)."""
    values = {
        "ticket": run.ticket_id,
        "queued_at": run.queued_at,
        "workflow": run.workflow,
        "provider": run.provider or "",
        "version": run.harness_version_id or 0,
        "outcome": run.outcome,
        "cost": run.cost_usd or 0.0,
        "gates_failed": run.outcome == "gates_failed",
    }
    # Always in this order (and hooks by name), so two results taken at once lock the rows
    # they share in the same order.
    await session.execute(_RUN_DAY, values)
    await session.execute(_RUN_TOTAL, values)
    await session.execute(_TICKET_KIND, values)
    await session.execute(_TICKET_TOTAL, values)
    for hook, failures in sorted(Counter(run.failed_gates).items()):
        await session.execute(_GATE_DAY, {**values, "hook": hook, "failures": failures})


# The same as migration b2c8d5e0f3a6's backfill: every run over, counted from `runs`.
REBUILD = (
    "DELETE FROM run_stats_daily",
    "DELETE FROM run_totals_daily",
    "DELETE FROM gate_failures_daily",
    "DELETE FROM ticket_run_kinds",
    "DELETE FROM ticket_run_totals",
    """
    INSERT INTO run_stats_daily
        (day, repository_id, workflow, provider, harness_version_id, outcome, runs, cost_usd)
    SELECT (r.queued_at AT TIME ZONE 'UTC')::date, coalesce(t.repository_id, 0), r.workflow,
           coalesce(r.spec->>'_provider', ''), coalesce(r.harness_version_id, 0),
           coalesce(r.status, r.state), count(*), coalesce(sum(r.cost_usd), 0)
    FROM runs r JOIN tickets t ON t.id = r.ticket_id
    WHERE r.state IN ('finished', 'lost')
    GROUP BY 1, 2, 3, 4, 5, 6""",
    """
    INSERT INTO run_totals_daily (day, outcome, runs, cost_usd)
    SELECT day, outcome, sum(runs), sum(cost_usd) FROM run_stats_daily GROUP BY 1, 2""",
    """
    INSERT INTO gate_failures_daily
        (day, repository_id, workflow, provider, harness_version_id, hook, failures)
    SELECT (r.queued_at AT TIME ZONE 'UTC')::date, coalesce(t.repository_id, 0), r.workflow,
           coalesce(r.spec->>'_provider', ''), coalesce(r.harness_version_id, 0),
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
    GROUP BY 1, 2, 3, 4, 5, 6""",
    """
    INSERT INTO ticket_run_kinds (ticket_id, workflow, provider, harness_version_id)
    SELECT DISTINCT r.ticket_id, r.workflow, coalesce(r.spec->>'_provider', ''),
           coalesce(r.harness_version_id, 0)
    FROM runs r
    WHERE r.state IN ('finished', 'lost')""",
    """
    INSERT INTO ticket_run_totals (ticket_id, repository_id, runs, cost_usd, gates_failed)
    SELECT r.ticket_id, coalesce(t.repository_id, 0), count(*), coalesce(sum(r.cost_usd), 0),
           coalesce(bool_or(r.status = 'gates_failed'), false)
    FROM runs r JOIN tickets t ON t.id = r.ticket_id
    WHERE r.state IN ('finished', 'lost')
    GROUP BY 1, 2""",
)


async def rebuild(session: AsyncSession) -> None:
    """Count every run over again from `runs` (for stores not filled through the engine)."""
    for statement in REBUILD:
        await session.execute(text(statement))
