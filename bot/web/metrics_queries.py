"""The numbers of the metrics dashboard and of a harness's impact page, aggregated in SQL:
each function is one query whatever the number of tickets or runs, so a page costs a fixed
number of round trips.

What the tables hold and how the dashboard reads it:
- a run's outcome is `runs.status` (the `RunResult.status`), or its `state` while it has
  none (queued, running, lost); its cost is `runs.cost_usd`; its gates are the hook results
  in `runs.result` (JSON): a gate failed when a blocking hook did not exit 0 or timed out;
- a ticket's moments are stored on its state row, stamped by the engine on the first move
  into each (`ticket_states`, indexed on `done_at`): *labelled* is its first move out of
  the backlog (the trigger label putting it into its workflow), *PR* the first move to
  `in_review` (the run's PR is open), *merged* the first move to `done` (the PR was
  merged, or the issue closed);
- a ticket passed first time when it is done, none of its runs failed its gates, and its
  review never sent it back (a move from `in_review` to anything but `merging` or `done`,
  read from its activity log: `activity` rows of kind `state`, whose data carries `old`
  and `new`; only the done tickets' rows are read).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class Filters:
    """The dashboard's filters; None is "any". `until` is exclusive."""

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
            "repo": self.repo,
            "workflow": self.workflow,
            "provider": self.provider,
            "harness": self.harness,
            "harness_version": self.harness_version,
        }


# The runs the filters select, whenever they were queued; the time range is applied by each
# query to the moment it is about (a run's queueing, a ticket's merge). The filters are
# semi-joins on the run's own columns, no join: an unset one folds away when planned, and
# a range of runs is then read from ix_runs_queued_at alone (it includes every column
# counted here), never from the wide rows — except the provider's, which is in the spec.
_SCOPED_RUNS = """
scoped_runs AS (
    SELECT run.id, run.ticket_id, run.state, run.status, run.result, run.cost_usd,
           run.queued_at
    FROM runs run
    WHERE (CAST(:repo AS text) IS NULL OR run.ticket_id IN (
              SELECT ticket.id FROM tickets ticket
              JOIN repositories repo ON repo.id = ticket.repository_id
              WHERE repo.full_name = CAST(:repo AS text)))
      AND (CAST(:workflow AS text) IS NULL OR run.workflow = CAST(:workflow AS text))
      AND (CAST(:provider AS text) IS NULL OR run.spec->>'_provider' = CAST(:provider AS text))
      AND (CAST(:harness AS text) IS NULL OR run.harness_version_id IN (
              SELECT hv.id FROM harness_versions hv
              WHERE hv.name = CAST(:harness AS text)
                AND (CAST(:harness_version AS integer) IS NULL
                     OR hv.version = CAST(:harness_version AS integer))))
)"""


def _scoped(body: str) -> TextClause:
    """`body` after the `scoped_runs` CTE (and others of its own, after a comma)."""
    # Only this module's constants are joined; every value is a bound parameter.
    return text(f"WITH {_SCOPED_RUNS}{body}")


@dataclass(frozen=True)
class DayRuns:
    day: date
    runs: int
    cost_usd: float


async def runs_in_range(
    session: AsyncSession, filters: Filters
) -> tuple[list[DayRuns], list[tuple[str, int]]]:
    """Runs queued and their cost per UTC day that had any; (outcome, runs), most frequent
    first. One pass over the range for both."""
    query = _scoped("""
        SELECT (queued_at AT TIME ZONE 'UTC')::date AS day, coalesce(status, state), count(*),
               coalesce(sum(cost_usd), 0)
        FROM scoped_runs WHERE queued_at >= :since AND queued_at < :until
        GROUP BY 1, 2""")
    days: dict[date, DayRuns] = {}
    outcomes: dict[str, int] = {}
    for day, outcome, runs, cost in await session.execute(query, filters.params()):
        seen = days.get(day) or DayRuns(day, 0, 0.0)
        days[day] = DayRuns(day, seen.runs + int(runs), seen.cost_usd + float(cost))
        outcomes[str(outcome)] = outcomes.get(str(outcome), 0) + int(runs)
    ranked = sorted(outcomes.items(), key=lambda item: (-item[1], item[0]))
    return [days[day] for day in sorted(days)], ranked


async def gate_failures(session: AsyncSession, filters: Filters) -> list[tuple[str, int]]:
    """(hook name, blocking failures) over the runs in range, most failing first."""
    # A blocking hook that failed makes the run `gates_failed` (runner.execute), so only
    # those runs' results are read.
    query = _scoped("""
        SELECT hook->>'name' AS name, count(*)
        FROM scoped_runs,
             jsonb_array_elements(coalesce(result->'hook_results', '[]'::jsonb)) AS hook
        WHERE queued_at >= :since AND queued_at < :until AND status = 'gates_failed'
          AND hook->>'on_failure' = 'block'
          AND (coalesce((hook->>'exit_code')::integer, -1) <> 0
               OR coalesce((hook->>'timed_out')::boolean, false))
        GROUP BY 1 ORDER BY 2 DESC, 1""")
    rows = await session.execute(query, filters.params())
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


async def done_tickets(
    session: AsyncSession, filters: Filters
) -> tuple[list[DoneTickets], DoneTickets]:
    """Per UTC day, and over the whole range: tickets done, first passes, their cost (every
    run of theirs) and lead times label → PR and label → merge (p50, p90)."""
    query = _scoped(""",
    done_in_range AS (
        SELECT ts.ticket_id, ts.labelled_at, ts.pr_at, ts.done_at
        FROM ticket_states ts
        WHERE ts.done_at >= :since AND ts.done_at < :until
          AND EXISTS (SELECT 1 FROM scoped_runs s WHERE s.ticket_id = ts.ticket_id)
    ),
    ticket_runs AS (
        SELECT r.ticket_id, bool_or(r.status = 'gates_failed') AS gates_failed,
               coalesce(sum(r.cost_usd), 0) AS cost
        FROM runs r JOIN done_in_range d ON d.ticket_id = r.ticket_id
        GROUP BY r.ticket_id
    ),
    done AS (
        SELECT (d.done_at AT TIME ZONE 'UTC')::date AS day,
               extract(epoch FROM d.pr_at - d.labelled_at) AS to_pr,
               extract(epoch FROM d.done_at - d.labelled_at) AS to_merge,
               NOT coalesce(t.gates_failed, false) AND NOT EXISTS (
                   SELECT 1 FROM activity a
                   WHERE a.ticket_id = d.ticket_id AND a.kind = 'state'
                     AND a.data->>'old' = 'in_review'
                     AND a.data->>'new' NOT IN ('in_review', 'merging', 'done')
               ) AS first_pass,
               coalesce(t.cost, 0) AS cost
        FROM done_in_range d LEFT JOIN ticket_runs t ON t.ticket_id = d.ticket_id
    )
    SELECT GROUPING(day) = 1 AS total, day, count(*),
           count(*) FILTER (WHERE first_pass), coalesce(sum(cost), 0),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY to_pr) FILTER (WHERE to_pr IS NOT NULL),
           percentile_cont(0.9) WITHIN GROUP (ORDER BY to_pr) FILTER (WHERE to_pr IS NOT NULL),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY to_merge),
           percentile_cont(0.9) WITHIN GROUP (ORDER BY to_merge)
    FROM done GROUP BY GROUPING SETS ((day), ()) ORDER BY total, day""")
    days: list[DoneTickets] = []
    total = DoneTickets(None, 0, 0, 0.0, None, None, None, None)
    for row in await session.execute(query, filters.params()):
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


@dataclass(frozen=True)
class VersionImpact:
    """What one harness version's runs did; time to PR in hours."""

    version: int
    runs: int
    ended: int  # finished or lost
    succeeded: int
    tickets: int
    cost_usd: float
    to_pr_p50: float | None
    prs: int

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.ended if self.ended else None

    @property
    def attempts_per_ticket(self) -> float | None:
        return self.runs / self.tickets if self.tickets else None

    @property
    def cost_per_run(self) -> float | None:
        return self.cost_usd / self.runs if self.runs else None


async def harness_impact(session: AsyncSession, name: str) -> list[VersionImpact]:
    """Per version of harness `name` that runs were given: runs, success, attempts per
    ticket, cost, and time to PR — from a run's queueing to the ticket's move to
    `in_review` that the run caused (the activity row carries the run's id)."""
    # Runs are counted per version and ticket first, so tickets are rows to count rather
    # than a DISTINCT to sort; the runs come from ix_runs_harness_version_id alone (it
    # includes every column read here; reading it twice beats materialising the CTE) and
    # the PR moves from ix_activity_pr_moves.
    query = """
    WITH version_runs AS NOT MATERIALIZED (
        SELECT hv.version, r.id, r.ticket_id, r.state, r.status, r.cost_usd, r.queued_at
        FROM runs r JOIN harness_versions hv ON hv.id = r.harness_version_id
        WHERE hv.name = :name
    ),
    per_ticket AS (
        SELECT version, count(*) AS runs,
               count(*) FILTER (WHERE state IN ('finished', 'lost')) AS ended,
               count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
               coalesce(sum(cost_usd), 0) AS cost
        FROM version_runs GROUP BY version, ticket_id
    ),
    totals AS (
        SELECT version, sum(runs) AS runs, sum(ended) AS ended, sum(succeeded) AS succeeded,
               count(*) AS tickets, sum(cost) AS cost
        FROM per_ticket GROUP BY version
    ),
    prs AS (
        SELECT v.version, extract(epoch FROM min(a.at) - v.queued_at) AS to_pr
        FROM activity a JOIN version_runs v ON v.id = a.run_id
        WHERE a.kind = 'state' AND a.data->>'new' = 'in_review'
        GROUP BY v.version, v.id, v.queued_at
    ),
    pr_times AS (
        SELECT version, percentile_cont(0.5) WITHIN GROUP (ORDER BY to_pr) AS to_pr,
               count(*) AS prs
        FROM prs GROUP BY version
    )
    SELECT t.version, t.runs, t.ended, t.succeeded, t.tickets, t.cost, p.to_pr,
           coalesce(p.prs, 0)
    FROM totals t LEFT JOIN pr_times p ON p.version = t.version
    ORDER BY t.version"""
    rows = await session.execute(text(query), {"name": name})
    return [
        VersionImpact(
            int(version),
            int(runs),
            int(ended),
            int(succeeded),
            int(tickets),
            float(cost),
            _hours(to_pr),
            int(prs),
        )
        for version, runs, ended, succeeded, tickets, cost, to_pr, prs in rows
    ]
