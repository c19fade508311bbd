"""Deliveries that missed their queue: stored while no worker ran, or whose job Redis lost.
The control worker's cron re-enqueues them, and ingests itself the ones a dead worker left
orphaned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select

from bot.deps import Deps
from bot.intake.deliveries import enqueue_ingest
from bot.intake.ingest import ingest_delivery
from bot.tables.mirror import Delivery, DeliveryStatus

log = structlog.get_logger(__name__)

# A pending delivery older than this missed its queue (Redis was down, or lost the job).
SWEEP_AFTER = timedelta(seconds=60)
# Older than this, its job is taken to be orphaned: a worker died holding it, and arq keeps
# a dead job's in-progress key (blocking a re-enqueue) until the longest job timeout passes
# (10 min). The sweep then ingests it itself; row locks make that safe beside a live job,
# and ingesting is idempotent, so one merely queued behind a long backlog that the sweep
# takes first is a no-op for its job later. Short, so a SIGKILLed worker's deliveries are
# in within a minute (the sweep runs every 15 s).
ORPHANED_AFTER = timedelta(seconds=30)
SWEEP_BATCH = 1000


async def sweep_pending(
    ctx: dict[str, Any],
    *,
    older_than: timedelta = SWEEP_AFTER,
    orphaned_after: timedelta = ORPHANED_AFTER,
) -> int:
    """Re-enqueue pending deliveries nobody is processing, ingest orphaned ones; how many.
    An arq cron (its ctx holds the worker's `deps`)."""
    deps: Deps = ctx["deps"]
    now = datetime.now(UTC)
    async with deps.sessions() as session:
        rows = (
            await session.execute(
                select(Delivery.id, Delivery.source, Delivery.received_at)
                .where(
                    Delivery.status == DeliveryStatus.PENDING,
                    Delivery.received_at < now - older_than,
                )
                .order_by(Delivery.id)
                .limit(SWEEP_BATCH)
            )
        ).all()
    orphaned = 0
    for pk, source, received_at in rows:
        if received_at < now - orphaned_after:
            structlog.contextvars.clear_contextvars()
            await ingest_delivery(deps, pk)
            orphaned += 1
        else:
            await enqueue_ingest(deps, source, pk)
    if rows:
        log.info("swept_pending_deliveries", count=len(rows), ingested_inline=orphaned)
    return len(rows)
