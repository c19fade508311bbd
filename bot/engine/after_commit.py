"""Carrying out what committed decisions ask for (`Followups`): cancel runs, send runs, ask
for the outbox to be performed, and make the decisions they call for next — dispatching a
ticket, checking its merge gate, starting tickets waiting for a free slot — whose own
followups are carried out in turn. Decisions never call back up into this module; the
caller at the top (a job, the cron, ingest, the outbox's settle hook) calls it once.

Everything here happens after the commit, so a failure is logged and left to the
engine's cron, which finds due tickets, pending effects and open runs again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable
from datetime import UTC, datetime

import structlog
from redis.exceptions import RedisError
from sqlalchemy import or_, select

from bot.config.states import State
from bot.effects.outbox import enqueue_perform
from bot.engine.context import Decided, Engine, Followups
from bot.engine.merge_gate import consider_merge
from bot.engine.runs.dispatch import NOT_PICKUP, dispatch_ticket
from bot.engine.runs.machine_controls import free_slots_now
from bot.engine.runs.sending import enqueue_each_once, send
from bot.jobs import DISPATCH_JOB
from bot.tables.mirror import Ticket
from bot.tables.workflow import TicketState
from harness_store.db import reading
from runner.contract import run_cancel_key

log = structlog.get_logger(__name__)

CANCEL_TTL_SECONDS = 7 * 24 * 3600
DUE_BATCH = 100


async def carry_out(engine: Engine, followups: Followups) -> None:
    """Do what a committed decision asked for, and what the decisions that starts ask for.

    The outbox is woken last, once the runs are sent: its effects (labels, comments) then
    do not compete with starting the agent for this process's time, and cost that start
    tens of milliseconds (issue #18's label -> agent); they go out right after."""
    pending = deque([followups])
    wake: list[tuple[str, int | None]] = []
    while pending:
        current = pending.popleft()
        await _signal(engine, current)
        stamp = current.decision or f"{time.time_ns()}"
        wake.extend(
            (f"{stamp}:{installation_id}", installation_id) for installation_id in current.outbox
        )
        for ticket_id in sorted(current.dispatch):
            pending.extend(
                await _decide("dispatch_failed", ticket_id, dispatch_ticket(engine, ticket_id))
            )
        for ticket_id in sorted(current.merge_checks):
            pending.extend(
                await _decide("merge_check_failed", ticket_id, consider_merge(engine, ticket_id))
            )
        for ticket_id, when in current.later.items():
            await dispatch_later(engine, ticket_id, when)
        if current.dispatch_due:
            try:
                for decided in await _dispatch_due(engine):
                    pending.append(decided.followups)
            except Exception:  # the cron tries again
                log.warning("dispatch_due_failed", ticket_id=0, exc_info=True)
    for decision, installation_id in wake:
        await enqueue_perform(engine.deps.redis, decision=decision, installation_id=installation_id)


async def _signal(engine: Engine, followups: Followups) -> None:
    """The parts that only tell others: cancel runs, send runs."""
    redis = engine.deps.redis
    for run_id, reason in followups.cancel.items():
        try:
            await redis.set(run_cancel_key(run_id), reason[:500], ex=CANCEL_TTL_SECONDS)
        except (RedisError, OSError) as exc:
            log.warning("cancel_not_sent", run_id=run_id, error=type(exc).__name__)
    for spec, machine, token_expires in followups.sends:
        await send(redis, spec, machine, token_expires)


async def _decide(event: str, ticket_id: int, work: Awaitable[Decided]) -> list[Followups]:
    try:
        return [(await work).followups]
    except Exception:  # the cron tries again; one ticket's trouble must not stop the rest
        log.warning(event, ticket_id=ticket_id, exc_info=True)
        return []


# --- entry points for jobs and the cron --------------------------------------------------------


async def dispatch_now(engine: Engine, ticket_id: int) -> str:
    """Try to start the ticket and carry out what follows; how it went (one word)."""
    decided = await dispatch_ticket(engine, ticket_id)
    await carry_out(engine, decided.followups)
    return decided.outcome


async def check_merge_now(engine: Engine, ticket_id: int) -> str:
    """Check the ticket's merge gate and carry out what follows; how it went (one word)."""
    decided = await consider_merge(engine, ticket_id)
    await carry_out(engine, decided.followups)
    return decided.outcome


async def hand_out_due(engine: Engine, *, limit: int = DUE_BATCH) -> int:
    """The engine tick's way to start due tickets: a dispatch job each, oldest first, for as
    many as the machines have free slots; the workers' job slots run them side by side. How
    many were handed out (one already queued or running is not handed out again).

    The tick dispatching them itself, one after another, took 23 and 56 s for 34 and 23
    tickets while 200 agents started (`make bench-scale`), and the tick's other work (run
    events, results, lost runs) waited behind them."""
    # Due tickets first: most ticks have none, and the free slots cost a Redis round trip
    # and a transaction (round trips are what a tick's length is made of).
    due = await _due(engine, limit=limit)
    if not due:
        return 0
    free = await free_slots_now(engine.deps.redis, engine.deps.sessions)
    due = due[: max(0, free)]
    # All in one round trip: `enqueue_job` is three each, and 100 one after another took
    # 5 s in a busy worker (side by side, still 180-256 ms of a tick).
    jobs = [(f"dispatch:{ticket_id}:due", (ticket_id,)) for ticket_id in due]
    return sum(await enqueue_each_once(engine.deps.redis, DISPATCH_JOB, jobs))


async def _due(engine: Engine, *, limit: int) -> list[int]:
    """Tickets waiting in a pickup state whose backoff is over, oldest first."""
    now = datetime.now(UTC)
    async with reading(engine.deps.sessions) as session:
        return list(
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
        )


async def _dispatch_due(engine: Engine, *, limit: int = DUE_BATCH) -> list[Decided]:
    """Start due tickets, oldest first, while the machines have free slots: with none left,
    the rest would only each find out again that no runner has room."""
    free = await free_slots_now(engine.deps.redis, engine.deps.sessions)
    if free <= 0:
        return []
    ids = await _due(engine, limit=limit)
    decided: list[Decided] = []
    for ticket_id in ids:
        if free <= 0:
            break
        try:
            outcome = await dispatch_ticket(engine, ticket_id)
        except Exception:  # one ticket's trouble must not stop the others
            log.warning("dispatch_failed", ticket_id=ticket_id, exc_info=True)
            continue
        decided.append(outcome)
        if outcome.outcome == "dispatched":
            free -= 1
        elif outcome.outcome in ("no_machine", "not_claimed"):
            # Another dispatcher (a worker, a finished run's followups) may have taken the
            # slots meanwhile: counted again, not tried ticket after ticket.
            free = await free_slots_now(engine.deps.redis, engine.deps.sessions)
    return decided


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
    async with reading(engine.deps.sessions) as session:
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
            merging += await check_merge_now(engine, ticket_id) == "merging"
        except Exception:
            log.warning("merge_check_failed", ticket_id=ticket_id, exc_info=True)
    return merging
