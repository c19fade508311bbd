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
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from redis.asyncio import Redis
from sqlalchemy import Row, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.engine.runs.events import READ_BATCH, StreamRead, collect_events, store_batch, stream_start
from bot.engine.runs.lookups import answers, ask_existing, ask_values
from bot.tables.workflow import Run, RunEventCursor, RunState
from harness_store.db import reading
from runner.contract import (
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
# Sweeps run every few seconds; a longer pause means nobody could watch the runs.
WATCH_GAP = timedelta(seconds=15)
WATCHED_KEY = "openase:runs:watched"
# A lost run's runner may come back this long after (cut off from Redis, not dead).
ZOMBIE_WINDOW = timedelta(days=1)
LOST_CANCEL_TTL_SECONDS = 7 * 24 * 3600
LOST_REASON = "the run was declared lost (its runner was cut off) and retried elsewhere"


async def fetch_result(redis: Redis, run_id: str) -> RunResult | None:
    """The run's result, once its runner has stored one (an unreadable one is logged)."""
    return parse_result(run_id, await redis.get(run_result_key(run_id)))


def parse_result(run_id: str, raw: bytes | None) -> RunResult | None:
    """A result as its runner stored it (an unreadable one is logged: None)."""
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


# Given the runs with a result, all at once: those whose result it took in (or handed on).
Finisher = Callable[[Sequence[tuple[str, RunResult]]], Awaitable[Collection[str]]]
Loser = Callable[[str], Awaitable[bool]]


@dataclass(frozen=True)
class _Seen:
    """What Redis says of one open run, read for every open run in one round trip."""

    read: StreamRead  # its stream's entries past the cursor
    result: RunResult | None
    alive: bool  # its liveness key exists
    machine_registered: bool  # its machine is in the registry (asked of queued runs only)


async def sweep_runs(
    redis: Redis,
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime | None = None,
    finish: Finisher | None = None,
    lose: Loser | None = None,
    events: bool = True,
) -> Sweep:
    """For every unfinished run: persist its new events, take in a result if there is
    one, else declare the run lost when its machine stopped showing signs of life.

    `finish` and `lose` record that (and may decide on it in the same transaction, as the
    engine does); they say which runs they changed (`finish` is given every run with a
    result at once), so only one caller acts. A run's events written after the sweep's
    read are `finish`'s to collect (the default does; the engine's announces the results,
    all in one round trip, and each one's job collects them). The
    runs are read from Redis in one round trip and their events stored in one transaction;
    only a run with a result or out of time costs more. `events=False` leaves the streams
    to the event recorder (bot/engine/runs/recorder.py) that is recording them."""
    now = now or datetime.now(UTC)

    async def recorded_finish(ended: Sequence[tuple[str, RunResult]]) -> list[str]:
        changed = []
        for run_id, result in ended:
            # Its last events may have come after the sweep's one read: all of them first.
            await collect_events(redis, sessions, run_id)
            if await _finish(sessions, run_id, result):
                changed.append(run_id)
        return changed

    async def recorded_loss(run_id: str) -> bool:
        return await _mark_lost(sessions, run_id, now)

    finish = finish or recorded_finish
    lose = lose or recorded_loss
    # The open runs, and the runs lost lately (a zombie's runner may be back), in one read.
    async with reading(sessions) as session:
        rows = (
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
                .where(
                    or_(
                        Run.state.in_((RunState.QUEUED, RunState.RUNNING)),
                        and_(Run.state == RunState.LOST, Run.finished_at > now - ZOMBIE_WINDOW),
                    )
                )
            )
        ).all()
    open_runs = [row for row in rows if row.state != RunState.LOST]
    lately_lost = [row.id for row in rows if row.state == RunState.LOST]
    watched_since, seen, zombies = await _look(redis, now, open_runs, lately_lost, events=events)
    await store_batch(sessions, [look.read for look in seen], skip_held=True)
    ended: list[tuple[str, RunResult]] = []
    lost: list[str] = []
    for (run_id, state, _, queued_at, heartbeat_at, _), look in zip(open_runs, seen, strict=True):
        if look.read.more:  # a backlog (a worker was away): the rest of it before deciding
            await collect_events(redis, sessions, run_id)
        result = look.result
        if result is not None and result.error_class != HANDED_BACK:
            ended.append((run_id, result))
            continue
        if look.alive:
            continue
        if state == RunState.RUNNING:
            seen_at = max(heartbeat_at or queued_at, watched_since)
            gone = now - seen_at > LOST_AFTER
        else:  # queued: waiting for a slot is fine while its machine is registered
            gone = not look.machine_registered and (
                now - max(queued_at, watched_since) > QUEUED_LOST_AFTER
            )
        # Redis emptied mid-sweep (its note is gone with it) says nothing about the run.
        if gone and await redis.exists(WATCHED_KEY) and await lose(run_id):
            log.warning("run_lost", run_id=run_id)
            lost.append(run_id)
            await _tell_to_stop(redis, run_id)
    for run_id, told in zombies:
        if not told:
            log.warning("run_zombie_stopped", run_id=run_id)
        await _tell_to_stop(redis, run_id)
    changed = set(await finish(ended)) if ended else set()
    return Sweep([(run_id, result) for run_id, result in ended if run_id in changed], lost)


_OpenRun = Row[
    str, str, str | None, datetime, datetime | None, str
]  # the last: the cursor (may be None)


# KEYS: the note; ARGV: now and the longest gap (epoch seconds). Since when sweeps have
# watched the runs without a gap (now, after one), and now noted as the last sweep.
_WATCHING = """
local noted = redis.call('hmget', KEYS[1], 'since', 'last')
local since = ARGV[1]
if noted[1] and noted[2] then
  local gap = tonumber(ARGV[1]) - tonumber(noted[2])
  if gap >= 0 and gap <= tonumber(ARGV[2]) then
    since = noted[1]
  end
end
redis.call('hset', KEYS[1], 'since', since, 'last', ARGV[1])
return since
"""


async def _look(
    redis: Redis,
    now: datetime,
    open_runs: Sequence[_OpenRun],
    lately_lost: Sequence[str],
    *,
    events: bool,
) -> tuple[datetime, list[_Seen], list[tuple[str, bool]]]:
    """In one pipelined round trip: since when sweeps have watched the runs; each open
    run's new stream entries (with `events`), result, liveness and (queued) machine; and
    which lately lost runs are alive (a zombie), each with whether it was told to stop.
    Entries are read before the result: a result seen means the entries read may still
    miss its last events (the sweep reads on for those)."""
    # Three commands whatever the number of runs (and a stream read per run with
    # `events`): one each (bot/engine/runs/lookups.py).
    pipe = redis.pipeline(transaction=False)
    # EVAL, not a registered script: a pipeline's scripts cost a SCRIPT EXISTS round trip.
    pipe.eval(_WATCHING, 1, WATCHED_KEY, repr(now.timestamp()), str(WATCH_GAP.total_seconds()))
    if events:
        for run_id, *_, cursor in open_runs:
            pipe.xrange(run_events_stream(run_id), min=stream_start(cursor), count=READ_BATCH)
    asked_results = ask_values(pipe, [run_result_key(run_id) for run_id, *_ in open_runs])
    asked = [run_heartbeat_key(run_id) for run_id, *_ in open_runs]
    asked += [
        machine_key(machine)
        for _, state, machine, *_ in open_runs
        if state == RunState.QUEUED and machine is not None
    ]
    for run_id in lately_lost:
        asked += [run_heartbeat_key(run_id), run_cancel_key(run_id)]
    asked_existing = ask_existing(pipe, asked)
    replies = iter(await answers(pipe))
    watched_since = datetime.fromtimestamp(float(next(replies)), UTC)
    streams = [next(replies) for _ in open_runs] if events else [[] for _ in open_runs]
    results = next(replies) if asked_results else []
    existing = iter(next(replies) if asked_existing else [])
    alive = [bool(next(existing)) for _ in open_runs]
    seen = []
    for (run_id, state, machine, *_), entries, raw_result, live in zip(
        open_runs, streams, results, alive, strict=True
    ):
        registered = state == RunState.QUEUED and machine is not None and bool(next(existing))
        seen.append(
            _Seen(
                read=StreamRead(run_id, entries),
                result=parse_result(run_id, raw_result),
                alive=live,
                machine_registered=registered,
            )
        )
    zombies = []
    for run_id in lately_lost:
        live, told = next(existing), next(existing)
        if live:
            zombies.append((run_id, bool(told)))
    return watched_since, seen, zombies


async def _tell_to_stop(redis: Redis, run_id: str) -> None:
    """The runner stops the run when it sees this (pushing its work), should it be alive."""
    await redis.set(run_cancel_key(run_id), LOST_REASON, ex=LOST_CANCEL_TTL_SECONDS, nx=True)


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
