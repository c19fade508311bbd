"""The control worker's queue as the tests see it: stored deliveries pending and due, which
the ingest pump (bot/intake/pump.py) claims next, and the notification that wakes it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
from sqlalchemy import or_, select

from bot.deps import Deps, plain_url
from bot.intake.pump import CHANNEL
from bot.tables.mirror import Delivery, DeliveryStatus


async def queued_deliveries(deps: Deps) -> list[int]:
    """Ids of the deliveries a worker would claim now, oldest first."""
    async with deps.sessions() as session:
        rows = await session.scalars(
            select(Delivery.id)
            .where(
                Delivery.status == DeliveryStatus.PENDING,
                or_(Delivery.retry_at.is_(None), Delivery.retry_at <= datetime.now(UTC)),
            )
            .order_by(Delivery.id)
        )
        return list(rows)


@asynccontextmanager
async def notifications(deps: Deps) -> AsyncIterator[asyncio.Queue[str]]:
    """Every notification on the pump's channel while inside, as a worker would hear it."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    url = deps.engine.url.render_as_string(hide_password=False)
    connection = await asyncpg.connect(plain_url(url))
    try:
        await connection.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[1]))
        yield heard
    finally:
        await connection.close()
