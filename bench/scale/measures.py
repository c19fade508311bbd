"""Reading back what happened, from where the truth is: PostgreSQL (deliveries, runs, the
outbox, ticket states), the fake GitHub's state and request log (as sampled), and the
worker processes' JSON logs (engine tick durations, which worker ingested what)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis

from bench.scale.cluster import Cluster
from bench.scale.sampler import Request
from bot.effects.kinds import STATUS_MARKER, EffectKind
from bot.engine.jobs import SLOW_TICK_SECONDS, TICK_SECONDS
from runner.contract import run_events_stream

TICK_EVERY = 60 / len(TICK_SECONDS)
_MARKER = re.compile(r"<!-- openase:[^>]*-->")


async def fetch(cluster: Cluster, query: str, *args: Any) -> list[asyncpg.Record]:
    # Generous: with 200 sandboxed agents starting at once, a connection took over 10 s.
    conn = await asyncpg.connect(cluster.postgres.url, timeout=60)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query, *args, timeout=60)
        return rows
    finally:
        await conn.close()


async def unpersisted(cluster: Cluster, numbers: list[int]) -> int:
    """Events the runs of these tickets wrote to their Redis streams and `run_events` does
    not hold (every run is over when this is asked: nothing may be left)."""
    rows = await fetch(
        cluster,
        "select r.id, coalesce(max(e.seq), 0) from runs r join tickets t on t.id = r.ticket_id "
        "left join run_events e on e.run_id = r.id "
        "where t.source = 'github' and t.number = any($1) group by r.id",
        numbers,
    )
    redis = Redis.from_url(cluster.redis.url)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for run_id, _ in rows:
                pipe.xrevrange(run_events_stream(run_id), count=1)
            lasts = await pipe.execute()
    finally:
        await redis.aclose()
    missing = 0
    for (_, stored), last in zip(rows, lasts, strict=True):
        if last:  # (a stream the runner let expire says nothing)
            missing += max(0, int(json.loads(last[0][1][b"event"])["seq"]) - int(stored))
    return missing


async def wait_ingested(cluster: Cluster, delivery_ids: list[str], within: float) -> float | None:
    """Seconds until every one of these deliveries was ingested (None: not in time)."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        rows = await fetch(
            cluster,
            "select count(*) from deliveries where delivery_id = any($1) "
            "and status in ('done', 'ignored')",
            delivery_ids,
        )
        if rows[0][0] >= len(delivery_ids):
            return time.monotonic() - began
        await asyncio.sleep(1)
    return None


_BATCH = """
    with t as (select id from tickets where source = 'github' and number = any($1))
    select
      (select count(*) from ticket_states s join t on t.id = s.ticket_id
        where s.state = 'in_review'),
      (select count(*) from runs r join t on t.id = r.ticket_id where r.state = 'running'),
      (select count(*) from runs r join t on t.id = r.ticket_id
        where r.state in ('queued', 'running')),
      (select count(*) from outbox o join t on t.id = o.ticket_id where o.status = 'pending')
"""


async def batch_progress(cluster: Cluster, numbers: list[int]) -> tuple[int, int, int, int]:
    """(in review, running, open runs, effects pending) of these tickets."""
    row = (await fetch(cluster, _BATCH, numbers))[0]
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def _log_events(paths: list[Path], names: set[str]) -> list[dict[str, Any]]:
    events = []
    for path in paths:
        with contextlib.suppress(OSError), path.open() as lines:
            for line in lines:
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        event = json.loads(line)
                        if event.get("event") in names:
                            events.append(event)
    return events


@dataclass(frozen=True)
class Ticks:
    slots: int  # ticks due in the window (one per TICK_EVERY seconds)
    slow: list[float]  # seconds of each tick that logged its duration (>= the threshold,
    # or one that did something, or arq's timeout cut it short); the others took under
    # SLOW_TICK_SECONDS
    timed_out: int = 0  # cut short by arq's job timeout (counted in `slow` at their length)
    most_at_once: int = 1  # ticks running at the same moment (one per worker was meant)
    # The slowest tick's own CPU (its thread's, from its log line; None: not logged): far
    # below its length, it was waiting (round trips, the interpreter's lock, the machine).
    slowest_cpu: float | None = None

    def quantile(self, q: float) -> float | None:
        """The q-quantile in seconds; None when it is among the unlogged (fast) ticks."""
        total = max(self.slots, len(self.slow))
        fast = total - len(self.slow)
        index = min(total - 1, int(q * total))
        if index < fast:
            return None
        ordered = sorted(self.slow)
        value = ordered[index - fast]
        return None if value < SLOW_TICK_SECONDS else value


# arq's line for a job its timeout cancelled: "120.06s ! engine_tick failed, TimeoutError: "
# (a worker with a fixed engine ticks in arq); the engine clock's is `engine_tick_timed_out`.
_TIMED_OUT = re.compile(r"^\s*(?P<seconds>[0-9.]+)s ! engine_tick failed, TimeoutError")


def _tick_lines(paths: list[Path]) -> list[tuple[float, float, bool, float | None]]:
    """(ended at, seconds, timed out, thread CPU seconds) of every engine tick these logs
    show."""
    found = []
    for path in paths:
        with contextlib.suppress(OSError), path.open() as lines:
            for line in lines:
                if "engine_tick" not in line or not line.startswith("{"):
                    continue
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    at = datetime.fromisoformat(str(event.get("timestamp"))).timestamp()
                    text = str(event.get("event"))
                    cut = _TIMED_OUT.match(text)
                    cpu = event.get("thread_cpu_seconds")
                    cpu = float(cpu) if isinstance(cpu, int | float) else None
                    if text == "engine_tick" and "seconds" in event:
                        found.append((at, float(event["seconds"]), False, cpu))
                    elif text == "engine_tick_timed_out" and "seconds" in event:
                        found.append((at, float(event["seconds"]), True, None))
                    elif cut is not None:
                        found.append((at, float(cut["seconds"]), True, None))
    return found


def ticks(cluster: Cluster, began: float, ended: float) -> Ticks:
    """The engine ticks of every control worker that ended between two epoch times."""
    lines = _tick_lines([p.log for p in cluster.of("worker")])
    mine = [line for line in lines if began <= line[0] <= ended]
    edges = sorted(
        [(at - seconds, 1) for at, seconds, _, _ in mine] + [(at, -1) for at, _, _, _ in mine]
    )
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return Ticks(
        int((ended - began) / TICK_EVERY),
        [seconds for _, seconds, _, _ in mine],
        timed_out=sum(1 for _, _, cut, _ in mine if cut),
        most_at_once=max(1, most),
        slowest_cpu=max(mine, key=lambda line: line[1])[3] if mine else None,
    )


def content_per_minute(requests: list[Request], began: float, ended: float) -> dict[int, int]:
    """Per installation: the most content-creating requests that reached GitHub within any
    60 s of the window (a rolling minute, as GitHub counts, not whole clock minutes)."""
    arrivals: dict[int, list[float]] = {}
    for request in requests:
        if request.content and request.installation is not None and began <= request.at <= ended:
            arrivals.setdefault(request.installation, []).append(request.at)
    most: dict[int, int] = {}
    for installation, times in arrivals.items():
        times.sort()
        first = 0
        for last, at in enumerate(times):
            while at - times[first] >= 60:
                first += 1
            most[installation] = max(most.get(installation, 0), last - first + 1)
    return most


def content_total(requests: list[Request]) -> dict[int, int]:
    counted: Counter[int] = Counter(
        r.installation for r in requests if r.content and r.installation is not None
    )
    return dict(counted)


async def status_edits(cluster: Cluster) -> tuple[int, int]:
    """(performed, superseded) status-comment updates of the outbox."""
    rows = await fetch(
        cluster,
        "select count(*) filter (where not coalesce(result ? 'superseded_by', false)), "
        "count(*) filter (where coalesce(result ? 'superseded_by', false)) "
        "from outbox where kind = $1 and status = 'done'",
        EffectKind.STATUS_COMMENT.value,
    )
    return int(rows[0][0]), int(rows[0][1])


@dataclass
class Twice:
    tickets: int = 0
    runs_not_one: int = 0  # tickets without exactly one run
    status_comments_not_one: int = 0
    duplicate_pulls: int = 0
    duplicate_checks: int = 0
    deliveries_missing: int = 0  # acknowledged, no row or not ingested
    deliveries_ingested_twice: int = 0

    @property
    def clean(self) -> bool:
        return not any(
            (
                self.runs_not_one,
                self.status_comments_not_one,
                self.duplicate_pulls,
                self.duplicate_checks,
                self.deliveries_missing,
                self.deliveries_ingested_twice,
            )
        )


async def done_twice(cluster: Cluster, numbers: list[int], delivery_ids: list[str]) -> Twice:
    """What of these tickets' and deliveries' work was done other than exactly once."""
    twice = Twice(tickets=len(numbers))
    rows = await fetch(
        cluster,
        "select t.number, count(r.id) from tickets t left join runs r on r.ticket_id = t.id "
        "where t.source = 'github' and t.number = any($1) group by t.number",
        numbers,
    )
    runs = {int(r[0]): int(r[1]) for r in rows}
    twice.runs_not_one = sum(1 for n in numbers if runs.get(n) != 1)
    fake, repo = cluster.github.fake, cluster.repo
    status: Counter[int] = Counter()
    for comment in fake.comments.values():
        if STATUS_MARKER in (comment.get("body") or ""):
            status[comment["_on"][1]] += 1
    twice.status_comments_not_one = sum(1 for n in numbers if status[n] != 1)
    pulls = Counter(pull["head"]["ref"] for pull in repo.pulls)
    twice.duplicate_pulls = sum(n - 1 for n in pulls.values() if n > 1)
    checks = Counter((run["name"], run["head_sha"]) for run in fake.check_runs.values())
    twice.duplicate_checks = sum(n - 1 for n in checks.values() if n > 1)
    rows = await fetch(
        cluster,
        "select delivery_id, count(*) from deliveries where delivery_id = any($1) "
        "and status in ('done', 'ignored') group by delivery_id",
        delivery_ids,
    )
    stored = {r[0]: int(r[1]) for r in rows}
    twice.deliveries_missing = sum(1 for d in delivery_ids if d not in stored)
    logs = [p.log for p in cluster.of("worker")]
    ingested = Counter(
        delivery
        for line in _log_events(logs, {"deliveries_ingested"})
        for delivery in line.get("delivery_ids", ())
    )
    wanted = set(delivery_ids)
    twice.deliveries_ingested_twice = sum(
        1 for d, n in ingested.items() if d in wanted and n > 1
    ) + sum(n - 1 for n in stored.values() if n > 1)
    return twice
