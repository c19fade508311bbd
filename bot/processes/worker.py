"""The arq control-plane worker: ingest deliveries, backfill repositories, sweep stragglers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from arq import cron
from arq.connections import ArqRedis
from arq.worker import Worker, func
from sqlalchemy import select

from bot.deps import CONTROL_QUEUE, Deps, build_deps, redis_settings
from bot.effects.outbox import ON_SETTLED_CTX_KEY, outbox_cron_jobs
from bot.engine.jobs import ENGINE_CTX_KEY, build_engine, engine_cron_jobs, settle_hook
from bot.errors import ConfigError
from bot.intake.ingest import ingest_delivery
from bot.intake.webhooks import INGEST_JOB, enqueue_ingest
from bot.settings import Settings
from bot.tables.mirror import Delivery, DeliveryStatus

log = structlog.get_logger(__name__)

# A pending delivery older than this missed its queue (Redis was down, or lost the job).
SWEEP_AFTER = timedelta(seconds=60)
# Older than this, its job is taken to be orphaned: a worker died holding it, and arq keeps
# a dead job's in-progress key (blocking a re-enqueue) until the longest job timeout passes.
# The sweep then ingests it itself; row locks make that safe beside a live job.
ORPHANED_AFTER = timedelta(minutes=3)
SWEEP_BATCH = 1000


async def ingest_job(ctx: dict[str, Any], pk: int) -> str:
    structlog.contextvars.clear_contextvars()
    return await ingest_delivery(ctx["deps"], pk)


async def sweep_pending(
    ctx: dict[str, Any],
    *,
    older_than: timedelta = SWEEP_AFTER,
    orphaned_after: timedelta = ORPHANED_AFTER,
) -> int:
    """Re-enqueue pending deliveries nobody is processing, ingest orphaned ones; how many."""
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


def control_functions() -> list[Any]:
    from bot.effects.outbox import outbox_functions
    from bot.engine.jobs import engine_functions
    from bot.intake.backfill import backfill_functions

    return [
        # keep_result=0: a finished ingest leaves no result key, so a sweep can enqueue the
        # same job id again; ingest itself is idempotent.
        func(ingest_job, name=INGEST_JOB, keep_result=0, max_tries=MAX_TRIES),
        *backfill_functions(),
        *outbox_functions(),
        *engine_functions(),
    ]


MAX_TRIES = 8


def _has_github_app(settings: Settings) -> bool:
    try:
        return settings.github_app_id is not None and bool(settings.github_private_key_pem())
    except ConfigError:
        return False  # an unreadable key: the engine says why when it starts


def make_worker(
    settings: Settings,
    *,
    database_url: str,
    redis_url: str,
    burst: bool = False,
    deps: Deps | None = None,
    redis_pool: ArqRedis | None = None,
) -> Worker:
    """An arq worker on the control queue; `deps` may be shared with an in-process web app.

    `redis_pool`, if given, becomes the worker's own: arq closes it when the worker closes,
    so never pass a pool something else still uses (such as `deps.redis`).
    """

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["deps"] = deps or await build_deps(
            settings, database_url=database_url, redis_url=redis_url
        )
        ctx["owns_deps"] = deps is None
        engine = ctx["deps"].workflow or build_engine(ctx["deps"])
        ctx["deps"].workflow = engine
        ctx[ENGINE_CTX_KEY] = engine
        if engine is not None:
            ctx[ON_SETTLED_CTX_KEY] = settle_hook(engine)
        # Deliveries stored while no worker ran (or whose job Redis lost) are picked up now.
        await sweep_pending(ctx, older_than=timedelta(0))

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if ctx.get("owns_deps"):
            await ctx["deps"].close()

    return Worker(
        functions=control_functions(),
        cron_jobs=[
            cron(sweep_pending, second=0, run_at_startup=False, unique=True),
            # Without a GitHub App there is nothing to perform and no engine to tick.
            *(outbox_cron_jobs() + engine_cron_jobs() if _has_github_app(settings) else []),
        ],
        queue_name=CONTROL_QUEUE,
        redis_settings=redis_settings(redis_url),
        redis_pool=redis_pool,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        burst=burst,
        max_jobs=50,
        job_timeout=600,
        handle_signals=False,
        poll_delay=0.01,
    )
