"""The arq control-plane worker, and the composition root of everything that plugs into the
control plane: the jobs and crons it runs (under the names in bot/jobs.py), the outbox's
performers by effect kind, the slash commands, and the workflow engine handed to ingest.
Nothing below this module imports what plugs into it (STYLE practice 12)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import structlog
from arq import cron
from arq.connections import ArqRedis
from arq.cron import CronJob
from arq.worker import Function, Worker, func

from bot.config.control import load_control_config
from bot.deps import Deps, build_deps, redis_settings
from bot.effects import github as github_effects
from bot.effects import trackers as tracker_effects
from bot.effects.outbox import Performer, SettleHook
from bot.effects.perform import perform_pending
from bot.engine.commands import handlers
from bot.engine.commands.registry import Commands
from bot.engine.context import Engine
from bot.engine.jobs import (
    ENGINE_CTX_KEY,
    TICK_SECONDS,
    WorkflowReactor,
    dispatch_job,
    engine_tick,
    run_finished_job,
    settle_hook,
)
from bot.errors import ConfigError
from bot.intake.backfill import BACKFILL_MAX_TRIES, backfill_job
from bot.intake.ingest import ingest_delivery
from bot.intake.recovery import recover_deliveries_cron
from bot.intake.sweep import sweep_pending
from bot.jobs import (
    BACKFILL_JOB,
    CONTROL_QUEUE,
    DISPATCH_JOB,
    ENGINE_TICK_CRON,
    INGEST_JOB,
    PERFORM_OUTBOX_CRON,
    PERFORM_OUTBOX_JOB,
    RECOVER_DELIVERIES_CRON,
    RUN_FINISHED_JOB,
    SWEEP_PENDING_CRON,
)
from bot.settings import Settings

log = structlog.get_logger(__name__)

# Every effect kind the outbox can perform, with its performer.
PERFORMERS: Mapping[str, Performer] = {
    **github_effects.PERFORMERS,
    **tracker_effects.PERFORMERS,
}
# Every slash command, in the order `/help` lists them.
COMMANDS = Commands(handlers.SPECS)

OUTBOX_CRON_SECONDS = frozenset(range(0, 60, 5))  # the outbox's fallback sweep
RECOVERY_MINUTES = frozenset(range(0, 60, 5))  # reading GitHub's delivery log
MAX_TRIES = 8
# ctx key of the outbox's SettleHook (the engine's reactions to performed effects).
ON_SETTLED_CTX_KEY = "outbox_on_settled"


def build_engine(deps: Deps) -> Engine | None:
    """The worker's engine; None (and one log line) when the GitHub App is not configured."""
    try:
        github = deps.github_app()
    except ConfigError as exc:
        log.warning("engine_disabled", reason=str(exc))
        return None
    engine = Engine(
        deps=deps,
        github=github,
        control=load_control_config(deps.settings.config),
        trackers=deps.trackers(),
    )
    _warn_unwritable_trackers(engine)
    return engine


def _warn_unwritable_trackers(engine: Engine) -> None:
    """Routes without the credentials to write back: their tickets are only mirrored."""
    if engine.control.linear.teams and engine.trackers.linear is None:
        log.warning(
            "linear_unwritable",
            reason="linear.teams is configured but OPENASE_LINEAR_API_KEY is not set: "
            "Linear tickets are mirrored, not worked on",
        )
    if engine.control.jira.projects and engine.trackers.jira is None:
        log.warning(
            "jira_unwritable",
            reason="jira.projects is configured but OPENASE_JIRA_URL / OPENASE_JIRA_API_TOKEN "
            "are not set: Jira tickets are mirrored, not worked on",
        )


# --- jobs whose rooms know nothing of arq's ctx ----------------------------------------------


async def ingest_job(ctx: dict[str, Any], pk: int) -> str:
    structlog.contextvars.clear_contextvars()
    return await ingest_delivery(ctx["deps"], pk)


async def perform_outbox_job(ctx: dict[str, Any], installation_id: int | None = None) -> int:
    """The installation's due effects (all, without one)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job=PERFORM_OUTBOX_JOB)
    return await perform_pending(
        ctx["deps"],
        PERFORMERS,
        installations=None if installation_id is None else [installation_id],
        on_settled=_on_settled(ctx),
    )


async def perform_outbox_cron(ctx: dict[str, Any]) -> int:
    """The fallback: overdue effects (retries come due, jobs Redis lost), every few seconds."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job=PERFORM_OUTBOX_CRON)
    return await perform_pending(ctx["deps"], PERFORMERS, on_settled=_on_settled(ctx))


def _on_settled(ctx: dict[str, Any]) -> SettleHook | None:
    hook: SettleHook | None = ctx.get(ON_SETTLED_CTX_KEY)
    return hook


# --- the worker ------------------------------------------------------------------------------


def control_functions() -> list[Function]:
    # keep_result=0: a finished job frees its id at once, so the same id (a sweep's
    # re-enqueue, the next installation event or sync, the next decision) can come again.
    return [
        func(ingest_job, name=INGEST_JOB, keep_result=0, max_tries=MAX_TRIES),
        func(backfill_job, name=BACKFILL_JOB, keep_result=0, max_tries=BACKFILL_MAX_TRIES),
        func(perform_outbox_job, name=PERFORM_OUTBOX_JOB, keep_result=0, max_tries=1),
        func(run_finished_job, name=RUN_FINISHED_JOB, keep_result=0, max_tries=3),
        func(dispatch_job, name=DISPATCH_JOB, keep_result=0, max_tries=1),
    ]


def control_crons(settings: Settings) -> list[CronJob]:
    # unique: one sweep per tick however many workers run (they would only contend anyway).
    crons = [
        cron(sweep_pending, name=SWEEP_PENDING_CRON, second=0, run_at_startup=False, unique=True)
    ]
    if not _has_github_app(settings):
        return crons  # without a GitHub App there is nothing to perform and no engine to tick
    return [
        *crons,
        cron(
            perform_outbox_cron,
            name=PERFORM_OUTBOX_CRON,
            second=set(OUTBOX_CRON_SECONDS),
            unique=True,
            run_at_startup=True,
        ),
        cron(
            recover_deliveries_cron,
            name=RECOVER_DELIVERIES_CRON,
            minute=set(RECOVERY_MINUTES),
            second=20,
            unique=True,
            run_at_startup=True,  # what GitHub sent while this process was down comes back
            timeout=300,
        ),
        cron(
            engine_tick,
            name=ENGINE_TICK_CRON,
            second=set(TICK_SECONDS),
            unique=True,
            run_at_startup=True,
            timeout=120,
        ),
    ]


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
    engine: Engine | None = None,
    redis_pool: ArqRedis | None = None,
) -> Worker:
    """An arq worker on the control queue; `deps` may be shared with an in-process web app,
    and `engine` with other workers of the process (else it is built from the settings).

    `redis_pool`, if given, becomes the worker's own: arq closes it when the worker closes,
    so never pass a pool something else still uses (such as `deps.redis`).
    """

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["deps"] = deps or await build_deps(
            settings, database_url=database_url, redis_url=redis_url
        )
        ctx["owns_deps"] = deps is None
        workflow = engine or build_engine(ctx["deps"])
        ctx[ENGINE_CTX_KEY] = workflow
        if workflow is not None:
            ctx["deps"].workflow = WorkflowReactor(workflow, COMMANDS)
            ctx[ON_SETTLED_CTX_KEY] = settle_hook(workflow)
        # Deliveries stored while no worker ran (or whose job Redis lost) are picked up now.
        await sweep_pending(ctx, older_than=timedelta(0))

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if ctx.get("owns_deps"):
            await ctx["deps"].close()

    return Worker(
        functions=control_functions(),
        cron_jobs=control_crons(settings),
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
