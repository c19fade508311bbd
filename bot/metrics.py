"""Prometheus metrics: the web process's own, plus what a scrape reads from Redis and Postgres.

The web process's counters live in prometheus_client's default registry. The control
worker runs in other processes, so its ingest metrics live in Redis (bot/worker_metrics)
and the pending-delivery gauge in Postgres. Collectors are synchronous, so `scrape` reads
those asynchronously first and renders a registry built for that one scrape. A store that
does not answer is left out (and `openase_metrics_source_up` says so) instead of failing
the whole scrape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import structlog
from prometheus_client import REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from bot.tables.mirror import Delivery, DeliveryStatus
from bot.tables.sync import RedeliveryRequest
from bot.worker_metrics import IngestSnapshot, ingest_families, read_ingest

if TYPE_CHECKING:
    from bot.deps import Deps

log = structlog.get_logger(__name__)
T = TypeVar("T")

WEBHOOK_DELIVERIES = Counter(
    "openase_webhook_deliveries_total",
    "Webhook deliveries received, by source, event and outcome.",
    ["source", "event", "outcome"],
)
WEBHOOK_ACK_SECONDS = Histogram(
    "openase_webhook_ack_seconds",
    "Time from request received to answer, for webhook deliveries.",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
# The webhook relay (OPENASE_WEBHOOK_PROXY_URL) runs in the web process, so these live here.
RELAY_EVENTS = Counter(
    "openase_relay_events_total",
    "Deliveries received over the webhook relay's channel, by outcome (the intake's "
    "outcomes, plus not_github and malformed for messages it could not hand over).",
    ["outcome"],
)
RELAY_RECONNECTS = Counter(
    "openase_relay_reconnects_total",
    "Times the webhook relay lost (or could not open) its channel and connected again.",
)

# Prometheus' default scrape timeout is 10 s; a slow store must not take the scrape with it.
SCRAPE_READ_TIMEOUT = 2.0


@dataclass(frozen=True)
class PendingDeliveries:
    count: int
    oldest_age_seconds: float  # 0 when nothing is pending
    redeliveries: int = 0  # missed deliveries GitHub was asked to send again
    redeliveries_refused: int = 0  # of those, the ones GitHub would not send


class _Fixed:
    """A collector yielding metric families computed before rendering began."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


class _Delegate:
    """Puts another registry's metrics (the process-wide one) into a per-scrape registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


@dataclass(frozen=True)
class MetricsSource:
    """More families a scrape reads (a room above this module provides them: bot.api)."""

    name: str  # its `openase_metrics_source_up` label
    read: Callable[[Deps], Awaitable[list[Metric]]]


async def scrape(
    deps: Deps,
    *,
    time_limit: float = SCRAPE_READ_TIMEOUT,
    sources: Sequence[MetricsSource] = (),
) -> bytes:
    """The text exposition of every metric this process can see right now; each of
    `sources` is read alongside, under the same time limit, and left out if it fails."""
    reading = asyncio.gather(
        *(_guarded(source.name, source.read(deps), time_limit) for source in sources)
    )
    ingest, pending = await asyncio.gather(
        _guarded("redis", read_ingest(deps.redis), time_limit),
        _guarded("postgres", read_pending(deps), time_limit),
    )
    more = await reading
    read_up = [(source.name, read is not None) for source, read in zip(sources, more, strict=True)]
    families = _scrape_families(ingest, pending, read_up)
    for read in more:
        families += read or []
    registry = CollectorRegistry()
    registry.register(_Delegate(REGISTRY))
    registry.register(_Fixed(families))
    return generate_latest(registry)


async def read_pending(deps: Deps) -> PendingDeliveries:
    """Count and age of pending deliveries (the (status, received_at) index answers both),
    and the redeliveries asked of GitHub."""
    async with deps.engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    func.count(),
                    func.coalesce(
                        func.extract("epoch", func.now() - func.min(Delivery.received_at)), 0
                    ),
                ).where(Delivery.status == DeliveryStatus.PENDING)
            )
        ).one()
        asked = (
            await conn.execute(
                select(
                    func.count(),
                    func.count().filter(RedeliveryRequest.error.is_not(None)),
                ).select_from(RedeliveryRequest)
            )
        ).one()
    return PendingDeliveries(
        count=int(row[0]),
        oldest_age_seconds=max(0.0, float(row[1])),
        redeliveries=int(asked[0]),
        redeliveries_refused=int(asked[1]),
    )


async def _guarded(source: str, read: Awaitable[T], time_limit: float) -> T | None:
    """The value `read` produces, or None (logged) when its store fails or is too slow."""
    try:
        async with asyncio.timeout(time_limit):
            return await read
    except (TimeoutError, OSError, RedisError, SQLAlchemyError) as exc:
        log.warning("metrics_source_unavailable", source=source, error=type(exc).__name__)
        return None


def _scrape_families(
    ingest: IngestSnapshot | None,
    pending: PendingDeliveries | None,
    more_up: Sequence[tuple[str, bool]] = (),
) -> list[Metric]:
    up = GaugeMetricFamily(
        "openase_metrics_source_up",
        "Whether this scrape could read a metrics source (1) or left its metrics out (0).",
        labels=["source"],
    )
    up.add_metric(["redis"], 0 if ingest is None else 1)
    up.add_metric(["postgres"], 0 if pending is None else 1)
    for name, read in more_up:
        up.add_metric([name], 1 if read else 0)
    families: list[Metric] = [up]
    if ingest is not None:
        families += ingest_families(ingest)
    if pending is not None:
        count = GaugeMetricFamily(
            "openase_deliveries_pending",
            "Deliveries stored but not yet ingested.",
        )
        count.add_metric([], pending.count)
        age = GaugeMetricFamily(
            "openase_deliveries_oldest_pending_age_seconds",
            "Age of the oldest pending delivery (0 when none): ingest is stuck if it keeps rising.",
        )
        age.add_metric([], pending.oldest_age_seconds)
        redeliveries = CounterMetricFamily(
            "openase_redeliveries",
            "Deliveries GitHub failed to bring us that we asked it to send again, by whether "
            "it agreed (asked) or refused.",
            labels=["outcome"],
        )
        asked = pending.redeliveries - pending.redeliveries_refused
        redeliveries.add_metric(["asked"], asked)
        redeliveries.add_metric(["refused"], pending.redeliveries_refused)
        families += [count, age, redeliveries]
    return families
