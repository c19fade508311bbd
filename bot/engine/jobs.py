"""The engine's arq jobs and cron (DESIGN §1: the control worker runs the engine); the
composition root (bot/processes/worker.py) registers them under the names in bot/jobs.py.

- `run_finished_job` (enqueued by a runner when a run has a result) takes the result in.
- `dispatch_job` (deferred to a ticket's backoff, or handed out by the tick) tries to
  start it.
- `gating_job` (handed out by the tick) shows a run's gates as in-progress check runs.
- `engine_tick` (every 3 s on the worker's engine clock, bot/processes/engine_clock.py, or
  as an arq cron; one at a time across workers) is the safety net: results whose
  announcement was lost (announced again), lost runs, queued runs whose send was lost,
  tickets due for a (re)try (a dispatch job each), runs at their gates (a gating job
  each), reviewed tickets whose checks may have gone green (one `recheck_merges_job`).
  It hands work out rather than doing it: its round trips are its length.
- `settle_hook` reacts to performed outbox effects: a PR opened, a merge done or refused.
- `WorkflowReactor` is what ingest hands a delivery's events to.

Every step is a decision in its own transaction on the ticket's locked row, so it is safe
with any number of workers running these at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from redis.exceptions import RedisError
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.base import NormalizedEvent
from bot.config.states import State
from bot.deps import AfterCommit
from bot.effects.kinds import EffectKind
from bot.effects.outbox import SettledEffect, SettleHook
from bot.engine.after_commit import (
    carry_out,
    check_merge_now,
    dispatch_now,
    hand_out_due,
    recheck_merges,
)
from bot.engine.alerts import notice_failing_deliveries, notice_offline_runners
from bot.engine.commands.registry import Commands
from bot.engine.commands.web import carry_out_action, expire_actions, stranded_actions
from bot.engine.context import Engine, Followups, load
from bot.engine.decision import Decision
from bot.engine.events import react
from bot.engine.gate_progress import report_gating, unreported_gating
from bot.engine.laps import Laps
from bot.engine.questions import remind_waiting
from bot.engine.results import finish_run, take_result
from bot.engine.runs.exclusive import sole_holder
from bot.engine.runs.recorder import recorder_live
from bot.engine.runs.resend import resend_queued
from bot.engine.runs.sending import enqueue_each_once
from bot.engine.runs.spec import work_branch
from bot.engine.runs.tracking import sweep_runs
from bot.jobs import (
    GATING_JOB,
    MERGE_RECHECK_JOB,
    REMOVE_WORKTREE_JOB,
    TICKET_ACTION_JOB,
    action_job_id,
    gating_job_id,
    run_queue,
)
from bot.tables.actions import ActionState, TicketAction
from bot.tables.workflow import EffectStatus, Run
from harness_store.db import reading, transaction
from runner.contract import RUN_FINISHED_JOB, RunResult, run_finished_job_id

log = structlog.get_logger(__name__)

# The ctx key under which the worker's start-up puts what gives the jobs their engine: a
# call answering the current Engine, or None while no GitHub App is configured.
ENGINE_CTX_KEY = "engine"
EngineProvider = Callable[[], "Engine | None"]
TICK_SECONDS = frozenset(range(0, 60, 3))
TICK_KEY = "openase:engine_tick"  # held by the tick that is running (any worker's)
# The running tick's key lives this long past its last renewal (a third of it, while the
# tick runs): a worker killed mid-tick stops everyone's ticks only that long. It was the
# 120 s tick timeout, and a worker SIGKILLed in a tick left results unannounced, runs
# unswept for two minutes (tests/chaos: the PostgreSQL fault after the worker's).
TICK_HOLD_MS = 10_000
MERGE_CHECK_EVERY = 10  # ticks between fallback merge checks of reviewed tickets
ALERT_EVERY = 20  # ticks between looks for failing webhook deliveries (about a minute)
# A web action still pending this long after it was stored lost its job (the web process
# enqueues it at once, and the worker takes it within milliseconds).
STRANDED_AFTER = timedelta(seconds=15)
# A result is announced again by the tick once it is this old: its runner's own
# announcement normally takes it in within moments, seconds when 200 runs end at once.
RESULT_GRACE = timedelta(seconds=5)
# A tick that did nothing is logged anyway when it took this long (make bench-scale reads it).
SLOW_TICK_SECONDS = 0.1


def _engine(ctx: dict[str, Any]) -> Engine | None:
    provide: EngineProvider | None = ctx.get(ENGINE_CTX_KEY)
    return None if provide is None else provide()


async def run_finished_job(ctx: dict[str, Any], run_id: str) -> bool:
    structlog.contextvars.clear_contextvars()
    engine = _engine(ctx)
    if engine is None:
        return False
    with structlog.contextvars.bound_contextvars(run_id=run_id):
        followups = await take_result(engine, run_id)
        if followups is None:
            return False
        await carry_out(engine, followups)
        return True


async def dispatch_job(ctx: dict[str, Any], ticket_id: int) -> str:
    structlog.contextvars.clear_contextvars()
    engine = _engine(ctx)
    if engine is None:
        return "engine_disabled"
    return await dispatch_now(engine, ticket_id)


async def gating_job(ctx: dict[str, Any], run_id: str) -> int:
    """A run reached its gates (the tick saw it): its gates' check runs, in progress."""
    structlog.contextvars.clear_contextvars()
    engine = _engine(ctx)
    if engine is None:
        return 0
    with structlog.contextvars.bound_contextvars(run_id=run_id):
        reported = await report_gating(engine, [run_id])
        for followups in reported:
            await carry_out(engine, followups)
        return len(reported)


async def recheck_merges_job(ctx: dict[str, Any]) -> int:
    """Every reviewed ticket's merge gate, looked at again (the tick hands it out every
    `MERGE_CHECK_EVERY` ticks): how many started merging."""
    structlog.contextvars.clear_contextvars()
    engine = _engine(ctx)
    return 0 if engine is None else await recheck_merges(engine)


async def engine_tick(ctx: dict[str, Any]) -> dict[str, int]:
    """The cron: everything an announcement, a send or a webhook may have missed.

    One at a time across workers: arq's `unique` only keeps workers off the same slot, so a
    tick longer than the 3 s between slots was joined by the next slot's, each repeating
    the same sweep (16 at once under `make bench-scale`'s 200 runs, and arq's timeout cut
    them off). A tick that finds one running skips its slot."""
    structlog.contextvars.clear_contextvars()
    engine = _engine(ctx)
    if engine is None:
        return {}
    async with sole_holder(engine.deps.redis, TICK_KEY, TICK_HOLD_MS, renew=True) as sole:
        if not sole:
            log.debug("engine_tick_skipped", reason="the previous tick is still running")
            return {}
        return await _tick(ctx, engine)


async def _tick(ctx: dict[str, Any], engine: Engine) -> dict[str, int]:
    began, began_cpu = time.monotonic(), time.thread_time()
    ticks = ctx.setdefault("engine_ticks", 0) + 1
    ctx["engine_ticks"] = ticks
    laps = Laps()

    async def announce(ended: Sequence[tuple[str, RunResult]]) -> list[str]:
        # Its runner's announcement does the taking in (`run_finished_job`); under the same
        # job id this is a no-op while that is queued or running, and its stand-in if it was
        # lost. Taking 200 results in one after another made ticks of many seconds; so did
        # announcing again each of 83 results whose announcements were queued behind
        # others: only a result its announcement has had time to take in is announced, and
        # all of them in one round trip.
        now = datetime.now(UTC)
        due = [run_id for run_id, result in ended if now - result.finished_at >= RESULT_GRACE]
        jobs = [(run_finished_job_id(run_id), (run_id,)) for run_id in due]
        queued = await enqueue_each_once(engine.deps.redis, RUN_FINISHED_JOB, jobs)
        return [run_id for run_id, was_queued in zip(due, queued, strict=True) if was_queued]

    async def lose(run_id: str) -> bool:
        followups = await finish_run(engine, run_id, None)
        if followups is None:
            return False
        await carry_out(engine, followups)
        return True

    # A recorder holding its lease persists the runs' events as they come (else: this).
    recording = await recorder_live(engine.deps.redis)
    sweep = await sweep_runs(
        engine.deps.redis,
        engine.deps.sessions,
        finish=announce,
        lose=lose,
        events=not recording,
    )
    laps.lap("sweep")
    gating = await _hand_out(engine, GATING_JOB, gating_job_id, await unreported_gating(engine))
    laps.lap("gating")
    resent = await resend_queued(engine)
    laps.lap("resend")
    handed = await hand_out_due(engine)
    laps.lap("due")
    actions = await resend_actions(engine)
    # A job: 400 tickets in review made a tick of seconds (a decision each, one by one).
    merges = 0
    if ticks % MERGE_CHECK_EVERY == 0:
        merges = (
            await engine.deps.redis.enqueue_job(MERGE_RECHECK_JOB, _job_id=MERGE_RECHECK_JOB)
            is not None
        )
    reminded = await remind_waiting(engine)
    for followups in reminded:
        await carry_out(engine, followups)
    laps.lap("actions, merges, questions")
    offline = await notice_offline_runners(engine)
    failing = await notice_failing_deliveries(engine) if ticks % ALERT_EVERY == 0 else 0
    laps.lap("alerts")
    counts = {
        "results_announced": len(sweep.finished),
        "lost": len(sweep.lost),
        "gating_handed_out": gating,
        "resent": resent,
        "dispatches_handed_out": handed,
        "merge_rechecks_handed_out": int(merges),
        "actions_resent": actions,
        "questions_reminded": len(reminded),
        "runners_offline": offline,
        "deliveries_failing": failing,
    }
    seconds = round(time.monotonic() - began, 3)
    if any(counts.values()) or seconds >= SLOW_TICK_SECONDS:
        # The thread's CPU beside the wall time: a slow tick that used little was waiting
        # (its round trips, the interpreter's lock, the machine), not working.
        cpu = round(time.thread_time() - began_cpu, 3)
        log.info(
            "engine_tick",
            seconds=seconds,
            thread_cpu_seconds=cpu,
            slowest=laps.slowest(),
            **counts,
        )
    return counts


async def _hand_out(
    engine: Engine, job: str, job_id: Callable[[str], str], run_ids: Sequence[str]
) -> int:
    """A job each for these runs, in one round trip; how many were not queued yet."""
    jobs = [(job_id(run_id), (run_id,)) for run_id in run_ids]
    return sum(await enqueue_each_once(engine.deps.redis, job, jobs))


async def ticket_action_job(ctx: dict[str, Any], action_id: int, commands: Commands) -> str:
    """An action pressed on a ticket's web page (bot/engine/commands/web.py), once: its
    row is locked and must still be pending, and records its outcome in the decision's
    transaction. A failure (GitHub away) rolls back and leaves it pending for the tick."""
    structlog.contextvars.clear_contextvars()
    engine = _engine(ctx)
    if engine is None:
        return "engine_disabled"  # pending until an App is configured, or it expires
    with structlog.contextvars.bound_contextvars(action_id=action_id):
        async with transaction(engine.deps.sessions) as session:
            action = await session.scalar(
                select(TicketAction)
                .where(TicketAction.id == action_id, TicketAction.state == ActionState.PENDING)
                .with_for_update(skip_locked=True)
            )
            if action is None:
                return "not_pending"  # done already, expired, or another worker has it
            followups = await carry_out_action(session, engine, action, commands)
            outcome = action.state
        await carry_out(engine, followups)
        return outcome


async def resend_actions(engine: Engine) -> int:
    """Web actions whose job Redis lost are sent again; ones too old are dropped."""
    # Nearly always none: one read, not a transaction of four round trips, every tick
    # (an action too old to carry out is older than a stranded one).
    async with reading(engine.deps.sessions) as session:
        if not await stranded_actions(session, older_than=STRANDED_AFTER):
            return 0
    async with transaction(engine.deps.sessions) as session:
        await expire_actions(session)
        stranded = await stranded_actions(session, older_than=STRANDED_AFTER)
    try:
        for action_id in stranded:
            await engine.deps.redis.enqueue_job(
                TICKET_ACTION_JOB, action_id, _job_id=action_job_id(action_id)
            )
    except (RedisError, OSError) as exc:
        log.warning("web_actions_not_resent", error=type(exc).__name__)
    return len(stranded)


class WorkflowReactor:
    """The engine as ingest sees it (bot.deps.EventReactor): decides on a delivery's events
    in ingest's transaction, and carries out what follows once that committed."""

    def __init__(self, engine: Engine, commands: Commands) -> None:
        self.engine = engine
        self.commands = commands

    async def react(
        self,
        session: AsyncSession,
        events: Sequence[NormalizedEvent],
        installation_id: int | None,
    ) -> AfterCommit:
        followups = await react(session, self.engine, events, self.commands, installation_id)

        async def after() -> None:
            await carry_out(self.engine, followups)

        return after


# --- reacting to performed effects ------------------------------------------------------------


def settle_hook(engine: Engine) -> SettleHook:
    """The outbox's `on_settled` for this engine."""

    async def on_settled(session: AsyncSession, effect: SettledEffect) -> AfterCommit | None:
        if effect.ticket_id is None:
            return None
        if effect.kind == EffectKind.PULL_REQUEST:
            return await _pull_request_settled(session, engine, effect)
        if effect.kind == EffectKind.MERGE:
            return await _merge_settled(session, engine, effect)
        if effect.kind == EffectKind.CHECK_RUN and effect.status == EffectStatus.DONE:
            ticket_id = effect.ticket_id

            async def check() -> None:
                await check_merge_now(engine, ticket_id)

            return check
        return None

    return on_settled


def _after(engine: Engine, followups: Followups) -> AfterCommit:
    async def after() -> None:
        await carry_out(engine, followups)

    return after


async def _pull_request_settled(
    session: AsyncSession, engine: Engine, effect: SettledEffect
) -> AfterCommit | None:
    assert effect.ticket_id is not None
    loaded = await load(session, effect.ticket_id)
    if loaded is None or loaded.state is None or loaded.repo is None:
        return None
    row = loaded.state
    config = (await engine.config_of(loaded.repo)).config
    followups = Followups(decision=f"pr-settled:{effect.id}")
    decision = Decision(session, engine, loaded, config, followups)
    if effect.status == EffectStatus.DONE and effect.result is not None:
        number = effect.result.get("number")
        if not isinstance(number, int):
            return None
        if row.state == State.IN_REVIEW:
            await decision.transition(
                row.state,
                reason=f"PR #{number} {'opened' if effect.result.get('created') else 'updated'}",
                pr_number=number,
            )
            followups.merge_checks.add(effect.ticket_id)
        else:
            row.pr_number = number
    elif effect.status == EffectStatus.FAILED and row.state == State.IN_REVIEW:
        why = f"the pull request could not be opened: {effect.error}"
        await decision.transition(State.FAILED, reason=why, last_failure=why)
        await decision.comment(
            key=f"comment:{effect.ticket_id}:pr-failed:{effect.id}",
            body=f"❌ OpenASE finished the work on `{work_branch(loaded.ticket)}`, but {why}",
        )
    return _after(engine, followups)


async def _merge_settled(
    session: AsyncSession, engine: Engine, effect: SettledEffect
) -> AfterCommit | None:
    assert effect.ticket_id is not None
    loaded = await load(session, effect.ticket_id)
    if loaded is None or loaded.state is None or loaded.repo is None:
        return None
    row, repo = loaded.state, loaded.repo
    if row.state != State.MERGING:
        return None
    config = (await engine.config_of(repo)).config
    followups = Followups(decision=f"merge-settled:{effect.id}")
    decision = Decision(session, engine, loaded, config, followups)
    if effect.status == EffectStatus.DONE:
        await decision.transition(State.DONE, reason="the PR was merged")
        await decision.close_issue()
        machine = await _last_machine(session, effect.ticket_id)
        full_name, branch = repo.full_name, work_branch(loaded.ticket)

        async def after() -> None:
            await carry_out(engine, followups)
            if machine is not None:
                await _remove_worktree(engine, machine, full_name, branch)

        return after
    reason = (effect.result or {}).get("reason") or effect.error or "GitHub refused the merge"
    await decision.transition(
        State.IN_REVIEW,
        reason=f"merge refused: {reason}",
        waiting=f"⛔ GitHub would not merge: {reason}",
    )
    await decision.comment(
        key=f"comment:{effect.ticket_id}:merge-refused:{effect.id}",
        body=f"⛔ OpenASE could not merge PR #{row.pr_number}: {reason}",
    )
    return _after(engine, followups)


async def _last_machine(session: AsyncSession, ticket_id: int) -> str | None:
    machine: str | None = await session.scalar(
        select(Run.machine)
        .where(and_(Run.ticket_id == ticket_id, Run.machine.is_not(None)))
        .order_by(Run.queued_at.desc())
        .limit(1)
    )
    return machine


async def _remove_worktree(engine: Engine, machine: str, repo: str, branch: str) -> None:
    try:
        await engine.deps.redis.enqueue_job(
            REMOVE_WORKTREE_JOB, repo, branch, _queue_name=run_queue(machine)
        )
    except (RedisError, OSError) as exc:
        log.warning("worktree_removal_not_sent", machine=machine, error=type(exc).__name__)
