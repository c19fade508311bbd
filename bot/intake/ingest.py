"""Ingest one stored delivery: parse it at the adapter edge, apply it to the mirror.

Exactly-once in effect: the delivery row is locked and its status checked inside the
transaction that applies it, so a redelivered job, a second worker or a sweep re-enqueue
finds it done and does nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from arq import Retry
from redis.exceptions import RedisError
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from adapters.base import ParsedDelivery
from adapters.errors import RateLimited, TransientError
from bot.deps import AfterCommit, Deps
from bot.errors import PayloadError
from bot.intake import mirror
from bot.jobs import BACKFILL_JOB
from bot.registry import parser_for
from bot.servers.outages import Backoff
from bot.tables.mirror import Delivery, DeliveryStatus, DeliveryTicket
from bot.worker_metrics import record_ingest
from harness_store.db import transaction

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 5
# The remote reads applying a delivery makes (a repository's config), as outages count them.
SERVICE_READS = "reads while ingesting (GitHub, Linear, Jira)"
# A delivery waiting on a failing service is tried again after about 1 s, then 2, 4, ... at
# most every 30 s (arq's tries end after MAX_TRIES; the minute's sweep goes on from there).
SERVICE_BACKOFF = Backoff(first=1.0, cap=30.0)


async def ingest_delivery(deps: Deps, pk: int) -> str:
    """Apply delivery `pk`; returns its resulting status (for logs and tests)."""
    try:
        status = await _ingest(deps, pk)
    except (TransientError, RateLimited) as exc:
        # GitHub (or a tracker) is failing, and applying this delivery reads from it (the
        # repository's config): the delivery waits in Postgres, pending, its attempts
        # untouched; arq tries again with backoff, and the sweep after that. Said once.
        failures = deps.outages.services.failed(SERVICE_READS, f"{type(exc).__name__}: {exc}")
        log.debug("delivery_waits_for_service", delivery_pk=pk, error=str(exc))
        raise Retry(defer=SERVICE_BACKOFF.delay(failures - 1)) from exc
    except PayloadError as exc:
        await _finish(deps, pk, DeliveryStatus.FAILED, error=str(exc))
        log.warning("delivery_failed", delivery_pk=pk, error=str(exc))
        return DeliveryStatus.FAILED
    except Exception as exc:  # any failure is recorded on the delivery, never lost
        if deps.outages.noticed(exc) is not None:
            # A store is away (said once, by the outage): the row stays pending, and the
            # sweep takes it up once the store is back. Not a failed attempt of its own.
            raise
        # A bug in applying, or a transient error of the database: count it, retry with
        # backoff, and after MAX_ATTEMPTS keep it as failed with the error.
        attempts = await _count_attempt(deps, pk, f"{type(exc).__name__}: {exc}")
        if attempts is not None and attempts < MAX_ATTEMPTS:
            log.warning("delivery_retry", delivery_pk=pk, attempts=attempts, exc_info=True)
            raise Retry(defer=2**attempts) from exc
        log.error("delivery_failed", delivery_pk=pk, attempts=attempts, exc_info=True)
        return DeliveryStatus.FAILED
    deps.outages.services.succeeded(SERVICE_READS)
    return status


_LOCK = (
    select(
        Delivery.source,
        Delivery.delivery_id,
        Delivery.event,
        Delivery.status,
        Delivery.installation_id,
        Delivery.repository,
        Delivery.payload,
        Delivery.received_at,
    )
    .where(Delivery.id == bindparam("pk"))
    .with_for_update(skip_locked=True)
)


async def _ingest(deps: Deps, pk: int) -> str:
    async with transaction(deps.sessions) as session:
        conn = await session.connection()
        row = (await conn.execute(_LOCK, {"pk": pk})).one_or_none()
        if row is None:
            return "absent_or_locked"
        if row.status != DeliveryStatus.PENDING:
            return str(row.status)
        structlog.contextvars.bind_contextvars(
            delivery_id=row.delivery_id,
            event=row.event,
            installation_id=row.installation_id,
            repository=row.repository,
        )
        parsed: ParsedDelivery = parser_for(row.source)(row.event, row.payload)
        backfill: list[int] = []
        after: AfterCommit | None = None
        error = parsed.ignored_reason
        if not parsed.events:
            status = DeliveryStatus.IGNORED
        else:
            applied = await mirror.apply(
                session, parsed.events, installation_id=row.installation_id
            )
            if deps.workflow is not None:
                # The engine decides in this transaction, so its decisions commit with it.
                after = await deps.workflow.react(session, parsed.events, row.installation_id)
            if applied.tickets:
                await conn.execute(
                    insert(DeliveryTicket),
                    [{"delivery_id": pk, "ticket_id": t} for t in sorted(applied.tickets)],
                )
            backfill = sorted(applied.backfill)
            status = DeliveryStatus.DONE
        processed_at = datetime.now(UTC)
        await conn.execute(
            update(Delivery)
            .where(Delivery.id == pk)
            .values(
                status=status,
                error=error,
                processed_at=processed_at,
                attempts=Delivery.attempts + 1,
            )
        )
    log.info("delivery_ingested", delivery_pk=pk, status=str(status))
    if after is not None:
        await after()
    for repo_id in backfill:
        # After commit, so the job finds the repository row. A lost enqueue is repaired by
        # `openase sync`; the mirror still fills from webhooks meanwhile.
        await enqueue_backfill(deps, repo_id)
    latency = (processed_at - row.received_at).total_seconds()
    await _record_metrics(deps, row.event, str(status), latency)
    return str(status)


async def enqueue_backfill(deps: Deps, repo_id: int) -> None:
    try:
        await deps.redis.enqueue_job(BACKFILL_JOB, repo_id, _job_id=f"backfill:{repo_id}")
    except (RedisError, OSError) as exc:
        log.warning("backfill_not_enqueued", repository_id=repo_id, error=type(exc).__name__)


async def _finish(deps: Deps, pk: int, status: DeliveryStatus, *, error: str) -> None:
    values: dict[str, Any] = {
        "status": status,
        "error": error[:4000],
        "processed_at": datetime.now(UTC),
        "attempts": Delivery.attempts + 1,
    }
    async with transaction(deps.sessions) as session:
        await session.execute(update(Delivery).where(Delivery.id == pk).values(**values))


async def _count_attempt(deps: Deps, pk: int, error: str) -> int | None:
    """Record a failed attempt; at MAX_ATTEMPTS the delivery is marked failed for good."""
    try:
        async with transaction(deps.sessions) as session:
            attempts = (
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id == pk, Delivery.status == DeliveryStatus.PENDING)
                    .values(attempts=Delivery.attempts + 1, error=error[:4000])
                    .returning(Delivery.attempts)
                )
            ).scalar_one_or_none()
            if attempts is not None and attempts >= MAX_ATTEMPTS:
                await session.execute(
                    update(Delivery)
                    .where(Delivery.id == pk)
                    .values(status=DeliveryStatus.FAILED, processed_at=datetime.now(UTC))
                )
            return attempts
    except (SQLAlchemyError, OSError):
        return None  # the database is down: arq retries the job later


async def _record_metrics(deps: Deps, event: str, status: str, latency: float) -> None:
    await record_ingest(deps.redis, event=event, outcome=status, latency_seconds=latency)
