"""Metrics the control worker records in Redis, so any web replica can serve them on /metrics.

Counters are Redis hashes; the ingest latency histogram keeps cumulative bucket counts
the way Prometheus wants them.
"""

from __future__ import annotations

import structlog
from redis.asyncio import Redis

log = structlog.get_logger(__name__)

INGEST_COUNTS = "openase:metrics:ingest_total"
INGEST_LATENCY = "openase:metrics:ingest_latency"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


async def record_ingest(
    redis: Redis, *, event: str, outcome: str, latency_seconds: float
) -> None:
    """Count one ingested delivery and its received-to-ingested latency."""
    pipe = redis.pipeline(transaction=False)
    pipe.hincrby(INGEST_COUNTS, f"{event}|{outcome}", 1)
    for bound in LATENCY_BUCKETS:
        if latency_seconds <= bound:
            pipe.hincrby(INGEST_LATENCY, f"le:{bound}", 1)
    pipe.hincrby(INGEST_LATENCY, "count", 1)
    pipe.hincrbyfloat(INGEST_LATENCY, "sum", latency_seconds)
    try:
        await pipe.execute()
    except (OSError, ConnectionError) as exc:
        # Metrics are best effort; the delivery itself is already safe in Postgres.
        log.warning("metrics_not_recorded", error=type(exc).__name__)
