"""What `/metrics` reads about runs, runners, tickets and the outbox at scrape time (bot.metrics).

Every family is an aggregate with low-cardinality labels (state, outcome, machine, status,
token kind): never a ticket or a run. From Postgres, four statements: runs by state and
outcome; finished runs' durations as a histogram with their tokens and cost; the outbox by
status; lead time (label → PR, label → merge) as two histograms. From Redis: the runner
registry and each machine's queue length (one pipeline).

Lead time reads the moments each ticket's state row keeps (`labelled_at`, `pr_at`,
`done_at`, stamped by the engine on the first move into each state): one pass over
`ticket_states`, one row per ticket, never the activity log.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import BigInteger, ColumnElement, Float, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.deps import Deps
from bot.engine.runs.machines import registered
from bot.metrics import MetricsSource
from bot.tables.workflow import EffectStatus, OutboxEffect, Run, RunState, TicketState
from runner.contract import run_queue

DURATION_BUCKETS = (60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0)
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")
OUTBOX_STATUSES = (EffectStatus.PENDING, EffectStatus.FAILED)
# Lead time is hours to days: 15 min, 30 min, 1 h, 2 h, 4 h, 8 h, 1 d, 2 d, 3 d, 7 d.
LEAD_TIME_BUCKETS = (
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    86400.0,
    172800.0,
    259200.0,
    604800.0,
)


async def run_families(deps: Deps) -> list[Metric]:
    """Runs by state and outcome, finished runs' durations, tokens and cost, the outbox."""
    duration = func.extract("epoch", Run.finished_at - Run.started_at)
    usage = Run.result["usage"]
    async with deps.engine.connect() as conn:
        by_state = (
            await conn.execute(
                select(Run.state, Run.status, func.count()).group_by(Run.state, Run.status)
            )
        ).all()
        finished = (
            await conn.execute(
                select(
                    *(func.count(duration).filter(duration <= bound) for bound in DURATION_BUCKETS),
                    func.count(duration),
                    func.coalesce(func.sum(duration), 0),
                    func.coalesce(func.sum(Run.cost_usd), 0),
                    *(
                        func.coalesce(func.sum(cast(usage[f"{kind}_tokens"].astext, BigInteger)), 0)
                        for kind in TOKEN_KINDS
                    ),
                ).where(Run.finished_at.is_not(None))
            )
        ).one()
        outbox = (
            await conn.execute(
                select(
                    OutboxEffect.status,
                    func.count(),
                    cast(
                        func.coalesce(
                            func.extract("epoch", func.now() - func.min(OutboxEffect.created_at)),
                            0,
                        ),
                        Float,
                    ),
                )
                .where(OutboxEffect.status.in_(OUTBOX_STATUSES))
                .group_by(OutboxEffect.status)
            )
        ).all()
        lead = await lead_times(conn)

    active = GaugeMetricFamily(
        "openase_runs_active", "Runs sent to a machine and not over, by state.", labels=["state"]
    )
    ended = CounterMetricFamily(
        "openase_runs_finished",
        "Runs that are over, by outcome (the RunResult's status, or lost: no result came).",
        labels=["outcome"],
    )
    active_counts: dict[str, float] = {RunState.QUEUED.value: 0, RunState.RUNNING.value: 0}
    outcomes: dict[str, float] = {}
    for state, status, runs in by_state:
        if state in active_counts:
            active_counts[state] += runs
        else:
            outcome = "lost" if state == RunState.LOST else (status or "unknown")
            outcomes[outcome] = outcomes.get(outcome, 0) + runs
    for state, in_state in active_counts.items():
        active.add_metric([state], in_state)
    for outcome, over in sorted(outcomes.items()):
        ended.add_metric([outcome], over)

    counts = [float(n) for n in finished[: len(DURATION_BUCKETS) + 1]]
    total_seconds, cost = float(finished[len(DURATION_BUCKETS) + 1]), float(finished[-5])
    durations = HistogramMetricFamily(
        "openase_run_duration_seconds",
        "Finished runs, from start to result.",
    )
    buckets = [(str(bound), n) for bound, n in zip(DURATION_BUCKETS, counts, strict=False)]
    durations.add_metric([], [*buckets, ("+Inf", counts[-1])], total_seconds)
    tokens = CounterMetricFamily(
        "openase_run_tokens", "Tokens the agents used over all runs, by kind.", labels=["kind"]
    )
    for kind, used in zip(TOKEN_KINDS, finished[-4:], strict=True):
        tokens.add_metric([kind], float(used))
    spent = CounterMetricFamily("openase_run_cost_usd", "What all runs cost, in US dollars.")
    spent.add_metric([], cost)

    effects = GaugeMetricFamily(
        "openase_outbox_effects",
        "Side effects waiting to be performed (pending) or given up on (failed).",
        labels=["status"],
    )
    oldest = GaugeMetricFamily(
        "openase_outbox_oldest_pending_age_seconds",
        "Age of the oldest pending side effect (0 when none): the outbox is stuck if it rises.",
    )
    by_status = {str(status): (count, age) for status, count, age in outbox}
    for status in OUTBOX_STATUSES:
        effects.add_metric([status.value], by_status.get(status.value, (0, 0.0))[0])
    oldest.add_metric([], max(0.0, float(by_status.get(EffectStatus.PENDING, (0, 0.0))[1])))
    return [active, ended, durations, tokens, spent, effects, oldest, *lead]


async def lead_times(conn: AsyncConnection) -> list[Metric]:
    """Label → PR and label → merge over every ticket that got there, in one statement."""
    to_pr = func.extract("epoch", TicketState.pr_at - TicketState.labelled_at)
    to_merge = func.extract("epoch", TicketState.done_at - TicketState.labelled_at)
    columns: list[ColumnElement[Any]] = []
    for seconds in (to_pr, to_merge):
        columns += [func.count(seconds).filter(seconds <= bound) for bound in LEAD_TIME_BUCKETS]
        columns += [func.count(seconds), func.coalesce(func.sum(seconds), 0)]
    row = (await conn.execute(select(*columns).where(TicketState.labelled_at.is_not(None)))).one()
    values = [float(value) for value in row]
    families: list[Metric] = []
    for name, what in (
        ("openase_lead_time_to_pr_seconds", "its PR opened (the first move to in_review)"),
        ("openase_lead_time_to_merge_seconds", "it was done (its PR merged, or it closed)"),
    ):
        *counts, total, summed = values[: len(LEAD_TIME_BUCKETS) + 2]
        del values[: len(LEAD_TIME_BUCKETS) + 2]
        family = HistogramMetricFamily(
            name, f"Tickets, from the trigger label (first move out of the backlog) to {what}."
        )
        buckets = [(str(bound), n) for bound, n in zip(LEAD_TIME_BUCKETS, counts, strict=True)]
        family.add_metric([], [*buckets, ("+Inf", total)], summed)
        families.append(family)
    return families


async def runner_families(deps: Deps) -> list[Metric]:
    """Runners online (fresh heartbeat), each one's slots, and each machine's queue length."""
    machines = await registered(deps.redis)
    async with deps.redis.pipeline(transaction=False) as pipe:
        for machine in machines:
            pipe.zcard(run_queue(machine.name))  # arq's queue is a sorted set
        depths: Sequence[int] = await pipe.execute()
    now = time.time()
    online = GaugeMetricFamily(
        "openase_runners_online", "Registered runners with a fresh heartbeat."
    )
    online.add_metric([], sum(1 for machine in machines if machine.fresh(now)))
    slots = GaugeMetricFamily(
        "openase_runner_slots",
        "Each registered runner's run slots: its capacity and how many are running.",
        labels=["machine", "kind"],
    )
    queued = GaugeMetricFamily(
        "openase_run_queue_depth",
        "Runs waiting in each machine's queue (openase:runs:<machine>).",
        labels=["machine"],
    )
    for machine, depth in zip(machines, depths, strict=True):
        slots.add_metric([machine.name, "capacity"], machine.capacity)
        slots.add_metric([machine.name, "running"], machine.running)
        queued.add_metric([machine.name], depth)
    return [online, slots, queued]


SOURCES: tuple[MetricsSource, ...] = (
    MetricsSource("runs", run_families),
    MetricsSource("runners", runner_families),
)
