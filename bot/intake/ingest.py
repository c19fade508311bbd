"""Ingest stored deliveries: parse each at the adapter edge, apply it to the mirror.

Exactly-once in effect: a delivery's row is locked (`FOR UPDATE SKIP LOCKED`) and its status
checked inside the transaction that applies it, so a second worker, a redelivery or a
retry finds it done (or locked) and does nothing.

Batches: `ingest_batch` claims up to `BATCH` due pending deliveries, oldest first, and
applies them in one transaction: one commit, one status update and one link insert for
all, where each delivery alone cost a job, a transaction and four statements of its own.
A delivery that fails to apply rolls the batch back; each of its deliveries is then
ingested alone (`ingest_delivery`), so one bad delivery costs the others only a retry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from redis.exceptions import RedisError
from sqlalchemy import Row, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import BigInteger, String, Text

from adapters.base import ParsedDelivery
from adapters.errors import RateLimited, TransientError
from bot.deps import AfterCommit, Deps
from bot.errors import PayloadError
from bot.intake import mirror
from bot.intake.label_order import label_scopes, lock_label_scopes
from bot.jobs import BACKFILL_JOB
from bot.registry import parser_for
from bot.servers.outages import Backoff
from bot.tables.mirror import Delivery, DeliveryStatus
from bot.worker_metrics import record_ingests
from harness_store.db import transaction

log = structlog.get_logger(__name__)

BATCH = 100  # deliveries applied in one transaction at most
MAX_ATTEMPTS = 5
WAITING = "waiting"  # the outcome of a delivery held back until its retry time
# The remote reads applying a delivery makes (a repository's config), as outages count them.
SERVICE_READS = "reads while ingesting (GitHub, Linear, Jira)"
# A delivery waiting on a failing service is tried again after about 1 s, then 2, 4, ... at
# most every 30 s, however long the outage lasts, without using up its attempts.
SERVICE_BACKOFF = Backoff(first=1.0, cap=30.0)

_COLUMNS = (
    Delivery.id,
    Delivery.source,
    Delivery.delivery_id,
    Delivery.event,
    Delivery.status,
    Delivery.installation_id,
    Delivery.repository,
    Delivery.payload,
    Delivery.received_at,
)
# The due pending deliveries, oldest first (ix_deliveries_pending), that no one else holds.
_CLAIM = (
    select(*_COLUMNS)
    .where(
        Delivery.status == DeliveryStatus.PENDING,
        (Delivery.retry_at.is_(None)) | (Delivery.retry_at <= bindparam("now")),
    )
    .order_by(Delivery.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_LOCK_ONE = (
    select(*_COLUMNS).where(Delivery.id == bindparam("pk")).with_for_update(skip_locked=True)
)
_FINISH = text(
    """
    UPDATE deliveries AS d
    SET status = v.status, error = v.error, processed_at = :now, retry_at = NULL,
        attempts = d.attempts + 1
    FROM unnest(:ids, :statuses, :errors) AS v(id, status, error)
    WHERE d.id = v.id
    """
).bindparams(
    bindparam("ids", type_=ARRAY(BigInteger)),
    bindparam("statuses", type_=ARRAY(String)),
    bindparam("errors", type_=ARRAY(Text)),
)

# Which tickets each delivery of a batch touched, in one statement (an insert each was
# asyncpg's executemany: a statement per row).
_LINK = text(
    """
    INSERT INTO delivery_tickets (delivery_id, ticket_id)
    SELECT * FROM unnest(:deliveries, :tickets)
    """
).bindparams(
    bindparam("deliveries", type_=ARRAY(BigInteger)),
    bindparam("tickets", type_=ARRAY(BigInteger)),
)


@dataclass(frozen=True)
class Ingested:
    """What became of one delivery (`status`: a DeliveryStatus, WAITING, or why not taken)."""

    pk: int
    event: str
    status: str
    latency: float = 0.0  # seconds from received to ingested
    delivery_id: str = ""


@dataclass
class _Applied:
    """What one transaction applied, for after its commit."""

    ingested: list[Ingested] = field(default_factory=list)
    afters: list[AfterCommit] = field(default_factory=list)
    backfill: set[int] = field(default_factory=set)


async def ingest_batch(
    deps: Deps, limit: int = BATCH, *, prepare: Callable[[], object] = lambda: None
) -> list[Ingested]:
    """Claim and apply up to `limit` due pending deliveries; what became of each.

    `prepare` runs once the deliveries are claimed, before they are applied (the worker
    hands ingest the engine of a GitHub App registered since): whatever happened before a
    delivery was stored has happened by then. (Run before the claim, a delivery signed by
    an App registered in between was applied without its engine, and never acted on.)

    An empty list: none is due (or every due one is held by another worker)."""
    claimed: list[int] = []
    try:
        async with transaction(deps.sessions) as session:
            conn = await session.connection()
            rows = (await conn.execute(_CLAIM, {"now": datetime.now(UTC), "limit": limit})).all()
            if not rows:
                return []
            claimed = [row.id for row in rows]
            prepare()
            applied = await _apply(deps, session, rows)
    except Exception as error:
        if deps.outages.noticed(error) is not None:
            raise  # a store is away: the rows stay pending, claimed again once it is back
        log.info("batch_applied_alone", deliveries=len(claimed), error=type(error).__name__)
        return [await _alone(deps, pk) for pk in claimed]
    deps.outages.services.succeeded(SERVICE_READS)
    await _after_commit(deps, applied)
    return applied.ingested


async def ingest_delivery(deps: Deps, pk: int) -> str:
    """Apply delivery `pk` alone, now (due or not); its resulting status."""
    return (await _alone(deps, pk)).status


async def _alone(deps: Deps, pk: int) -> Ingested:
    structlog.contextvars.clear_contextvars()
    try:
        async with transaction(deps.sessions) as session:
            conn = await session.connection()
            row = (await conn.execute(_LOCK_ONE, {"pk": pk})).one_or_none()
            if row is None:
                return Ingested(pk, "", "absent_or_locked")
            if row.status != DeliveryStatus.PENDING:
                return Ingested(pk, row.event, str(row.status))
            applied = await _apply(deps, session, [row])
    except PayloadError as exc:  # the payload cannot be applied, now or later
        await _fail(deps, pk, str(exc))
        log.warning("delivery_failed", delivery_pk=pk, error=str(exc))
        return Ingested(pk, "", DeliveryStatus.FAILED)
    except (TransientError, RateLimited) as exc:
        # GitHub (or a tracker) is failing, and applying this delivery reads from it (the
        # repository's config): it waits, pending, its attempts untouched, and is tried
        # again with backoff for as long as the outage lasts. Said once.
        failures = deps.outages.services.failed(SERVICE_READS, f"{type(exc).__name__}: {exc}")
        await _hold_back(deps, pk, SERVICE_BACKOFF.delay(failures - 1))
        log.debug("delivery_waits_for_service", delivery_pk=pk, error=str(exc))
        return Ingested(pk, "", WAITING)
    except Exception as exc:  # any failure is recorded on the delivery, never lost
        if deps.outages.noticed(exc) is not None:
            # A store is away (said once, by the outage): the row stays pending, and is
            # claimed again once the store is back. Not a failed attempt of its own.
            raise
        # A bug in applying, or a transient error of the database: count it, retry with
        # backoff, and after MAX_ATTEMPTS keep it as failed with the error.
        attempts = await _count_attempt(deps, pk, f"{type(exc).__name__}: {exc}")
        if attempts is not None and attempts < MAX_ATTEMPTS:
            log.warning("delivery_retry", delivery_pk=pk, attempts=attempts, exc_info=True)
            return Ingested(pk, "", WAITING)
        log.error("delivery_failed", delivery_pk=pk, attempts=attempts, exc_info=True)
        return Ingested(pk, "", DeliveryStatus.FAILED)
    deps.outages.services.succeeded(SERVICE_READS)
    await _after_commit(deps, applied)
    return applied.ingested[0]


async def _apply(deps: Deps, session: AsyncSession, rows: Sequence[Row[Any]]) -> _Applied:
    """Apply the locked pending `rows` in the caller's transaction, in order."""
    applied = _Applied()
    links: list[tuple[int, int]] = []  # (delivery, ticket)
    statuses: list[str] = []
    errors: list[str | None] = []
    now = datetime.now(UTC)
    parsed = [_parse(row) for row in rows]
    # Before any label is read: a rename in a batch beside this one goes before or after.
    await lock_label_scopes(session, label_scopes(rows, parsed))
    await mirror.prefetch(
        session,
        [event for each in parsed if isinstance(each, ParsedDelivery) for event in each.events],
    )
    for row, delivery in zip(rows, parsed, strict=True):
        structlog.contextvars.bind_contextvars(
            delivery_id=row.delivery_id,
            event=row.event,
            installation_id=row.installation_id,
            repository=row.repository,
        )
        status, error = await _apply_one(deps, session, row, delivery, applied, links)
        structlog.contextvars.clear_contextvars()
        statuses.append(status)
        errors.append(error)
        latency = (now - row.received_at).total_seconds()
        applied.ingested.append(Ingested(row.id, row.event, status, latency, row.delivery_id))
    conn = await session.connection()
    if links:
        deliveries, tickets = zip(*links, strict=True)
        await conn.execute(_LINK, {"deliveries": list(deliveries), "tickets": list(tickets)})
    await conn.execute(
        _FINISH,
        {"now": now, "ids": [row.id for row in rows], "statuses": statuses, "errors": errors},
    )
    return applied


def _parse(row: Row[Any]) -> ParsedDelivery | PayloadError:
    """The delivery's events, or why its payload cannot be applied (now or ever)."""
    try:
        return parser_for(row.source)(row.event, row.payload)
    except PayloadError as exc:
        return exc


async def _apply_one(
    deps: Deps,
    session: AsyncSession,
    row: Row[Any],
    parsed: ParsedDelivery | PayloadError,
    applied: _Applied,
    links: list[tuple[int, int]],
) -> tuple[str, str | None]:
    """Apply one delivery; its status and error. Raises when applying failed (the caller's
    transaction is then rolled back)."""
    if isinstance(parsed, PayloadError):  # nothing written: the rest of the batch goes on
        log.warning("delivery_failed", delivery_pk=row.id, error=str(parsed))
        return DeliveryStatus.FAILED, str(parsed)[:4000]
    if not parsed.events:
        return DeliveryStatus.IGNORED, parsed.ignored_reason
    done = await mirror.apply(session, parsed.events, installation_id=row.installation_id)
    if deps.workflow is not None:
        # The engine decides in this transaction, so its decisions commit with it.
        applied.afters.append(
            await deps.workflow.react(session, parsed.events, row.installation_id)
        )
    links.extend((row.id, ticket) for ticket in sorted(done.tickets))
    applied.backfill |= done.backfill
    return DeliveryStatus.DONE, parsed.ignored_reason


async def _after_commit(deps: Deps, applied: _Applied) -> None:
    # One line a transaction, naming each delivery (a line each cost the worker a seventh of
    # its time at 600 deliveries/s); a failed one also has a warning line of its own.
    log.info(
        "deliveries_ingested",
        statuses=dict(Counter(done.status for done in applied.ingested)),
        delivery_ids=[done.delivery_id for done in applied.ingested],
    )
    for after in applied.afters:
        try:
            await after()
        except Exception as error:
            if deps.outages.noticed(error) is None:  # else said once by the outage
                # Committed already; the engine's tick does what these follow-ups missed.
                # One delivery's trouble must not keep the rest of the batch's from going.
                log.warning("followups_failed", exc_info=True)
    for repo_id in sorted(applied.backfill):
        # After commit, so the job finds the repository row. A lost enqueue is repaired by
        # `openase sync`; the mirror still fills from webhooks meanwhile.
        await enqueue_backfill(deps, repo_id)
    if not deps.outages.is_away("redis"):  # metrics are best effort; ingest needs no Redis
        await record_ingests(
            deps.redis,
            [(done.event, done.status, done.latency) for done in applied.ingested],
            noticed=deps.outages.noticed,
        )


async def enqueue_backfill(deps: Deps, repo_id: int) -> None:
    try:
        await deps.redis.enqueue_job(BACKFILL_JOB, repo_id, _job_id=f"backfill:{repo_id}")
    except (RedisError, OSError) as exc:
        log.warning("backfill_not_enqueued", repository_id=repo_id, error=type(exc).__name__)


async def _hold_back(deps: Deps, pk: int, seconds: float) -> None:
    async with transaction(deps.sessions) as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.id == pk)
            .values(retry_at=datetime.now(UTC) + timedelta(seconds=seconds))
        )


async def _fail(deps: Deps, pk: int, error: str) -> None:
    async with transaction(deps.sessions) as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.id == pk, Delivery.status == DeliveryStatus.PENDING)
            .values(
                status=DeliveryStatus.FAILED,
                error=error[:4000],
                processed_at=datetime.now(UTC),
                attempts=Delivery.attempts + 1,
            )
        )


async def _count_attempt(deps: Deps, pk: int, error: str) -> int | None:
    """Record a failed attempt: retried after 2, 4, 8... s, and at MAX_ATTEMPTS marked failed
    for good."""
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
            if attempts is None:
                return None
            now = datetime.now(UTC)
            changes: dict[str, Any] = (
                {"status": DeliveryStatus.FAILED, "processed_at": now}
                if attempts >= MAX_ATTEMPTS
                else {"retry_at": now + timedelta(seconds=2**attempts)}
            )
            await session.execute(update(Delivery).where(Delivery.id == pk).values(**changes))
            return attempts
    except (SQLAlchemyError, OSError):
        return None  # the database is down: the delivery stays pending, claimed again later
