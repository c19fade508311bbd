"""The outbox table's queries for performing: the per-installation advisory lock, leasing
the oldest due effect (`FOR UPDATE SKIP LOCKED`), a scope's newer and previous revisions,
marking an effect settled, rescheduling it, and holding back an installation's others
while the service they write to is failing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, literal, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.effects.outbox import REVISION_SEPARATOR
from bot.tables.workflow import EffectStatus, OutboxEffect
from harness_store.db import reading, transaction

Json = dict[str, Any]

# How long a claimed effect is left alone. Claims happen under the installation lock, so
# the lease only matters when a worker dies mid-effect (its effect waits this long) or its
# lock connection drops mid-effect (another worker could then start the same effect, which
# every performer makes harmless: each finds what an earlier try made). Short, so that a
# killed worker's effect is taken up again well within the minute the chaos suite allows.
LEASE = timedelta(seconds=30)


@dataclass(frozen=True)
class Claimed:
    """An effect leased to the caller for one attempt."""

    id: int
    key: str
    kind: str
    ticket_id: int | None
    installation_id: int | None
    payload: Json
    attempts: int  # including this one
    result: Json | None


def _of(installation_id: int | None) -> ColumnElement[bool]:
    if installation_id is None:
        return OutboxEffect.installation_id.is_(None)
    return OutboxEffect.installation_id == installation_id


def _due() -> ColumnElement[bool]:
    return (OutboxEffect.status == EffectStatus.PENDING) & (OutboxEffect.not_before <= func.now())


@asynccontextmanager
async def installation_lock(
    engine: AsyncEngine, installation_id: int | None
) -> AsyncIterator[AsyncConnection | None]:
    """A connection holding the installation's advisory lock, or None if it is taken.

    Transaction-scoped, so it cannot leak into the pool: closing the connection rolls the
    transaction back and frees the lock, however this block ends.
    """
    name = f"openase:outbox:{'none' if installation_id is None else installation_id}"
    async with engine.connect() as connection:
        locked = await connection.scalar(
            select(func.pg_try_advisory_xact_lock(func.hashtextextended(name, 0)))
        )
        yield connection if locked else None


async def due_installations(sessions: async_sessionmaker[AsyncSession]) -> list[int | None]:
    async with reading(sessions) as session:
        rows = await session.execute(
            select(OutboxEffect.installation_id)
            .where(_due())
            .group_by(OutboxEffect.installation_id)
            .order_by(func.min(OutboxEffect.id))
        )
        return [row[0] for row in rows]


async def has_due(sessions: async_sessionmaker[AsyncSession], installation_id: int | None) -> bool:
    async with reading(sessions) as session:
        found = await session.scalar(
            select(OutboxEffect.id).where(_due(), _of(installation_id)).limit(1)
        )
        return found is not None


async def claim(
    sessions: async_sessionmaker[AsyncSession], installation_id: int | None
) -> Claimed | None:
    """Lease the installation's oldest due effect; SKIP LOCKED keeps two claims apart."""
    due = (
        select(OutboxEffect.id)
        .where(_due(), _of(installation_id))
        .order_by(OutboxEffect.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        update(OutboxEffect)
        .where(OutboxEffect.id == due)
        .values(attempts=OutboxEffect.attempts + 1, not_before=func.now() + literal(LEASE))
        .returning(
            OutboxEffect.id,
            OutboxEffect.key,
            OutboxEffect.kind,
            OutboxEffect.ticket_id,
            OutboxEffect.installation_id,
            OutboxEffect.payload,
            OutboxEffect.attempts,
            OutboxEffect.result,
        )
        .execution_options(synchronize_session=False)
    )
    async with transaction(sessions) as session:
        row = (await session.execute(statement)).first()
    if row is None:
        return None
    return Claimed(
        id=row.id,
        key=row.key,
        kind=row.kind,
        ticket_id=row.ticket_id,
        installation_id=row.installation_id,
        payload=dict(row.payload),
        attempts=row.attempts,
        result=row.result,
    )


def _scope_pattern(scope: str) -> str:
    escaped = scope.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + REVISION_SEPARATOR + "%"


async def newer_in_scope(
    sessions: async_sessionmaker[AsyncSession], scope: str, effect_id: int
) -> int | None:
    async with reading(sessions) as session:
        return await session.scalar(
            select(OutboxEffect.id)
            .where(OutboxEffect.id > effect_id, OutboxEffect.key.like(_scope_pattern(scope)))
            .order_by(OutboxEffect.id.desc())
            .limit(1)
        )


async def previous_result(
    sessions: async_sessionmaker[AsyncSession], scope: str, effect_id: int
) -> Json | None:
    """The result of the newest effect of the scope that was really performed."""
    async with reading(sessions) as session:
        result = await session.scalar(
            select(OutboxEffect.result)
            .where(
                OutboxEffect.id != effect_id,
                OutboxEffect.key.like(_scope_pattern(scope)),
                OutboxEffect.status == EffectStatus.DONE,
                OutboxEffect.result.is_not(None),
                ~OutboxEffect.result.has_key("superseded_by"),
            )
            .order_by(OutboxEffect.id.desc())
            .limit(1)
        )
        return dict(result) if result is not None else None


async def mark_in(
    session: AsyncSession,
    effect: Claimed,
    status: EffectStatus,
    result: Json | None,
    error: str | None,
) -> bool:
    marked = await session.execute(
        update(OutboxEffect)
        .where(OutboxEffect.id == effect.id, OutboxEffect.status == EffectStatus.PENDING)
        .values(status=status, result=result, last_error=error, done_at=func.now())
        .returning(OutboxEffect.id)
        .execution_options(synchronize_session=False)
    )
    return marked.first() is not None


async def mark(
    sessions: async_sessionmaker[AsyncSession],
    effect: Claimed,
    status: EffectStatus,
    result: Json | None,
) -> None:
    async with transaction(sessions) as session:
        await mark_in(session, effect, status, result, None)


async def reschedule(
    sessions: async_sessionmaker[AsyncSession],
    effect: Claimed,
    when: datetime | timedelta,
    error: str,
    *,
    counted: bool,
) -> None:
    """Due again at `when` (or that long from now); an uncounted try gives its attempt back."""
    async with transaction(sessions) as session:
        await session.execute(
            update(OutboxEffect)
            .where(OutboxEffect.id == effect.id, OutboxEffect.status == EffectStatus.PENDING)
            .values(
                not_before=func.now() + literal(when) if isinstance(when, timedelta) else when,
                last_error=error,
                attempts=OutboxEffect.attempts - (0 if counted else 1),
            )
            .execution_options(synchronize_session=False)
        )


# The trackers' effects are named after them (bot/effects/trackers.py); the rest write to
# GitHub, as their installation.
_TRACKERS = ("linear", "jira")


def service_of(kind: str, installation_id: int | None) -> str:
    """The remote service an effect writes to, as backing off counts it: GitHub per
    installation (each has its own limits), Linear, Jira."""
    for tracker in _TRACKERS:
        if kind.startswith(f"{tracker}_"):
            return tracker
    if kind.startswith("notify_"):  # bot/effects/notifications.py: a lane per channel
        return f"notification lane {installation_id}"
    return f"github installation {installation_id}"


def writes_to_github(kind: str) -> bool:
    """Whether an effect of `kind` writes to GitHub, as its installation."""
    return service_of(kind, None).startswith("github ")


def _writes_to(kind: str) -> ColumnElement[bool]:
    """The effects that write to the same service as an effect of `kind`."""
    for tracker in _TRACKERS:
        if kind.startswith(f"{tracker}_"):
            return OutboxEffect.kind.startswith(f"{tracker}_", autoescape=True)
    return not_(or_(*(OutboxEffect.kind.startswith(f"{t}_", autoescape=True) for t in _TRACKERS)))


async def hold(
    sessions: async_sessionmaker[AsyncSession], effect: Claimed, until: datetime, error: str
) -> int:
    """Hold back, until `until`, the other pending effects of `effect`'s installation that
    write to the same service (it just failed them all: one 502 or secondary rate limit
    says the next request would meet the same). Not a try of theirs: their attempts stand.
    How many were held."""
    async with transaction(sessions) as session:
        held = await session.execute(
            update(OutboxEffect)
            .where(
                OutboxEffect.status == EffectStatus.PENDING,
                _of(effect.installation_id),
                _writes_to(effect.kind),
                OutboxEffect.id != effect.id,
                OutboxEffect.not_before < until,
            )
            .values(not_before=until, last_error=f"held back: {error}")
            .returning(OutboxEffect.id)
            .execution_options(synchronize_session=False)
        )
        return len(held.all())
