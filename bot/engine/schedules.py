"""Scheduled tickets (`schedules:` in `.github/openase.yml`, bot/config/schedules.py): each
slot files exactly one issue, however many workers run the cron.

Every minute the cron reads each repository's config (cached per commit) and, for each
schedule, claims the latest slot at or before now with one INSERT ... ON CONFLICT DO
NOTHING RETURNING on (repository, schedule, slot time): the worker whose row went in
decides, in that transaction, what the slot does, and every other worker finds the slot
taken. Only the latest slot is claimed, so after downtime the missed slots make one issue,
not one each. A schedule seen for the first time claims its latest (past) slot without
filing: adding a weekly schedule on a Wednesday does not file Monday's issue at once.

A claimed slot files its issue through the outbox (`create_issue`), unless the schedule is
paused or, with `skip_if_open`, an issue it filed earlier is still open: its effect not yet
performed, or the mirror showing that issue open (or not yet showing it at all).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.errors import AdapterError
from bot.config.repo import RepoConfig
from bot.config.schedules import Schedule, render_issue
from bot.effects.kinds import EffectKind, schedule_marker
from bot.effects.outbox import add_effect, enqueue_perform
from bot.engine.context import Engine
from bot.errors import ConfigUnavailable
from bot.tables.mirror import Repository, Ticket
from bot.tables.schedules import ScheduleControl, ScheduleSlot, SlotOutcome
from bot.tables.workflow import EffectStatus, OutboxEffect
from harness_store.db import transaction
from harness_store.errors import RenderError

log = structlog.get_logger(__name__)

OPEN_LOOKBACK = 10  # filed slots looked at for an issue still open


@dataclass(frozen=True)
class ScheduleView:
    """A repository's schedule as the CLI and the web page show it."""

    repository: str
    repository_id: int
    schedule: Schedule
    paused: bool
    next_at: datetime
    last_slot: datetime | None
    last_outcome: str | None
    last_issue: int | None


# --- the cron ------------------------------------------------------------------------------


async def schedules_tick(engine: Engine, now: datetime | None = None) -> dict[str, int]:
    """Claim each schedule's latest slot once; file what is due. Counts by outcome."""
    now = now or datetime.now(UTC)
    counts: Counter[str] = Counter()
    for repo in await _repositories(engine):
        config = await _config(engine, repo)
        if config is None:
            continue
        for schedule in config.schedules:
            outcome = await fire_due(engine, repo, config, schedule, now)
            if outcome is not None:
                counts[outcome] += 1
    if counts[SlotOutcome.FILED]:
        await enqueue_perform(engine.deps.redis, decision=f"schedules:{now.isoformat()}")
    return dict(counts)


async def fire_due(
    engine: Engine, repo: Repository, config: RepoConfig, schedule: Schedule, now: datetime
) -> str | None:
    """Claim the schedule's latest slot; its outcome, None when another worker had it."""
    slot = schedule.latest_slot(now)
    async with transaction(engine.deps.sessions) as session:
        known = await session.scalar(
            select(ScheduleSlot.id)
            .where(ScheduleSlot.repository_id == repo.id, ScheduleSlot.schedule == schedule.name)
            .limit(1)
        )
        slot_id = await _claim(session, repo.id, schedule.name, slot, by=None)
        if slot_id is None:
            return None
        if known is None:
            outcome: str = SlotOutcome.FIRST_SEEN
        elif await _paused(session, repo.id, schedule.name):
            outcome = SlotOutcome.PAUSED
        elif schedule.skip_if_open and await _open_issue(session, repo.id, schedule.name):
            outcome = SlotOutcome.SKIPPED_OPEN
        else:
            outcome = await _file(session, repo, config, schedule, slot, slot_id)
        if outcome != SlotOutcome.FILED and outcome != SlotOutcome.FAILED:
            await _settle(session, slot_id, outcome)
    log.info(
        "schedule_slot",
        repo=repo.full_name,
        schedule=schedule.name,
        slot=slot.isoformat(),
        outcome=outcome,
    )
    return outcome


async def run_now(
    engine: Engine, repo: Repository, config: RepoConfig, schedule: Schedule, *, by: str
) -> str:
    """File the schedule's issue now (paused or not, its last one open or not)."""
    now = datetime.now(UTC)
    async with transaction(engine.deps.sessions) as session:
        slot_id = await _claim(session, repo.id, schedule.name, now, by=by)
        if slot_id is None:  # the same microsecond twice: nothing to do twice
            return SlotOutcome.FILED
        outcome = await _file(session, repo, config, schedule, now, slot_id)
    log.info("schedule_run_now", repo=repo.full_name, schedule=schedule.name, by=by)
    await enqueue_perform(
        engine.deps.redis, decision=f"schedule:{repo.id}:{schedule.name}:{now.isoformat()}"
    )
    return outcome


async def set_paused(
    session: AsyncSession, repository_id: int, schedule: str, *, paused: bool, by: str
) -> None:
    """Pause or resume a schedule (kept in PostgreSQL, so restarts keep it)."""
    values = {"paused": paused, "changed_by": by[:100], "changed_at": datetime.now(UTC)}
    await session.execute(
        insert(ScheduleControl)
        .values(repository_id=repository_id, schedule=schedule, **values)
        .on_conflict_do_update(index_elements=["repository_id", "schedule"], set_=values)
    )


# --- what the CLI and the web page show ------------------------------------------------------


async def schedule_views(
    engine: Engine, *, full_name: str | None = None, now: datetime | None = None
) -> list[ScheduleView]:
    """Every schedule of the repositories (or of one), with its next run and last slot."""
    now = now or datetime.now(UTC)
    views = []
    for repo in await _repositories(engine, full_name=full_name):
        config = await _config(engine, repo)
        if config is None or not config.schedules:
            continue
        async with engine.deps.sessions() as session:
            paused = set(
                (
                    await session.scalars(
                        select(ScheduleControl.schedule).where(
                            ScheduleControl.repository_id == repo.id, ScheduleControl.paused
                        )
                    )
                ).all()
            )
            for schedule in config.schedules:
                last = await _last_slot(session, repo.id, schedule.name)
                views.append(
                    ScheduleView(
                        repository=repo.full_name,
                        repository_id=repo.id,
                        schedule=schedule,
                        paused=schedule.name in paused,
                        next_at=schedule.next_slot(now),
                        last_slot=None if last is None else last[0],
                        last_outcome=None if last is None else last[1],
                        last_issue=None if last is None else last[2],
                    )
                )
    return views


async def find_schedule(
    engine: Engine, full_name: str, name: str
) -> tuple[Repository, RepoConfig, Schedule] | None:
    """The repository, its config and its schedule `name`, if there is one."""
    for repo in await _repositories(engine, full_name=full_name):
        config = await _config(engine, repo)
        if config is None:
            continue
        for schedule in config.schedules:
            if schedule.name == name:
                return repo, config, schedule
    return None


# --- steps -----------------------------------------------------------------------------------


async def _repositories(engine: Engine, *, full_name: str | None = None) -> list[Repository]:
    query = select(Repository).where(Repository.active, Repository.installation_id.is_not(None))
    if full_name is not None:
        query = query.where(func.lower(Repository.full_name) == full_name.lower())
    async with engine.deps.sessions() as session:
        return list((await session.scalars(query.order_by(Repository.id))).all())


async def _config(engine: Engine, repo: Repository) -> RepoConfig | None:
    try:
        result = await engine.config_of(repo)
    except (AdapterError, ConfigUnavailable, LookupError) as exc:
        log.warning("schedules_config_unreadable", repo=repo.full_name, error=str(exc))
        return None
    return result.config  # None: the file has problems, reported where tickets meet them


async def _claim(
    session: AsyncSession, repository_id: int, schedule: str, slot: datetime, *, by: str | None
) -> int | None:
    """The slot's row id if this transaction claimed it; None when it was claimed already
    (a concurrent claim waits on the unique index until the first one commits)."""
    claimed: int | None = await session.scalar(
        insert(ScheduleSlot)
        .values(
            repository_id=repository_id,
            schedule=schedule,
            slot_at=slot,
            outcome=SlotOutcome.FILED,
            by=by,
        )
        .on_conflict_do_nothing(constraint="uq_schedule_slots_slot")
        .returning(ScheduleSlot.id)
    )
    return claimed


async def _file(
    session: AsyncSession,
    repo: Repository,
    config: RepoConfig,
    schedule: Schedule,
    slot: datetime,
    slot_id: int,
) -> str:
    try:
        filed = render_issue(schedule, repository=repo.full_name, slot=slot)
    except RenderError as exc:
        await _settle(session, slot_id, SlotOutcome.FAILED, detail=str(exc)[:500])
        log.warning(
            "schedule_render_failed", repo=repo.full_name, schedule=schedule.name, error=str(exc)
        )
        return SlotOutcome.FAILED
    labels = list(schedule.labels)
    flow = None if schedule.workflow is None else config.workflow(schedule.workflow)
    if flow is not None and flow.trigger_labels:
        labels.append(flow.trigger_labels[0])
    key = f"schedule:{repo.id}:{schedule.name}:{slot.isoformat()}"
    payload: dict[str, Any] = {
        "repo": repo.full_name,
        "title": filed.title,
        "body": filed.body,
        "labels": list(dict.fromkeys(labels)),
        "marker": schedule_marker(schedule.name, slot.isoformat()),
    }
    await add_effect(
        session,
        key=key,
        kind=EffectKind.CREATE_ISSUE,
        payload=payload,
        ticket_id=None,
        installation_id=repo.installation_id,
    )
    await _settle(session, slot_id, SlotOutcome.FILED, effect_key=key)
    return SlotOutcome.FILED


async def _settle(
    session: AsyncSession,
    slot_id: int,
    outcome: str,
    *,
    effect_key: str | None = None,
    detail: str | None = None,
) -> None:
    await session.execute(
        update(ScheduleSlot)
        .where(ScheduleSlot.id == slot_id)
        .values(outcome=outcome, effect_key=effect_key, detail=detail)
    )


async def _paused(session: AsyncSession, repository_id: int, schedule: str) -> bool:
    paused = await session.scalar(
        select(ScheduleControl.paused).where(
            ScheduleControl.repository_id == repository_id, ScheduleControl.schedule == schedule
        )
    )
    return bool(paused)


async def _open_issue(session: AsyncSession, repository_id: int, schedule: str) -> bool:
    """Whether an issue the schedule filed is still open (or not yet known to be closed)."""
    rows = (
        await session.execute(
            select(OutboxEffect.status, OutboxEffect.result)
            .join(ScheduleSlot, ScheduleSlot.effect_key == OutboxEffect.key)
            .where(
                ScheduleSlot.repository_id == repository_id,
                ScheduleSlot.schedule == schedule,
                ScheduleSlot.outcome == SlotOutcome.FILED,
            )
            .order_by(ScheduleSlot.id.desc())
            .limit(OPEN_LOOKBACK)
        )
    ).all()
    for status, result in rows:
        if status == EffectStatus.PENDING:
            return True
        number = (result or {}).get("number") if status == EffectStatus.DONE else None
        if not isinstance(number, int):
            continue  # failed: it filed nothing
        state = await session.scalar(
            select(Ticket.state).where(
                Ticket.source == "github",
                Ticket.repository_id == repository_id,
                Ticket.number == number,
            )
        )
        if state is None or state == "open":  # the webhook saying it opened may be on its way
            return True
    return False


async def _last_slot(
    session: AsyncSession, repository_id: int, schedule: str
) -> tuple[datetime, str, int | None] | None:
    row = (
        await session.execute(
            select(ScheduleSlot.slot_at, ScheduleSlot.outcome, OutboxEffect.result)
            .outerjoin(OutboxEffect, OutboxEffect.key == ScheduleSlot.effect_key)
            .where(ScheduleSlot.repository_id == repository_id, ScheduleSlot.schedule == schedule)
            .order_by(ScheduleSlot.id.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    number = (row[2] or {}).get("number")
    return row[0], row[1], number if isinstance(number, int) else None
