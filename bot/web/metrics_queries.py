"""The numbers of the metrics dashboard, aggregated in SQL: each function is one query
whatever the number of tickets or runs, so a page costs a fixed number of round trips (a
harness's impact page reads bot/web/impact_queries.py).

What the tables hold and how the dashboard reads it:
- a run's outcome is `runs.status` (the `RunResult.status`), or its `state` while it has
  none (queued, running, lost); its cost is `runs.cost_usd`; a gate failed when a blocking
  hook did not exit 0 or timed out. The engine counts each run when it is over in the
  rollups of bot/tables/stats.py (runs and cost per queueing day and outcome, gate failures
  per day and hook, a ticket's runs per kind), which is what the dashboard reads; the few
  runs still queued or running it reads from `runs` (ix_runs_state);
- a ticket's moments are stored on its state row, stamped by the engine on the first move
  into each (`ticket_states`, indexed on `done_at`): *labelled* is its first move out of
  the backlog (the trigger label putting it into its workflow), *PR* the first move to
  `in_review` (the run's PR is open), *merged* the first move to `done` (the PR was
  merged, or the issue closed);
- a ticket passed first time when it is done, none of its runs failed its gates, and its
  review never sent it back (a move from `in_review` to anything but `merging` or `done`,
  read from its activity log by ix_activity_sent_back; only the done tickets' rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class Filters:
    """The dashboard's filters; None is "any". The range is whole UTC days: `since` and
    `until` (exclusive) are midnights."""

    since: datetime
    until: datetime
    repo: str | None = None
    workflow: str | None = None
    provider: str | None = None
    harness: str | None = None
    harness_version: int | None = None

    def params(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "first_day": self.since.date(),
            "last_day": (self.until - timedelta(days=1)).date(),
            "repo": self.repo,
            "workflow": self.workflow,
            "provider": self.provider,
            "harness": self.harness,
            "harness_version": self.harness_version,
        }


# The harness versions asked for; an unset filter folds away when planned.
_VERSIONS = """(SELECT hv.id FROM harness_versions hv
                 WHERE hv.name = CAST(:harness AS text)
                   AND (CAST(:harness_version AS integer) IS NULL
                        OR hv.version = CAST(:harness_version AS integer)))"""
_REPO_ID = "(SELECT repo.id FROM repositories repo WHERE repo.full_name = CAST(:repo AS text))"


_UNFILTERED = """(CAST(:repo AS text) IS NULL AND CAST(:workflow AS text) IS NULL
      AND CAST(:provider AS text) IS NULL AND CAST(:harness AS text) IS NULL)"""
_KINDS_UNFILTERED = """(CAST(:workflow AS text) IS NULL AND CAST(:provider AS text) IS NULL
      AND CAST(:harness AS text) IS NULL)"""


def _kind_matches(alias: str) -> str:
    """A rollup row (`alias`) of the workflow, provider and harness version asked."""
    return f"""(CAST(:workflow AS text) IS NULL OR {alias}.workflow = CAST(:workflow AS text))
      AND (CAST(:provider AS text) IS NULL OR {alias}.provider = CAST(:provider AS text))
      AND (CAST(:harness AS text) IS NULL OR {alias}.harness_version_id IN {_VERSIONS})"""


def _scope_matches(alias: str) -> str:
    """A per-day rollup row (`alias`) of the filters and the range."""
    return f"""{alias}.day BETWEEN :first_day AND :last_day
      AND (CAST(:repo AS text) IS NULL OR {alias}.repository_id = {_REPO_ID})
      AND {_kind_matches(alias)}"""


# The runs still queued or running, whenever they were queued: a handful, read once from
# ix_runs_state (MATERIALIZED: no other index of runs is worth a look for them), then
# filtered as they are read.
_OPEN_RUNS = f"""
open_runs AS MATERIALIZED (
    SELECT run.ticket_id, run.state, run.cost_usd, run.queued_at
    FROM (
        SELECT run.ticket_id, run.state, run.cost_usd, run.queued_at, run.workflow,
               run.spec->>'_provider' AS provider, run.harness_version_id
        FROM runs run WHERE run.state IN ('queued', 'running')
        OFFSET 0
    ) run
    WHERE (CAST(:repo AS text) IS NULL OR (
              SELECT ticket.repository_id FROM tickets ticket WHERE ticket.id = run.ticket_id
          ) = {_REPO_ID})
      AND (CAST(:workflow AS text) IS NULL OR run.workflow = CAST(:workflow AS text))
      AND (CAST(:provider AS text) IS NULL OR run.provider = CAST(:provider AS text))
      AND (CAST(:harness AS text) IS NULL OR run.harness_version_id IN {_VERSIONS})
)"""  # noqa: S608 -- joins constants; values are bound


@dataclass(frozen=True)
class DayRuns:
    day: date
    runs: int
    cost_usd: float


# Only this module's constants are joined into the statements; every value is a parameter.
# Unfiltered, the day's totals per outcome; filtered, the rollup by scope (an unset filter,
# or the branch not taken, folds away when planned).
_RUNS = text(f"""
WITH {_OPEN_RUNS}
SELECT day, outcome, sum(runs), sum(cost) FROM (
    SELECT t.day, t.outcome, t.runs, t.cost_usd AS cost
    FROM run_totals_daily t
    WHERE {_UNFILTERED} AND t.day BETWEEN :first_day AND :last_day
    UNION ALL
    SELECT s.day, s.outcome, s.runs, s.cost_usd
    FROM run_stats_daily s WHERE NOT ({_UNFILTERED}) AND {_scope_matches("s")}
    UNION ALL
    SELECT (queued_at AT TIME ZONE 'UTC')::date, state, 1, coalesce(cost_usd, 0)
    FROM open_runs WHERE queued_at >= :since AND queued_at < :until
) counted
GROUP BY 1, 2""")  # noqa: S608 -- joins constants; values are bound


async def runs_in_range(
    session: AsyncSession, filters: Filters
) -> tuple[list[DayRuns], list[tuple[str, int]]]:
    """Runs queued and their cost per UTC day that had any; (outcome, runs), most frequent
    first. One pass over the range's rollup rows for both."""
    days: dict[date, DayRuns] = {}
    outcomes: dict[str, int] = {}
    for day, outcome, runs, cost in await session.execute(_RUNS, filters.params()):
        seen = days.get(day) or DayRuns(day, 0, 0.0)
        days[day] = DayRuns(day, seen.runs + int(runs), seen.cost_usd + float(cost))
        outcomes[str(outcome)] = outcomes.get(str(outcome), 0) + int(runs)
    ranked = sorted(outcomes.items(), key=lambda item: (-item[1], item[0]))
    return [days[day] for day in sorted(days)], ranked


_GATES = text(f"""
SELECT s.hook, sum(s.failures) FROM gate_failures_daily s WHERE {_scope_matches("s")}
GROUP BY 1 ORDER BY 2 DESC, 1""")  # noqa: S608 -- joins constants; values are bound


async def gate_failures(session: AsyncSession, filters: Filters) -> list[tuple[str, int]]:
    """(hook name, blocking failures) over the runs queued in range, most failing first."""
    rows = await session.execute(_GATES, filters.params())
    return [(str(name), int(count)) for name, count in rows]


@dataclass(frozen=True)
class DoneTickets:
    """The tickets done on `day` (None: the whole range); times in hours."""

    day: date | None
    done: int
    first_pass: int
    cost_usd: float
    to_pr_p50: float | None
    to_pr_p90: float | None
    to_merge_p50: float | None
    to_merge_p90: float | None

    @property
    def first_pass_rate(self) -> float | None:
        return self.first_pass / self.done if self.done else None

    @property
    def cost_per_ticket(self) -> float | None:
        return self.cost_usd / self.done if self.done else None


def _hours(seconds: Any) -> float | None:
    return None if seconds is None else float(seconds) / 3600


# A done ticket's runs over: their totals (cost, a failed gate) and its repository from
# ticket_run_totals;
# whether one of them matches the filters from ticket_run_kinds, only when some are set and
# the repository matched, by a probe per ticket (LIMIT 1: not a hash of every ticket's
# kinds; on `total`, so it waits for the join); one still open matches from open_runs.
_DONE = text(f"""
WITH {_OPEN_RUNS},
done AS (
    SELECT (ts.done_at AT TIME ZONE 'UTC')::date AS day,
           extract(epoch FROM ts.pr_at - ts.labelled_at) AS to_pr,
           extract(epoch FROM ts.done_at - ts.labelled_at) AS to_merge,
           NOT coalesce(total.gates_failed, false) AND NOT EXISTS (
               SELECT 1 FROM activity a
               WHERE a.ticket_id = ts.ticket_id AND a.kind = 'state'
                 AND a.data->>'old' = 'in_review'
                 AND a.data->>'new' NOT IN ('in_review', 'merging', 'done')
           ) AS first_pass,
           coalesce(total.cost_usd, 0) AS cost
    FROM ticket_states ts LEFT JOIN ticket_run_totals total ON total.ticket_id = ts.ticket_id
    WHERE ts.done_at >= :since AND ts.done_at < :until
      AND ((total.ticket_id IS NOT NULL
            AND (CAST(:repo AS text) IS NULL OR total.repository_id = {_REPO_ID})
            AND ({_KINDS_UNFILTERED}
                 OR coalesce((SELECT true FROM ticket_run_kinds k
                              WHERE k.ticket_id = total.ticket_id AND {_kind_matches("k")}
                              LIMIT 1), false)))
           OR ts.ticket_id IN (SELECT ticket_id FROM open_runs))
)
SELECT GROUPING(day) = 1 AS total, day, count(*),
       count(*) FILTER (WHERE first_pass), coalesce(sum(cost), 0),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY to_pr) FILTER (WHERE to_pr IS NOT NULL),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY to_pr) FILTER (WHERE to_pr IS NOT NULL),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY to_merge),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY to_merge)
FROM done GROUP BY GROUPING SETS ((day), ()) ORDER BY total, day""")  # noqa: S608 -- joins constants; values are bound


async def done_tickets(
    session: AsyncSession, filters: Filters
) -> tuple[list[DoneTickets], DoneTickets]:
    """Per UTC day, and over the whole range: tickets done, first passes, their cost (every
    run of theirs) and lead times label → PR and label → merge (p50, p90)."""
    days: list[DoneTickets] = []
    total = DoneTickets(None, 0, 0, 0.0, None, None, None, None)
    for row in await session.execute(_DONE, filters.params()):
        is_total, day, done, first, cost, pr50, pr90, merge50, merge90 = row
        numbers = DoneTickets(
            None if is_total else day,
            int(done),
            int(first),
            float(cost),
            _hours(pr50),
            _hours(pr90),
            _hours(merge50),
            _hours(merge90),
        )
        if is_total:
            total = numbers
        else:
            days.append(numbers)
    return days, total


@dataclass(frozen=True)
class Choices:
    """What the filters can be set to, as far as the tables know."""

    repos: list[str]
    workflows: list[str]
    providers: list[str]
    harnesses: list[str]  # name@version


# Distinct values by skip scans (one index probe per value: ix_runs_workflow, ix_runs_provider)
# and harness versions by a probe each (ix_runs_harness_version_id), never a pass over runs.
_CHOICES = """
WITH RECURSIVE workflows(value) AS (
    SELECT min(workflow) FROM runs
    UNION ALL
    SELECT (SELECT min(workflow) FROM runs WHERE workflow > workflows.value)
    FROM workflows WHERE workflows.value IS NOT NULL
),
providers(value) AS (
    SELECT min(spec->>'_provider') FROM runs
    UNION ALL
    SELECT (SELECT min(spec->>'_provider') FROM runs WHERE spec->>'_provider' > providers.value)
    FROM providers WHERE providers.value IS NOT NULL
)
SELECT 'repo', full_name FROM repositories
UNION SELECT 'workflow', value FROM workflows
UNION SELECT 'provider', value FROM providers
UNION SELECT 'harness', hv.name || '@' || hv.version
      FROM harness_versions hv WHERE EXISTS
      (SELECT 1 FROM runs r WHERE r.harness_version_id = hv.id)
ORDER BY 1, 2"""


async def filter_choices(session: AsyncSession) -> Choices:
    """Every repository, and the workflows, providers and harness versions runs had."""
    found: dict[str, list[str]] = {"repo": [], "workflow": [], "provider": [], "harness": []}
    for kind, value in await session.execute(text(_CHOICES)):
        if value is not None:
            found[kind].append(value)
    return Choices(found["repo"], found["workflow"], found["provider"], found["harness"])
