"""The outbox as tests read and steer it: its rows by key, and every pending effect due now
(as if its backoff, hold or lease had passed)."""

from __future__ import annotations

from sqlalchemy import select, update

from bot.deps import Deps
from bot.tables.workflow import EffectStatus, OutboxEffect
from harness_store.db import transaction


async def outbox_rows(deps: Deps) -> dict[str, OutboxEffect]:
    async with deps.sessions() as session:
        rows = (await session.execute(select(OutboxEffect).order_by(OutboxEffect.id))).scalars()
        return {row.key: row for row in rows}


async def make_due(deps: Deps) -> None:
    async with transaction(deps.sessions) as session:
        await session.execute(
            update(OutboxEffect)
            .where(OutboxEffect.status == EffectStatus.PENDING)
            .values(not_before=OutboxEffect.created_at)
        )
