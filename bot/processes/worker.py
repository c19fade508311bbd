"""The arq control-plane worker, and the composition root of everything that plugs into the
control plane: the jobs and crons it runs (under the names in bot/jobs.py), the outbox's
performers by effect kind, the slash commands, the workflow engine handed to ingest, and the
ingest pump beside arq (bot/intake/pump.py).
Nothing below this module imports what plugs into it (STYLE practice 12)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from arq import cron
from arq.connections import ArqRedis
from arq.cron import CronJob
from arq.worker import Function, func

from bot.config.notifications import Notifications
from bot.deps import Deps, redis_client
from bot.effects import github as github_effects
from bot.effects import issues as issue_effects
from bot.effects import notifications as notification_effects
from bot.effects import tracker_issues as tracker_issue_effects
from bot.effects import trackers as tracker_effects
from bot.effects.outbox import Performer, SettleHook
from bot.effects.perform import perform_pending
from bot.engine.commands import handlers
from bot.engine.commands.registry import Commands
from bot.engine.context import Engine
from bot.engine.jobs import (
    ENGINE_CTX_KEY,
    TICK_SECONDS,
    dispatch_job,
    engine_tick,
    gating_job,
    recheck_merges_job,
    run_finished_job,
    ticket_action_job,
)
from bot.engine.schedules import schedules_tick
from bot.errors import ConfigError
from bot.intake.backfill import BACKFILL_MAX_TRIES, backfill_job
from bot.intake.pump import IngestPump
from bot.intake.reconcile import pass_minutes, reconcile_cron
from bot.intake.recovery import recover_deliveries_cron
from bot.jobs import (
    BACKFILL_JOB,
    CONTROL_QUEUE,
    DISPATCH_JOB,
    ENGINE_TICK_CRON,
    GATING_JOB,
    MERGE_RECHECK_JOB,
    PERFORM_OUTBOX_CRON,
    PERFORM_OUTBOX_JOB,
    RECONCILE_CRON,
    RECOVER_DELIVERIES_CRON,
    RUN_FINISHED_JOB,
    SCHEDULES_CRON,
    TICKET_ACTION_JOB,
)
from bot.processes.engine_clock import EngineClock
from bot.processes.engine_slot import EngineSlot
from bot.processes.resilience import ResilientWorker, riding_out
from bot.servers.outages import Store
from bot.settings import Settings

log = structlog.get_logger(__name__)

# Every effect kind the outbox can perform, with its performer.
PERFORMERS: Mapping[str, Performer] = {
    **github_effects.PERFORMERS,
    **issue_effects.PERFORMERS,
    **tracker_effects.PERFORMERS,
    **tracker_issue_effects.PERFORMERS,
}
# Every slash command, in the order `/help` lists them.
COMMANDS = Commands(handlers.SPECS)

OUTBOX_CRON_SECONDS = frozenset(range(0, 60, 5))  # the outbox's fallback sweep
RECOVERY_MINUTES = frozenset(range(0, 60, 5))  # reading GitHub's delivery log
MAX_TRIES = 8
# ctx key of the outbox's SettleHook (the engine's reactions to performed effects).
ON_SETTLED_CTX_KEY = "outbox_on_settled"
PUMP_CTX_KEY = "ingest_pump"


# --- jobs whose rooms know nothing of arq's ctx ----------------------------------------------


async def perform_outbox_job(ctx: dict[str, Any], installation_id: int | None = None) -> int:
    """The installation's due effects (all, without one)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job=PERFORM_OUTBOX_JOB)
    if _without_app(ctx):
        return 0
    return await perform_pending(
        ctx["deps"],
        performers(ctx),
        installations=None if installation_id is None else [installation_id],
        on_settled=_on_settled(ctx),
    )


async def perform_outbox_cron(ctx: dict[str, Any]) -> int:
    """The fallback: overdue effects (retries come due, jobs Redis lost), every few seconds."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job=PERFORM_OUTBOX_CRON)
    if _without_app(ctx):
        return 0
    return await perform_pending(ctx["deps"], performers(ctx), on_settled=_on_settled(ctx))


async def reconcile_pass(ctx: dict[str, Any]) -> dict[str, int]:
    """The reconcile cron, once the engine that decides on what it reads back is in place
    (at worker start, or an App registered since, it may not be yet)."""
    _current_engine(ctx)
    return await reconcile_cron(ctx)


async def schedules_pass(ctx: dict[str, Any]) -> dict[str, int]:
    """The scheduled tickets' cron: each due slot files one issue (bot/engine/schedules.py)."""
    structlog.contextvars.clear_contextvars()
    engine = _current_engine(ctx)
    return {} if engine is None else await schedules_tick(engine)


async def ticket_action(ctx: dict[str, Any], action_id: int) -> str:
    """A web page's action, carried out with every slash command this process knows."""
    return await ticket_action_job(ctx, action_id, COMMANDS)


async def _drain(ctx: dict[str, Any]) -> int:
    pump: IngestPump = ctx[PUMP_CTX_KEY]
    return await pump.drain()


def _without_app(ctx: dict[str, Any]) -> bool:
    """Whether no GitHub App is configured (after adopting one registered since): nothing
    was decided then, so the outbox has nothing due, and need not say so every 5 s."""
    _current_engine(ctx)
    deps: Deps = ctx["deps"]
    try:
        deps.github_app()
    except ConfigError:
        return True
    return False


def _current_engine(ctx: dict[str, Any]) -> Engine | None:
    slot: EngineSlot | None = ctx.get(ENGINE_CTX_KEY)
    return None if slot is None else slot()


def performers(ctx: dict[str, Any]) -> Mapping[str, Performer]:
    """Every performer; the notifications' send to the channels of the engine's control
    config (bot/effects/notifications.py)."""

    def channels() -> Notifications | None:
        engine = _current_engine(ctx)
        return None if engine is None else engine.control.notifications

    return {**PERFORMERS, **notification_effects.performers(channels)}


def _on_settled(ctx: dict[str, Any]) -> SettleHook | None:
    hook: SettleHook | None = ctx.get(ON_SETTLED_CTX_KEY)
    return hook


# --- the worker ------------------------------------------------------------------------------


def control_functions() -> list[Function]:
    # keep_result=0: a finished job frees its id at once, so the same id (the next
    # installation event or sync, the next decision) can come again.
    # riding_out: a store away leaves the work where PostgreSQL keeps it, for the crons
    # (backfill retries by itself, with backoff).
    return [
        func(backfill_job, name=BACKFILL_JOB, keep_result=0, max_tries=BACKFILL_MAX_TRIES),
        func(riding_out(perform_outbox_job), name=PERFORM_OUTBOX_JOB, keep_result=0, max_tries=1),
        func(riding_out(run_finished_job), name=RUN_FINISHED_JOB, keep_result=0, max_tries=3),
        func(riding_out(dispatch_job), name=DISPATCH_JOB, keep_result=0, max_tries=1),
        # A failed try leaves the run unreported: the engine's tick hands it out again.
        func(riding_out(gating_job), name=GATING_JOB, keep_result=0, max_tries=1),
        func(riding_out(recheck_merges_job), name=MERGE_RECHECK_JOB, keep_result=0, max_tries=1),
        # A failed try leaves the action pending: the engine's tick sends it again.
        func(riding_out(ticket_action), name=TICKET_ACTION_JOB, keep_result=0, max_tries=1),
    ]


def control_crons(settings: Settings, *, tick: bool = True) -> list[CronJob]:
    """The control worker's crons; with `tick`, the engine's tick among them (else the
    worker's engine clock ticks, bot/processes/engine_clock.py)."""
    # unique: one sweep per tick however many workers run (they would only contend anyway).
    # Registered with or without a GitHub App: one may be registered while the worker runs
    # (the setup page), and each does nothing until then.
    crons = [
        cron(
            riding_out(perform_outbox_cron),
            name=PERFORM_OUTBOX_CRON,
            second=set(OUTBOX_CRON_SECONDS),
            unique=True,
            run_at_startup=True,
        ),
        cron(
            riding_out(recover_deliveries_cron),
            name=RECOVER_DELIVERIES_CRON,
            minute=set(RECOVERY_MINUTES),
            second=20,
            unique=True,
            run_at_startup=True,  # what GitHub sent while this process was down comes back
            timeout=300,
        ),
        *(
            [
                cron(
                    riding_out(reconcile_pass),
                    name=RECONCILE_CRON,
                    minute=pass_minutes(settings.reconcile_minutes),
                    second=40,
                    unique=True,
                    run_at_startup=True,  # what changed while this process was down is read
                    timeout=540,
                )
            ]
            if settings.reconcile_minutes
            else []
        ),
        cron(
            riding_out(schedules_pass),
            name=SCHEDULES_CRON,
            second=10,
            unique=True,
            run_at_startup=True,  # a slot missed while no worker ran is filed now (once)
            timeout=300,
        ),
    ]
    if tick:
        crons.append(
            cron(
                riding_out(engine_tick),
                name=ENGINE_TICK_CRON,
                second=set(TICK_SECONDS),
                unique=True,
                run_at_startup=True,
                timeout=120,
            )
        )
    return crons


def _clock(deps: Deps, redis_url: str, *, tick: bool) -> EngineClock:
    """The engine's clock, on the worker's stores with connections of its own."""
    return EngineClock(
        deps.settings,
        database_url=deps.engine.url.render_as_string(hide_password=False),
        redis_url=redis_url,
        commands=COMMANDS,
        tick=tick,
    )


def make_worker(
    settings: Settings,
    *,
    deps: Deps,
    redis_url: str,
    burst: bool = False,
    engine: Engine | None = None,
    redis_pool: ArqRedis | None = None,
) -> ResilientWorker:
    """An arq worker on the control queue with these `deps` (shared with an in-process web
    app, or a test's); `engine` may be shared with other workers of the process (else it is
    built from the settings, or as soon as a GitHub App is configured).

    `redis_pool`, if given, becomes the worker's own: arq closes it when the worker closes,
    so never pass a pool something else still uses (such as `deps.redis`).
    """

    pump = IngestPump(deps)

    async def catch_up(store: Store, seconds: float) -> None:
        # A store is back: the deliveries that waited in PostgreSQL meanwhile go now.
        pump.wake()

    def set_up(ctx: dict[str, Any]) -> None:
        # Needs no Redis: the pump ingests (with the engine deciding) before arq has Redis.
        ctx["deps"] = deps
        if ENGINE_CTX_KEY not in ctx:
            ctx[ENGINE_CTX_KEY] = EngineSlot(
                ctx, deps, COMMANDS, settle_key=ON_SETTLED_CTX_KEY, fixed=engine
            )
            deps.outages.on_back.append(catch_up)
            # Before each batch: hands a just-configured App's engine to ingest.
            pump.prepare = lambda: _current_engine(ctx)
            ctx[PUMP_CTX_KEY] = pump

    async def on_startup(ctx: dict[str, Any]) -> None:
        # Run again when starting met a Redis outage (ResilientWorker.main): idempotent.
        set_up(ctx)
        if burst:
            # A burst (tests, one-off runs): what is stored now is ingested before the
            # queue's jobs, so the follow-ups it enqueues run in the same burst.
            await riding_out(_drain)(ctx)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if catch_up in deps.outages.on_back:
            deps.outages.on_back.remove(catch_up)

    worker = ResilientWorker(
        # Built here, not by arq's main(): arq's pings at once and would end a worker that
        # starts while Redis is away (ResilientWorker waits for it instead).
        redis_pool=redis_pool or redis_client(redis_url),
        functions=control_functions(),
        cron_jobs=control_crons(settings, tick=burst or engine is not None),
        queue_name=CONTROL_QUEUE,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        burst=burst,
        max_jobs=50,
        job_timeout=600,
        handle_signals=False,
        poll_delay=0.01,
        outages=deps.outages,
        # The clock ticks with an engine of its own; a fixed engine ticks in arq's crons.
        alongside=() if burst else (pump, _clock(deps, redis_url, tick=engine is None)),
    )
    set_up(worker.ctx)
    return worker
