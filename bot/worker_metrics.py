"""Metrics the control worker records in Redis, so any web replica can serve them on /metrics:
deliveries ingested and how long they waited, changes the reconcile cron read back.

Counters are Redis hashes. The ingest latency histogram keeps one count per bucket (the
one a latency falls in), made cumulative when read: a batch of deliveries is one command
per outcome and bucket it has, and two more. Writes and reads each go through MULTI/EXEC
so a scrape never sees a bucket incremented without its `count` (a histogram whose buckets
exceed +Inf is rejected by Prometheus).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import structlog
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

INGEST_COUNTS = "openase:metrics:ingest_total"
INGEST_LATENCY = "openase:metrics:ingest_latency"
RECONCILED_COUNTS = "openase:metrics:reconciled_total"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


async def record_ingests(
    redis: Redis,
    ingested: Iterable[tuple[str, str, float]],
    *,
    noticed: Callable[[BaseException], object] = lambda error: None,
) -> None:
    """Count ingested deliveries, each `(event, outcome, received-to-ingested seconds)`, in
    one transaction. `noticed` is told of a failure first; when it answers that Redis is
    away (bot/servers/outages.py), the outage has said so once and this says nothing."""
    outcomes: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    count, total = 0, 0.0
    for event, outcome, latency_seconds in ingested:
        outcomes[f"{event}|{outcome}"] += 1
        buckets[next((f"in:{b}" for b in LATENCY_BUCKETS if latency_seconds <= b), "in:+Inf")] += 1
        count, total = count + 1, total + latency_seconds
    if not count:
        return
    # A command per distinct key, not per delivery: a batch of 100 is a handful of commands.
    pipe = redis.pipeline(transaction=True)
    for key, times in outcomes.items():
        pipe.hincrby(INGEST_COUNTS, key, times)
    for bucket, times in buckets.items():
        pipe.hincrby(INGEST_LATENCY, bucket, times)
    pipe.hincrby(INGEST_LATENCY, "count", count)
    pipe.hincrbyfloat(INGEST_LATENCY, "sum", total)
    try:
        await pipe.execute()
    except (OSError, RedisError) as exc:
        # Metrics are best effort; the deliveries themselves are already safe in Postgres.
        # (redis-py's ConnectionError is a RedisError, not the builtin one.)
        if noticed(exc) is None:
            log.warning("metrics_not_recorded", error=type(exc).__name__)


async def record_reconciled(redis: Redis, changes: Mapping[str, int]) -> None:
    """Count the changes one reconcile pass applied, by source (github, linear, jira)."""
    if not changes:
        return
    pipe = redis.pipeline(transaction=True)
    for source, count in changes.items():
        pipe.hincrby(RECONCILED_COUNTS, source, count)
    try:
        await pipe.execute()
    except (OSError, RedisError) as exc:  # best effort, as above
        log.warning("metrics_not_recorded", error=type(exc).__name__)


@dataclass(frozen=True)
class IngestSnapshot:
    """The worker's ingest metrics as read from Redis at one instant."""

    counts: dict[tuple[str, str], float] = field(default_factory=dict)  # (event, outcome)
    buckets: tuple[tuple[float, float], ...] = ()  # (upper bound, cumulative count)
    count: float = 0.0
    sum: float = 0.0
    reconciled: dict[str, float] = field(default_factory=dict)  # by source


async def read_ingest(redis: Redis) -> IngestSnapshot:
    """Read the hashes in one transaction (raises RedisError/OSError when Redis is down)."""
    pipe = redis.pipeline(transaction=True)
    pipe.hgetall(INGEST_COUNTS)
    pipe.hgetall(INGEST_LATENCY)
    pipe.hgetall(RECONCILED_COUNTS)
    raw_counts, raw_latency, raw_reconciled = await pipe.execute()
    counts: dict[tuple[str, str], float] = {}
    for key, value in _decoded(raw_counts).items():
        event, sep, outcome = key.partition("|")
        number = _number(value)
        if sep and number is not None:
            counts[(event, outcome)] = number
    latency = _decoded(raw_latency)
    cumulative = 0.0
    buckets = []
    for bound in LATENCY_BUCKETS:
        cumulative += _number(latency.get(f"in:{bound}", "0")) or 0.0
        buckets.append((bound, cumulative))
    return IngestSnapshot(
        counts=counts,
        buckets=tuple(buckets),
        count=_number(latency.get("count", "0")) or 0.0,
        sum=_number(latency.get("sum", "0")) or 0.0,
        reconciled={
            source: number
            for source, value in _decoded(raw_reconciled).items()
            if (number := _number(value)) is not None
        },
    )


def ingest_families(snapshot: IngestSnapshot) -> list[Metric]:
    """`openase_ingest_total{event,outcome}`, the `openase_ingest_latency_seconds` histogram
    and `openase_reconciled_changes_total{source}`."""
    total = CounterMetricFamily(
        "openase_ingest_total",
        "Deliveries ingested by the control worker, by event and outcome (done, ignored, failed).",
        labels=["event", "outcome"],
    )
    for (event, outcome), value in sorted(snapshot.counts.items()):
        total.add_metric([event, outcome], value)
    latency = HistogramMetricFamily(
        "openase_ingest_latency_seconds",
        "Time from a delivery's arrival to its ingestion into the mirror.",
        labels=[],
    )
    # A bucket read can never exceed the total in a consistent snapshot; max() keeps the
    # exposition valid whatever a crashed writer left behind.
    infinity = max([snapshot.count, *(c for _, c in snapshot.buckets)])
    latency.add_metric(
        [],
        buckets=[(str(b), c) for b, c in snapshot.buckets] + [("+Inf", infinity)],
        sum_value=snapshot.sum,
    )
    reconciled = CounterMetricFamily(
        "openase_reconciled_changes",
        "Issues and pull requests the reconcile cron found changed while webhooks were "
        "missed, and applied, by source (github, linear, jira).",
        labels=["source"],
    )
    for source, value in sorted(snapshot.reconciled.items()):
        reconciled.add_metric([source], value)
    return [total, latency, reconciled]


def _decoded(raw: dict[bytes | str, bytes | str]) -> dict[str, str]:
    """A hash as text: the pool may or may not decode responses."""
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None
