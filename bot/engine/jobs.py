"""The engine's arq jobs and cron (DESIGN §1: the control worker runs the engine).

- `run_finished` (enqueued by a runner when a run has a result) takes the result in.
- `dispatch_ticket` (deferred to a ticket's backoff) tries to start it.
- `engine_tick` (cron, every few seconds, one at a time across workers) is the safety
  net: results whose announcement was lost, lost runs, queued runs whose send was lost,
  tickets due for a (re)try, reviewed tickets whose checks may have gone green.
- `on_settled` reacts to performed outbox effects: a PR opened, a merge done or refused.

Every step is a decision in its own transaction on the ticket's locked row, so it is safe
with any number of workers running these at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from arq import cron
from arq.cron import CronJob
from arq.worker import func as arq_func
from redis.exceptions import RedisError
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.states import State
from bot.deps import Deps
from bot.effects.github import EffectKind
from bot.effects.outbox import SettledEffect, add_effect
from bot.engine.core import Engine, Followups, comment, load, note, transition
from bot.engine.gate_progress import report_gating
from bot.engine.merge_gate import consider_merge
from bot.engine.results import finish_run, take_result
from bot.engine.runs.dispatch import NOT_PICKUP, dispatch_ticket, resend_queued
from bot.engine.runs.spec import work_branch
from bot.engine.runs.tracking import sweep_runs
from bot.errors import ConfigError
from bot.tables.mirror import Ticket
from bot.tables.workflow import EffectStatus, Run, TicketState
from runner.contract import REMOVE_WORKTREE_JOB, RUN_FINISHED_JOB, RunResult, run_queue

log = structlog.get_logger(__name__)

ENGINE_CTX_KEY = "engine"
DISPATCH_JOB = "dispatch_ticket"
TICK_SECONDS = frozenset(range(0, 60, 3))
DUE_BATCH = 100
MERGE_CHECK_EVERY = 10  # ticks between fallback merge checks of reviewed tickets


def build_engine(deps: Deps) -> Engine | None:
    """The worker's engine; None (and one log line) when the GitHub App is not configured."""
    from bot.config.control import load_control_config
    from bot.intake.backfill import github_app

    try:
        github = github_app(deps.settings)
    except ConfigError as exc:
        log.warning("engine_disabled", reason=str(exc))
        return None
    from bot.trackers import tracker_clients

    engine = Engine(
        deps=deps,
        github=github,
        control=load_control_config(deps.settings.config),
        trackers=tracker_clients(deps.settings),
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


def _engine(ctx: dict[str, Any]) -> Engine | None:
    engine: Engine | None = ctx.get(ENGINE_CTX_KEY)
    return engine


async def run_finished_job(ctx: dict[str, Any], run_id: str) -> bool:
    structlog.contextvars.clear_contextvars()
    engine = _engine(ctx)
    if engine is None:
        return False
    with structlog.contextvars.bound_contextvars(run_id=run_id):
        return await take_result(engine, run_id)


async def dispatch_job(ctx: dict[str, Any], ticket_id: int) -> str:
    structlog.contextvars.clear_contextvars()
    engine = _engine(ctx)
    if engine is None:
        return "engine_disabled"
    return await dispatch_ticket(engine, ticket_id)


async def engine_tick(ctx: dict[str, Any]) -> dict[str, int]:
    """The cron: everything an announcement, a send or a webhook may have missed."""
    structlog.contextvars.clear_contextvars()
    engine = _engine(ctx)
    if engine is None:
        return {}
    ticks = ctx.setdefault("engine_ticks", 0) + 1
    ctx["engine_ticks"] = ticks

    async def finish(run_id: str, result: RunResult) -> bool:
        return await finish_run(engine, run_id, result)

    async def lose(run_id: str) -> bool:
        return await finish_run(engine, run_id, None)

    sweep = await sweep_runs(engine.deps.redis, engine.deps.sessions, finish=finish, lose=lose)
    gating = await report_gating(engine)
    resent = await resend_queued(engine)
    started = await dispatch_due(engine)
    merges = await recheck_merges(engine) if ticks % MERGE_CHECK_EVERY == 0 else 0
    counts = {
        "finished": len(sweep.finished),
        "lost": len(sweep.lost),
        "gating": gating,
        "resent": resent,
        "dispatched": started,
        "merge_checks": merges,
    }
    if any(counts.values()):
        log.info("engine_tick", **counts)
    return counts


async def dispatch_due(engine: Engine, *, limit: int = DUE_BATCH) -> int:
    """Try every ticket waiting in a pickup state whose backoff is over, oldest first."""
    now = datetime.now(UTC)
    async with engine.deps.sessions() as session:
        ids = (
            await session.scalars(
                select(TicketState.ticket_id)
                .join(Ticket, Ticket.id == TicketState.ticket_id)
                .where(
                    TicketState.state.not_in(NOT_PICKUP),
                    TicketState.state != State.BACKLOG,
                    TicketState.held.is_(False),
                    or_(TicketState.next_attempt_at.is_(None), TicketState.next_attempt_at <= now),
                    Ticket.state == "open",
                )
                .order_by(TicketState.next_attempt_at.nulls_first(), TicketState.ticket_id)
                .limit(limit)
            )
        ).all()
    started = 0
    for ticket_id in ids:
        try:
            outcome = await dispatch_ticket(engine, ticket_id)
        except Exception:  # one ticket's trouble must not stop the others
            log.warning("dispatch_failed", ticket_id=ticket_id, exc_info=True)
            continue
        started += outcome == "dispatched"
    return started


async def dispatch_later(engine: Engine, ticket_id: int, when: datetime) -> None:
    """A deferred job starts the ticket when its backoff ends (the cron would, too)."""
    try:
        await engine.deps.redis.enqueue_job(
            DISPATCH_JOB,
            ticket_id,
            _job_id=f"dispatch:{ticket_id}:{int(when.timestamp())}",
            _defer_until=when,
        )
    except (RedisError, OSError) as exc:
        log.warning("dispatch_not_scheduled", ticket_id=ticket_id, error=type(exc).__name__)


async def recheck_merges(engine: Engine) -> int:
    """Reviewed tickets whose gates may have opened without a webhook telling us."""
    async with engine.deps.sessions() as session:
        ids = (
            await session.scalars(
                select(TicketState.ticket_id).where(
                    TicketState.state == State.IN_REVIEW,
                    TicketState.pr_number.is_not(None),
                    TicketState.held.is_(False),
                )
            )
        ).all()
    merging = 0
    for ticket_id in ids:
        try:
            merging += await consider_merge(engine, ticket_id) == "merging"
        except Exception:
            log.warning("merge_check_failed", ticket_id=ticket_id, exc_info=True)
    return merging


# --- reacting to performed effects ------------------------------------------------------------

AfterCommit = Callable[[], Awaitable[None]]


def settle_hook(
    engine: Engine,
) -> Callable[[AsyncSession, SettledEffect], Awaitable[AfterCommit | None]]:
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
                await consider_merge(engine, ticket_id)

            return check
        return None

    return on_settled


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
    if effect.status == EffectStatus.DONE and effect.result is not None:
        number = effect.result.get("number")
        if not isinstance(number, int):
            return None
        if row.state == State.IN_REVIEW:
            await transition(
                session,
                engine,
                loaded,
                config,
                followups,
                row.state,
                reason=f"PR #{number} {'opened' if effect.result.get('created') else 'updated'}",
                pr_number=number,
            )
            followups.merge_checks.add(effect.ticket_id)
        else:
            row.pr_number = number
    elif effect.status == EffectStatus.FAILED and row.state == State.IN_REVIEW:
        why = f"the pull request could not be opened: {effect.error}"
        await transition(
            session, engine, loaded, config, followups, State.FAILED, reason=why, last_failure=why
        )
        await comment(
            session,
            loaded,
            followups,
            key=f"comment:{effect.ticket_id}:pr-failed:{effect.id}",
            body=f"❌ OpenASE finished the work on `{work_branch(loaded.ticket)}`, but {why}",
        )
    return lambda: followups.run(engine)


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
    if effect.status == EffectStatus.DONE:
        await transition(
            session, engine, loaded, config, followups, State.DONE, reason="the PR was merged"
        )
        await close_issue(session, loaded, followups)
        machine = await _last_machine(session, effect.ticket_id)
        full_name, branch = repo.full_name, work_branch(loaded.ticket)

        async def after() -> None:
            await followups.run(engine)
            if machine is not None:
                await _remove_worktree(engine, machine, full_name, branch)

        return after
    reason = (effect.result or {}).get("reason") or effect.error or "GitHub refused the merge"
    await transition(
        session,
        engine,
        loaded,
        config,
        followups,
        State.IN_REVIEW,
        reason=f"merge refused: {reason}",
        waiting=f"⛔ GitHub would not merge: {reason}",
    )
    await comment(
        session,
        loaded,
        followups,
        key=f"comment:{effect.ticket_id}:merge-refused:{effect.id}",
        body=f"⛔ OpenASE could not merge PR #{row.pr_number}: {reason}",
    )
    return lambda: followups.run(engine)


async def close_issue(session: AsyncSession, loaded: Any, followups: Followups) -> None:
    """Close the ticket as completed (a PR into a non-default branch does not close it)."""
    if loaded.repo is None or loaded.ticket.number is None or loaded.ticket.state != "open":
        return
    await add_effect(
        session,
        key=f"close:{loaded.ticket.id}",
        kind=EffectKind.ISSUE,
        payload={
            "repo": loaded.repo.full_name,
            "number": loaded.ticket.number,
            "state": "closed",
            "state_reason": "completed",
        },
        ticket_id=loaded.ticket.id,
        installation_id=loaded.repo.installation_id,
    )
    followups.outbox.add(loaded.repo.installation_id)


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


# --- arq ---------------------------------------------------------------------------------------


def engine_functions() -> list[Any]:
    return [
        arq_func(run_finished_job, name=RUN_FINISHED_JOB, keep_result=0, max_tries=3),
        arq_func(dispatch_job, name=DISPATCH_JOB, keep_result=0, max_tries=1),
    ]


def engine_cron_jobs() -> list[CronJob]:
    return [
        cron(
            engine_tick,
            name="engine_tick",
            second=set(TICK_SECONDS),
            unique=True,
            run_at_startup=True,
            timeout=120,
        )
    ]


__all__ = [
    "DISPATCH_JOB",
    "ENGINE_CTX_KEY",
    "build_engine",
    "close_issue",
    "consider_merge",
    "dispatch_due",
    "dispatch_later",
    "engine_cron_jobs",
    "engine_functions",
    "engine_tick",
    "note",
    "settle_hook",
]
