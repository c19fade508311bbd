"""Following runs from the control plane: persist each run's events from its Redis stream,
keep its heartbeat, take in its result, and declare it lost when its machine went quiet.

Only Redis connects the two sides (DESIGN §2): the runner writes `openase:run:<id>:events`,
`…:alive` and `…:result`; this module reads them into the `runs` and `run_events` tables.
Every step is idempotent (event rows are keyed by sequence number, state changes are
conditional), so any number of control workers may run it at once.

Redis outages: a run's silence counts against it only while the control plane was
watching. Each sweep notes in Redis since when sweeps have followed each other without a
gap (`openase:runs:watched`); after a gap (Redis was away, or every control worker was) or
when the note is gone (Redis came back empty), the clock starts again, so a runner gets
the whole lost-run window to show itself again. A failed read raises and declares nothing.
A run declared lost is told to stop (its cancel key), and told again should it show signs
of life later (a zombie whose runner was cut off longer than the window).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.tables.workflow import Run, RunEvent, RunEventCursor, RunState
from runner.contract import (
    AgentEvent,
    ContractMismatch,
    RunResult,
    machine_key,
    run_cancel_key,
    run_events_stream,
    run_heartbeat_key,
    run_result_key,
)

log = structlog.get_logger(__name__)

# A run is lost when neither its liveness key nor a result exists this long after its
# last sign of life: the liveness key lives 30 s, so a live run is never mistaken.
LOST_AFTER = timedelta(seconds=45)
# A queued run whose machine vanished from the registry is lost after this long.
QUEUED_LOST_AFTER = timedelta(seconds=60)
# The runner stores a result with this error class when it hands a run back to its queue
# on shutdown: the job runs again, so that is not the run's result.
HANDED_BACK = "runner_shutdown"
_READ_BATCH = 500
# Sweeps run every few seconds; a longer pause means nobody could watch the runs.
WATCH_GAP = timedelta(seconds=15)
WATCHED_KEY = "openase:runs:watched"
# A lost run's runner may come back this long after (cut off from Redis, not dead).
ZOMBIE_WINDOW = timedelta(days=1)
LOST_CANCEL_TTL_SECONDS = 7 * 24 * 3600
LOST_REASON = "the run was declared lost (its runner was cut off) and retried elsewhere"


async def collect_events(
    redis: Redis,
    sessions: async_sessionmaker[AsyncSession],
    run_id: str,
    *,
    cursor: str | None = None,
    cursor_known: bool = False,
) -> int:
    """Copy the run's new stream entries into `run_events`; how many were new.

    It reads on from the run's cursor (the last entry persisted, `run_event_cursors`;
    `cursor_known`: the caller read it into `cursor` already), not the whole stream again
    each time."""
    if not cursor_known:
        async with sessions() as session:
            cursor = await session.scalar(
                select(RunEventCursor.entry_id).where(RunEventCursor.run_id == run_id)
            )
    stored = 0
    start = "-" if cursor is None else f"({cursor}"
    while True:
        entries = await redis.xrange(run_events_stream(run_id), min=start, count=_READ_BATCH)
        if not entries:
            return stored
        last = entries[-1][0].decode()
        # Entries past the cursor are new but for another worker's race: the insert keeps
        # each seq once, whoever stores it.
        stored += await _store(sessions, run_id, _decode(entries), last)
        if len(entries) < _READ_BATCH:
            return stored
        start = f"({last}"


def _decode(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[AgentEvent]:
    events = []
    for _, fields in entries:
        try:
            event = AgentEvent.from_wire(json.loads(fields[b"event"]))
        except (KeyError, ValueError, ContractMismatch) as error:
            log.warning("run_event_unreadable", error=str(error))
            continue
        events.append(event)
    return events


async def _store(
    sessions: async_sessionmaker[AsyncSession],
    run_id: str,
    events: list[AgentEvent],
    cursor: str,
) -> int:
    async with sessions() as session, session.begin():
        if not events:  # only unreadable entries: read past them
            await _move_cursor(session, run_id, cursor)
            return 0
        inserted = await session.execute(
            insert(RunEvent)
            .values(
                [
                    {
                        "run_id": run_id,
                        "seq": event.seq,
                        "kind": event.kind.value,
                        "event": event.to_wire(),
                        "at": event.at,
                    }
                    for event in events
                ]
            )
            .on_conflict_do_nothing()
            .returning(RunEvent.seq)
        )
        count = len(inserted.all())
        latest = max(event.at for event in events)
        await session.execute(
            update(Run)
            .where(Run.id == run_id, Run.state.in_((RunState.QUEUED, RunState.RUNNING)))
            .values(
                state=RunState.RUNNING,
                started_at=func.coalesce(Run.started_at, min(event.at for event in events)),
                last_heartbeat_at=latest,
            )
        )
        await _move_cursor(session, run_id, cursor)
        return count


async def _move_cursor(session: AsyncSession, run_id: str, entry_id: str) -> None:
    """Whatever the run's state. (Two workers reading at once may set it back a little:
    the next read repeats a few entries, which are stored once.)"""
    await session.execute(
        insert(RunEventCursor)
        .values(run_id=run_id, entry_id=entry_id)
        .on_conflict_do_update(index_elements=["run_id"], set_={"entry_id": entry_id})
    )


async def fetch_result(redis: Redis, run_id: str) -> RunResult | None:
    """The run's result, once its runner has stored one (an unreadable one is logged)."""
    raw = await redis.get(run_result_key(run_id))
    if raw is None:
        return None
    try:
        return RunResult.from_wire(json.loads(raw))
    except (ValueError, ContractMismatch) as error:
        log.error("run_result_unreadable", run_id=run_id, error=str(error))
        return None


@dataclass(frozen=True)
class Sweep:
    finished: list[tuple[str, RunResult]]
    lost: list[str]


Finisher = Callable[[str, RunResult], Awaitable[bool]]
Loser = Callable[[str], Awaitable[bool]]


async def sweep_runs(
    redis: Redis,
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime | None = None,
    finish: Finisher | None = None,
    lose: Loser | None = None,
) -> Sweep:
    """For every unfinished run: take in a result if there is one, else declare the run
    lost when its machine stopped showing signs of life.

    `finish` and `lose` record that (and may decide on it in the same transaction, as the
    engine does); each returns whether it changed the run, so only one caller acts."""
    now = now or datetime.now(UTC)

    async def recorded_finish(run_id: str, result: RunResult) -> bool:
        return await _finish(sessions, run_id, result)

    async def recorded_loss(run_id: str) -> bool:
        return await _mark_lost(sessions, run_id, now)

    finish = finish or recorded_finish
    lose = lose or recorded_loss
    watched_since = await _watching(redis, now)
    async with sessions() as session:
        open_runs = (
            await session.execute(
                select(
                    Run.id,
                    Run.state,
                    Run.machine,
                    Run.queued_at,
                    Run.last_heartbeat_at,
                    RunEventCursor.entry_id,
                )
                .outerjoin(RunEventCursor, RunEventCursor.run_id == Run.id)
                .where(Run.state.in_((RunState.QUEUED, RunState.RUNNING)))
            )
        ).all()
    finished: list[tuple[str, RunResult]] = []
    lost: list[str] = []
    for run_id, state, machine, queued_at, heartbeat_at, cursor in open_runs:
        await collect_events(redis, sessions, run_id, cursor=cursor, cursor_known=True)
        result = await fetch_result(redis, run_id)
        if result is not None and result.error_class != HANDED_BACK:
            if await finish(run_id, result):
                finished.append((run_id, result))
            continue
        if await redis.exists(run_heartbeat_key(run_id)):
            continue
        if state == RunState.RUNNING:
            seen = max(heartbeat_at or queued_at, watched_since)
            gone = now - seen > LOST_AFTER
        else:  # queued: waiting for a slot is fine while its machine is registered
            machine_gone = machine is None or not await redis.exists(machine_key(machine))
            gone = machine_gone and now - max(queued_at, watched_since) > QUEUED_LOST_AFTER
        # Redis emptied mid-sweep (its note is gone with it) says nothing about the run.
        if gone and await redis.exists(WATCHED_KEY) and await lose(run_id):
            log.warning("run_lost", run_id=run_id)
            lost.append(run_id)
            await _tell_to_stop(redis, run_id)
    await _stop_zombies(redis, sessions, now)
    return Sweep(finished, lost)


async def _watching(redis: Redis, now: datetime) -> datetime:
    """Since when sweeps have watched the runs without a gap (now, after one)."""
    noted = await redis.hmget(WATCHED_KEY, ["since", "last"])  # type: ignore[misc]  # redis-py's union return
    since = now
    if noted[0] is not None and noted[1] is not None:
        last = datetime.fromtimestamp(float(noted[1]), UTC)
        if timedelta(0) <= now - last <= WATCH_GAP:
            since = datetime.fromtimestamp(float(noted[0]), UTC)
    await redis.hset(  # type: ignore[misc]  # redis-py's union return
        WATCHED_KEY, mapping={"since": since.timestamp(), "last": now.timestamp()}
    )
    return since


async def _tell_to_stop(redis: Redis, run_id: str) -> None:
    """The runner stops the run when it sees this (pushing its work), should it be alive."""
    await redis.set(run_cancel_key(run_id), LOST_REASON, ex=LOST_CANCEL_TTL_SECONDS, nx=True)


async def _stop_zombies(
    redis: Redis, sessions: async_sessionmaker[AsyncSession], now: datetime
) -> None:
    """A lost run alive again (its runner was cut off, not dead) is told to stop again:
    Redis may have come back empty, without the first signal."""
    async with sessions() as session:
        recent = (
            await session.scalars(
                select(Run.id).where(
                    Run.state == RunState.LOST, Run.finished_at > now - ZOMBIE_WINDOW
                )
            )
        ).all()
    for run_id in recent:
        if await redis.exists(run_heartbeat_key(run_id)):
            if not await redis.exists(run_cancel_key(run_id)):
                log.warning("run_zombie_stopped", run_id=run_id)
            await _tell_to_stop(redis, run_id)


async def _finish(
    sessions: async_sessionmaker[AsyncSession], run_id: str, result: RunResult
) -> bool:
    async with sessions() as session, session.begin():
        changed = await session.execute(
            update(Run)
            .where(Run.id == run_id, Run.state.in_((RunState.QUEUED, RunState.RUNNING)))
            .values(
                state=RunState.FINISHED,
                status=result.status.value,
                result=result.to_wire(),
                cost_usd=result.cost_usd,
                finished_at=result.finished_at,
                started_at=func.coalesce(Run.started_at, result.started_at),
            )
            .returning(Run.id)
        )
        return changed.first() is not None


async def _mark_lost(
    sessions: async_sessionmaker[AsyncSession], run_id: str, now: datetime
) -> bool:
    async with sessions() as session, session.begin():
        changed = await session.execute(
            update(Run)
            .where(Run.id == run_id, Run.state.in_((RunState.QUEUED, RunState.RUNNING)))
            .values(state=RunState.LOST, finished_at=now)
            .returning(Run.id)
        )
        return changed.first() is not None
