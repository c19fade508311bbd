"""Missed deliveries recovered (DESIGN §6b). GitHub never sends a failed delivery again by
itself: whatever it sent while the bot was down, or could not be reached, is lost unless
asked for. So a cron (one worker at a time, and once right after start) reads the App's
delivery log back to where its last complete pass began, and asks GitHub to redeliver every
delivery that failed, whose GUID the store does not hold and that has no successful
attempt — oldest first, a bounded number a pass. Each ask is recorded before the next one
(`redelivery_requests`, keyed by GUID), so no pass ever asks twice for one delivery, and a
redelivery GitHub refuses is recorded with why and not asked again.
"""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from adapters.base import CodeHost, HookDelivery
from adapters.errors import AdapterError, RequestRejected
from bot.deps import Deps
from bot.errors import ConfigError
from bot.tables.mirror import Delivery
from bot.tables.sync import RedeliveryRequest, SyncMark
from harness_store.db import transaction

log = structlog.get_logger(__name__)

MARK = "github:deliveries"
LOOKBACK = timedelta(days=3)  # GitHub keeps three days of an App's deliveries
# Read a little before where the last pass began: an attempt is logged when it ends, so
# one that started before the mark can appear after it.
OVERLAP = timedelta(minutes=10)
MAX_PER_PASS = 50  # redeliveries asked in one pass; the rest wait for the next one


@dataclass
class Recovery:
    """What one pass did."""

    read: int = 0  # log entries read (attempts, redeliveries included)
    missed: int = 0  # failed deliveries the store lacks and nobody asked for before
    asked: int = 0  # redeliveries GitHub accepted
    refused: int = 0  # redeliveries GitHub refused (recorded, not asked again)
    complete: bool = True  # False: more missed deliveries wait for the next pass


async def recover_deliveries(
    deps: Deps, github: CodeHost, *, limit: int = MAX_PER_PASS, now: datetime | None = None
) -> Recovery:
    """One pass over the App's delivery log (see the module docstring)."""
    started = now or datetime.now(UTC)
    report = Recovery()
    mark = await _mark(deps)
    since = (mark if mark is not None else started - LOOKBACK) - OVERLAP
    failed: dict[str, HookDelivery] = {}  # GUID -> its newest failed attempt
    delivered: set[str] = set()
    pages = github.hook_deliveries()
    async with aclosing(pages):
        async for page in pages:
            older = False
            for attempt in page:  # newest first
                if attempt.delivered_at < since:
                    older = True
                    continue
                report.read += 1
                if attempt.succeeded:
                    delivered.add(attempt.guid)
                else:
                    failed.setdefault(attempt.guid, attempt)
            if older:
                break
    candidates = {guid: attempt for guid, attempt in failed.items() if guid not in delivered}
    known = await _known(deps, candidates)
    missed = sorted(
        (attempt for guid, attempt in candidates.items() if guid not in known),
        key=lambda attempt: (attempt.delivered_at, attempt.id),
    )
    report.missed = len(missed)
    for attempt in missed[:limit]:
        error = None
        try:
            await github.redeliver(attempt.id)
        except RequestRejected as exc:  # not retryable: say so once, never ask again
            error = str(exc)[:2000]
        await _record(deps, attempt, error)
        report.asked += error is None
        report.refused += error is not None
        log.info(
            "redelivery_asked" if error is None else "redelivery_refused",
            delivery_id=attempt.guid,
            github_event=attempt.event,
            failed_at=attempt.delivered_at.isoformat(),
            error=error,
        )
    report.complete = len(missed) <= limit
    if report.complete:
        await _set_mark(deps, started)
    return report


async def recover_deliveries_cron(ctx: dict[str, Any]) -> dict[str, int]:
    """The arq cron: one pass, with the worker's Deps; nothing without a GitHub App."""
    structlog.contextvars.clear_contextvars()
    deps: Deps = ctx["deps"]
    try:
        github = deps.github_app()
    except ConfigError:
        return {}
    try:
        report = await recover_deliveries(deps, github)
    except AdapterError as exc:  # rate limited, GitHub down: the next pass reads again
        log.warning("delivery_recovery_failed", error=str(exc))
        return {}
    counts = {"read": report.read, "missed": report.missed, "asked": report.asked}
    if report.missed or report.refused:
        log.info("delivery_recovery", refused=report.refused, **counts)
    return counts


async def _known(deps: Deps, candidates: dict[str, HookDelivery]) -> set[str]:
    """The GUIDs among `candidates` the store holds, or asked for before."""
    if not candidates:
        return set()
    guids = list(candidates)
    async with deps.sessions() as session:
        stored = await session.scalars(
            select(Delivery.delivery_id).where(
                Delivery.source == "github", Delivery.delivery_id.in_(guids)
            )
        )
        asked = await session.scalars(
            select(RedeliveryRequest.guid).where(RedeliveryRequest.guid.in_(guids))
        )
        return set(stored) | set(asked)


async def _record(deps: Deps, attempt: HookDelivery, error: str | None) -> None:
    async with transaction(deps.sessions) as session:
        await session.execute(
            insert(RedeliveryRequest)
            .values(
                guid=attempt.guid,
                github_delivery_id=attempt.id,
                event=attempt.event,
                delivered_at=attempt.delivered_at,
                error=error,
            )
            .on_conflict_do_nothing(index_elements=[RedeliveryRequest.guid])
        )


async def _mark(deps: Deps) -> datetime | None:
    async with deps.sessions() as session:
        return await session.scalar(select(SyncMark.at).where(SyncMark.name == MARK))


async def _set_mark(deps: Deps, at: datetime) -> None:
    statement = insert(SyncMark).values(name=MARK, at=at)
    async with transaction(deps.sessions) as session:
        await session.execute(
            statement.on_conflict_do_update(index_elements=[SyncMark.name], set_={"at": at})
        )


@dataclass(frozen=True)
class RecoverySummary:
    """What recovery has done so far, for the setup page."""

    last_pass: datetime | None  # where the last complete pass began
    asked: int  # redeliveries asked for, ever
    asked_recently: int  # of them, in the last RECENT
    arrived: int  # of them, redelivered and stored
    refused: int  # redeliveries GitHub refused


RECENT = timedelta(hours=24)


async def recovery_summary(deps: Deps, *, now: datetime | None = None) -> RecoverySummary:
    """Recovery's counts, in one round trip."""
    recent = (now or datetime.now(UTC)) - RECENT
    arrived = (
        select(func.count())
        .select_from(RedeliveryRequest)
        .join(
            Delivery,
            (Delivery.source == "github") & (Delivery.delivery_id == RedeliveryRequest.guid),
        )
        .scalar_subquery()
    )
    counts = select(
        select(SyncMark.at).where(SyncMark.name == MARK).scalar_subquery(),
        select(func.count()).select_from(RedeliveryRequest).scalar_subquery(),
        select(func.count())
        .where(RedeliveryRequest.asked_at >= recent)
        .select_from(RedeliveryRequest)
        .scalar_subquery(),
        arrived,
        select(func.count())
        .where(RedeliveryRequest.error.is_not(None))
        .select_from(RedeliveryRequest)
        .scalar_subquery(),
    )
    async with deps.sessions() as session:
        last_pass, asked, asked_recently, came, refused = (await session.execute(counts)).one()
    return RecoverySummary(last_pass, asked, asked_recently, came, refused)
