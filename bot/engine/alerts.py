"""Notifications about the control plane rather than a ticket, noticed by the engine's cron.

`runner_offline`: a machine still registered whose heartbeats stopped (killed, cut off from
Redis). A runner that stops cleanly leaves the registry: not news. The occurrence is the
machine and its last heartbeat, so the cron (every few seconds, on any number of workers)
notices one outage many times and sends it once; a runner that comes back and goes away
again is a new outage. Its entry expires MACHINE_TTL_SECONDS (30) after the last heartbeat,
so the cron has the quarter minute between FRESH_SECONDS (15) and then to notice it.

`deliveries_failing`: GitHub failed to deliver webhooks to us (recovery found them in the
App's delivery log and asked for them again, bot/intake/recovery.py) within the last
DELIVERY_WINDOW. Told at most once an hour while it lasts: the occurrence is the hour.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import structlog
from redis.exceptions import RedisError
from sqlalchemy import func, select

from bot.effects.notifications import Occurrence, notify
from bot.effects.outbox import enqueue_perform
from bot.engine.context import Engine
from bot.engine.runs.machines import registered
from bot.tables.sync import RedeliveryRequest
from harness_store.db import transaction

log = structlog.get_logger(__name__)

DELIVERY_WINDOW = timedelta(minutes=10)  # recovery looks every 5 minutes


async def notice_offline_runners(engine: Engine, *, now: float | None = None) -> int:
    """Notify of each registered runner that stopped heartbeating; how many were news."""
    notifications = engine.control.notifications
    if not notifications.channels_for("runner_offline"):
        return 0
    now = time.time() if now is None else now
    try:
        machines = await registered(engine.deps.redis)
    except (RedisError, OSError):
        return 0  # Redis is away: nobody heartbeats, and nothing can be told apart
    silent = [machine for machine in machines if not machine.fresh(now)]
    if not silent:
        return 0
    lanes: set[int] = set()
    news = 0
    async with transaction(engine.deps.sessions) as session:
        for machine in silent:
            occurrence = Occurrence(
                id=f"runner:{machine.name}:{machine.heartbeat_at:.0f}",
                event="runner_offline",
                reason=f"runner {machine.name} ({machine.hostname or 'unknown host'}): "
                + machine.condition(now),
                page_url=f"{engine.deps.settings.base_url}/machines",
                at=datetime.fromtimestamp(now, UTC),
            )
            added = await notify(session, notifications, occurrence)
            lanes |= added
            news += bool(added)
    await _perform(engine, lanes, f"runner-offline:{now:.0f}")
    return news


async def notice_failing_deliveries(engine: Engine, *, now: datetime | None = None) -> int:
    """Notify that GitHub's webhooks are failing to reach us, once an hour while they do;
    1 when that was news."""
    notifications = engine.control.notifications
    if not notifications.channels_for("deliveries_failing"):
        return 0
    now = datetime.now(UTC) if now is None else now
    async with transaction(engine.deps.sessions) as session:
        count, latest = (
            await session.execute(
                select(func.count(), func.max(RedeliveryRequest.delivered_at)).where(
                    RedeliveryRequest.asked_at >= now - DELIVERY_WINDOW
                )
            )
        ).one()
        if not count:
            return 0
        minutes = int(DELIVERY_WINDOW.total_seconds() // 60)
        occurrence = Occurrence(
            id=f"deliveries:{now:%Y-%m-%dT%H}",
            event="deliveries_failing",
            reason=f"GitHub failed to deliver {count} webhook(s) to OpenASE in the last "
            f"{minutes} minutes (the latest failed at {latest:%Y-%m-%d %H:%M:%S} UTC); "
            "they were asked for again. Check that the webhook URL reaches `openase serve`.",
            page_url=f"{engine.deps.settings.base_url}/setup",
            at=now,
        )
        lanes = await notify(session, notifications, occurrence)
    await _perform(engine, lanes, f"deliveries-failing:{now:%Y-%m-%dT%H}")
    return int(bool(lanes))


async def _perform(engine: Engine, lanes: set[int], decision: str) -> None:
    for lane in sorted(lanes):
        await enqueue_perform(
            engine.deps.redis, decision=f"{decision}:{lane}", installation_id=lane
        )
