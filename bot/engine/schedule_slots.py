"""Firing a schedule's slots exactly once, whoever owns the schedule: a repository
(`schedules:` in `.github/openase.yml`, bot/engine/schedules.py), a Linear team or a Jira
project (the control-plane config, bot/engine/tracker_schedules.py).

Every minute each worker claims each schedule's latest slot at or before now with one
INSERT ... ON CONFLICT DO NOTHING RETURNING on (scope, schedule, slot time): the worker whose
row went in decides, in that transaction, what the slot does, and every other worker finds
the slot taken. Only the latest slot is claimed, so after downtime the missed slots make
one ticket, not one each. A schedule seen for the first time claims its latest (past) slot
without filing: adding a weekly schedule on a Wednesday does not file Monday's at once.

A claimed slot files its ticket through the outbox (the `Target`'s effect), unless the
schedule is paused or, with `skip_if_open`, a ticket it filed earlier is still open: its
effect not yet performed, or the mirror showing that ticket open (or not yet showing it).
"""

from __future__ import annotations

from collections.abc import Callable
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
from bot.effects.outbox import add_effect, enqueue_perform
from bot.engine.context import Engine
from bot.errors import ConfigUnavailable
from bot.registry import JIRA, LINEAR
from bot.tables.mirror import Repository, Ticket
from bot.tables.schedules import ScheduleControl, ScheduleSlot, SlotOutcome
from bot.tables.workflow import EffectStatus, OutboxEffect
from harness_store.db import transaction
from harness_store.errors import RenderError

log = structlog.get_logger(__name__)

Json = dict[str, Any]
GITHUB = "github"
OPEN_LOOKBACK = 10  # filed slots looked at for a ticket still open
MAX_REPORTED = 1000
# (repository, commit) whose invalid config this process logged: once, not every minute.
_REPORTED: set[tuple[str, str | None]] = set()
_WHAT = {LINEAR: "Linear team", JIRA: "Jira project"}


@dataclass(frozen=True)
class Owner:
    """Whose schedule: a repository's (`key` OWNER/NAME), a Linear team's or a Jira
    project's (`key` the team's or project's key)."""

    source: str  # github | linear | jira
    key: str
    repository_id: int | None = None  # a repository's: its id (the rows go with it)

    @property
    def scope(self) -> str:
        """The key of the schedule's rows: `github:<repository id>`, `linear:ENG`, `jira:PROJ`."""
        if self.source == GITHUB:
            return f"{GITHUB}:{self.repository_id}"
        return f"{self.source}:{self.key.upper()}"

    @property
    def label(self) -> str:
        """How people name it: `octo/api`, `Linear team ENG`, `Jira project PROJ`."""
        return self.key if self.source == GITHUB else f"{_WHAT[self.source]} {self.key}"


@dataclass(frozen=True)
class Target:
    """Where a schedule's tickets go: the outbox effect that files one, and what it needs."""

    owner: Owner
    repository: str  # the code's repository, for the templates
    kind: str  # the outbox effect that files the ticket
    lane: int | None  # the effect's `installation_id` (its outbox lane)
    fields: Json  # the payload's fields naming where: repo, team_key, project_key
    marker: Callable[[str, str], str]  # (schedule, slot) -> the ticket's marker text
    labels: tuple[str, ...] = ()  # labels besides the schedule's (a workflow's trigger)
    text: Callable[[str], str] = str  # the body as the tracker writes it (Jira: wiki markup)


async def fire_due(engine: Engine, target: Target, schedule: Schedule, now: datetime) -> str | None:
    """Claim the schedule's latest slot; its outcome, None when another worker had it."""
    owner = target.owner
    slot = schedule.latest_slot(now)
    async with transaction(engine.deps.sessions) as session:
        known = await session.scalar(
            select(ScheduleSlot.id)
            .where(ScheduleSlot.scope == owner.scope, ScheduleSlot.schedule == schedule.name)
            .limit(1)
        )
        slot_id = await _claim(session, owner, schedule.name, slot, by=None)
        if slot_id is None:
            return None
        if known is None:
            outcome: str = SlotOutcome.FIRST_SEEN
        elif await _paused(session, owner.scope, schedule.name):
            outcome = SlotOutcome.PAUSED
        elif schedule.skip_if_open and await _open_ticket(session, owner, schedule.name):
            outcome = SlotOutcome.SKIPPED_OPEN
        else:
            outcome = await _file(session, target, schedule, slot, slot_id)
        if outcome != SlotOutcome.FILED and outcome != SlotOutcome.FAILED:
            await _settle(session, slot_id, outcome)
    log.info(
        "schedule_slot",
        scope=owner.scope,
        owner=owner.label,
        schedule=schedule.name,
        slot=slot.isoformat(),
        outcome=outcome,
    )
    return outcome


async def run_now(engine: Engine, target: Target, schedule: Schedule, *, by: str) -> str:
    """File the schedule's ticket now (paused or not, its last one open or not)."""
    now = datetime.now(UTC)
    owner = target.owner
    async with transaction(engine.deps.sessions) as session:
        slot_id = await _claim(session, owner, schedule.name, now, by=by)
        if slot_id is None:  # the same microsecond twice: nothing to do twice
            return SlotOutcome.FILED
        outcome = await _file(session, target, schedule, now, slot_id)
    log.info("schedule_run_now", scope=owner.scope, schedule=schedule.name, by=by)
    await enqueue_perform(
        engine.deps.redis, decision=f"schedule:{owner.scope}:{schedule.name}:{now.isoformat()}"
    )
    return outcome


async def set_paused(
    session: AsyncSession, owner: Owner, schedule: str, *, paused: bool, by: str
) -> None:
    """Pause or resume a schedule (kept in PostgreSQL, so restarts keep it)."""
    values = {"paused": paused, "changed_by": by[:100], "changed_at": datetime.now(UTC)}
    await session.execute(
        insert(ScheduleControl)
        .values(scope=owner.scope, repository_id=owner.repository_id, schedule=schedule, **values)
        .on_conflict_do_update(index_elements=["scope", "schedule"], set_=values)
    )


async def paused_names(session: AsyncSession, owner: Owner) -> set[str]:
    """The owner's paused schedules."""
    rows = await session.scalars(
        select(ScheduleControl.schedule).where(
            ScheduleControl.scope == owner.scope, ScheduleControl.paused
        )
    )
    return set(rows.all())


async def last_slot(
    session: AsyncSession, owner: Owner, schedule: str
) -> tuple[datetime, str, str | None] | None:
    """The schedule's newest slot: when, its outcome, and the ticket it filed (`#12`,
    `ENG-3`) once the outbox has filed it."""
    row = (
        await session.execute(
            select(ScheduleSlot.slot_at, ScheduleSlot.outcome, OutboxEffect.result)
            .outerjoin(OutboxEffect, OutboxEffect.key == ScheduleSlot.effect_key)
            .where(ScheduleSlot.scope == owner.scope, ScheduleSlot.schedule == schedule)
            .order_by(ScheduleSlot.id.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    return row[0], row[1], _filed_name(row[2] or {})


def _filed_name(result: Json) -> str | None:
    number, key = result.get("number"), result.get("key")
    if isinstance(number, int):
        return f"#{number}"
    return key if isinstance(key, str) else None


async def repositories(engine: Engine, *, full_name: str | None = None) -> list[Repository]:
    """The repositories the App works in (or the one called `full_name`)."""
    query = select(Repository).where(Repository.active, Repository.installation_id.is_not(None))
    if full_name is not None:
        query = query.where(func.lower(Repository.full_name) == full_name.lower())
    async with engine.deps.sessions() as session:
        return list((await session.scalars(query.order_by(Repository.id))).all())


async def repo_config_of(engine: Engine, repo: Repository) -> RepoConfig | None:
    """The repository's config; None when it cannot be read now or has problems (those are
    reported where tickets meet them, and logged here)."""
    try:
        result = await engine.config_of(repo)
    except (AdapterError, ConfigUnavailable, LookupError) as exc:
        log.warning("schedules_config_unreadable", repo=repo.full_name, error=str(exc))
        return None
    if result.config is None and (repo.full_name, result.sha) not in _REPORTED:
        if len(_REPORTED) > MAX_REPORTED:
            _REPORTED.clear()
        _REPORTED.add((repo.full_name, result.sha))
        log.warning(
            "schedules_config_invalid",
            repo=repo.full_name,
            sha=result.sha,
            problems=[str(problem) for problem in result.problems],
        )
    return result.config


# --- steps -----------------------------------------------------------------------------------


async def _claim(
    session: AsyncSession, owner: Owner, schedule: str, slot: datetime, *, by: str | None
) -> int | None:
    """The slot's row id if this transaction claimed it; None when it was claimed already
    (a concurrent claim waits on the unique index until the first one commits)."""
    claimed: int | None = await session.scalar(
        insert(ScheduleSlot)
        .values(
            scope=owner.scope,
            repository_id=owner.repository_id,
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
    session: AsyncSession, target: Target, schedule: Schedule, slot: datetime, slot_id: int
) -> str:
    owner = target.owner
    try:
        filed = render_issue(schedule, repository=target.repository, slot=slot)
    except RenderError as exc:
        await _settle(session, slot_id, SlotOutcome.FAILED, detail=str(exc)[:500])
        log.warning(
            "schedule_render_failed", scope=owner.scope, schedule=schedule.name, error=str(exc)
        )
        return SlotOutcome.FAILED
    key = f"schedule:{owner.scope}:{schedule.name}:{slot.isoformat()}"
    if owner.source == GITHUB:  # the keys GitHub's schedules had before teams had any
        key = f"schedule:{owner.repository_id}:{schedule.name}:{slot.isoformat()}"
    payload: Json = {
        **target.fields,
        "title": filed.title,
        "body": target.text(filed.body),
        "labels": list(dict.fromkeys((*schedule.labels, *target.labels))),
        "marker": target.marker(schedule.name, slot.isoformat()),
        "since": datetime.now(UTC).isoformat(),
    }
    await add_effect(
        session,
        key=key[:255],
        kind=target.kind,
        payload=payload,
        ticket_id=None,
        installation_id=target.lane,
    )
    await _settle(session, slot_id, SlotOutcome.FILED, effect_key=key[:255])
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


async def _paused(session: AsyncSession, scope: str, schedule: str) -> bool:
    paused = await session.scalar(
        select(ScheduleControl.paused).where(
            ScheduleControl.scope == scope, ScheduleControl.schedule == schedule
        )
    )
    return bool(paused)


async def _open_ticket(session: AsyncSession, owner: Owner, schedule: str) -> bool:
    """Whether a ticket the schedule filed is still open (or not yet known to be closed)."""
    rows = (
        await session.execute(
            select(OutboxEffect.status, OutboxEffect.result)
            .join(ScheduleSlot, ScheduleSlot.effect_key == OutboxEffect.key)
            .where(
                ScheduleSlot.scope == owner.scope,
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
        if status != EffectStatus.DONE:
            continue  # failed: it filed nothing
        found = _mirrored(owner, result or {})
        if found is None:
            continue
        state = await session.scalar(select(Ticket.state).where(*found))
        if state is None or state == "open":  # the webhook saying it opened may be on its way
            return True
    return False


def _mirrored(owner: Owner, result: Json) -> tuple[Any, ...] | None:
    """How the mirror finds the ticket an effect filed (None: it filed none)."""
    if owner.source == GITHUB:
        number = result.get("number")
        if not isinstance(number, int):
            return None
        return (
            Ticket.source == GITHUB,
            Ticket.repository_id == owner.repository_id,
            Ticket.number == number,
        )
    key = result.get("key")
    if not isinstance(key, str):
        return None
    return Ticket.source == owner.source, Ticket.key == key
