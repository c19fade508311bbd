"""The run events' recorder: open runs' events persisted as they arrive, by one recorder
at a time across workers, riding out a Redis outage; and the tick leaving the streams to
it while it records. (In a worker it runs on the engine's clock: tests/processes/
test_engine_clock.py.)"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from structlog.testing import capture_logs

from bot.deps import Deps
from bot.engine.runs import recorder as recording
from bot.engine.runs.events import (
    SIGN_OF_LIFE_EVERY,
    Stored,
    StreamRead,
    collect_events,
    store_batch,
)
from bot.engine.runs.recorder import (
    RECORDER_KEY,
    EventRecorder,
    recorder_live,
)
from bot.engine.runs.tracking import LOST_AFTER, sweep_runs
from bot.tables.workflow import Run, RunEvent, RunEventCursor, RunState
from runner.contract import AgentEvent, EventKind, run_events_stream
from tests.engine.runs.test_run_tracking import (
    NOW,
    TICK,
    add_run,
    emit,
    run_row,
    sweeps,
)

WITHIN = 10.0  # seconds a recorder gets to persist what was written (it takes about one)


async def events_of(deps: Deps, run_id: str) -> list[str]:
    async with deps.sessions() as session:
        rows = await session.scalars(
            select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq)
        )
        return [row.event["text"] for row in rows]


async def until(check: Callable[[], Awaitable[bool]], within: float = WITHIN) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not so within {within} s")


@asynccontextmanager
async def recorder_running(recorder: EventRecorder) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, WITHIN)


async def test_events_are_persisted_as_they_arrive_without_a_tick(deps: Deps) -> None:
    await add_run(deps, "r1")
    recorder = EventRecorder(deps.redis, deps.sessions, deps.outages)
    async with recorder_running(recorder):
        await emit(deps, "r1", ["one", "two"])

        async def both() -> bool:
            return await events_of(deps, "r1") == ["one", "two"]

        async def marked_running() -> bool:
            return (await run_row(deps, "r1")).state == RunState.RUNNING

        await until(both)
        # The run is marked running in a transaction after the one storing its events
        # (events.store: the run's row is locked only that long), so it may trail them.
        await until(marked_running)
        await emit(deps, "r1", ["three"])

        async def three() -> bool:
            return await events_of(deps, "r1") == ["one", "two", "three"]

        await until(three)
        # A run queued after the recorder started is recorded too (it looks them up again).
        await add_run(deps, "r2")
        await emit(deps, "r2", ["late"])

        async def late() -> bool:
            return await events_of(deps, "r2") == ["late"]

        await until(late)
    async with deps.sessions() as session:
        cursors = dict(
            (await session.execute(select(RunEventCursor.run_id, RunEventCursor.entry_id))).all()
        )
    assert set(cursors) == {"r1", "r2"}
    assert recorder.stored == 4
    assert not await recorder_live(deps.redis)  # released as it stopped


async def test_a_recorder_reads_on_from_the_stored_cursor(deps: Deps) -> None:
    """What the tick (or a recorder before it) stored is not stored or counted again."""
    await add_run(deps, "c1")
    await emit(deps, "c1", ["before"])
    await sweep_runs(deps.redis, deps.sessions, now=NOW)
    recorder = EventRecorder(deps.redis, deps.sessions, deps.outages)
    async with recorder_running(recorder):
        await emit(deps, "c1", ["after"])

        async def after() -> bool:
            return await events_of(deps, "c1") == ["before", "after"]

        await until(after)
    assert recorder.stored == 1


async def test_one_recorder_records_at_a_time_and_another_takes_over(deps: Deps) -> None:
    await add_run(deps, "s1")
    first = EventRecorder(deps.redis, deps.sessions, deps.outages)
    second = EventRecorder(deps.redis, deps.sessions, deps.outages)
    async with recorder_running(first) as stop_first, recorder_running(second) as stop_second:
        await emit(deps, "s1", ["a"])

        async def recorded() -> bool:
            return await events_of(deps, "s1") == ["a"]

        await until(recorded)
        # Whichever took the lease first (they start together) records; the other waits.
        holding = await deps.redis.get(RECORDER_KEY)
        if holding == first.token.encode():
            holder, stop_holder, other = first, stop_first, second
        else:
            assert holding == second.token.encode()
            holder, stop_holder, other = second, stop_second, first
        assert other.stored == 0
        stop_holder.set()  # its worker stops: the lease is freed, the other takes it

        async def taken_over() -> bool:
            return bool(await deps.redis.get(RECORDER_KEY) == other.token.encode())

        await until(taken_over)
        await emit(deps, "s1", ["b"])

        async def both() -> bool:
            return await events_of(deps, "s1") == ["a", "b"]

        await until(both)
    assert (holder.stored, other.stored) == (1, 1)


async def test_a_recorder_rides_out_redis_away_and_says_so_once(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = Redis(unix_socket_path="/tmp/oa-no-redis-here.sock")
    recorder = EventRecorder(dead, deps.sessions, deps.outages)
    monkeypatch.setattr(recording, "RETRY_SECONDS", 0.05)
    try:
        with capture_logs() as logs:
            async with recorder_running(recorder):
                await asyncio.sleep(0.5)  # some ten tries
    finally:
        await dead.aclose()
    # Said once by the outages, however many tries met it; no error (it is no bug).
    away = [line for line in logs if line["event"] == "store_unavailable"]
    assert [line["store"] for line in away] == ["redis"]
    assert not [line for line in logs if line["log_level"] == "error"]


async def test_the_tick_leaves_the_streams_to_a_live_recorder_and_still_sees_results(
    deps: Deps,
) -> None:
    await add_run(deps, "t1", state=RunState.RUNNING, heartbeat_at=NOW)
    await emit(deps, "t1", ["x"])
    sweep = await sweep_runs(deps.redis, deps.sessions, now=NOW, events=False)
    assert sweep.finished == []
    assert await events_of(deps, "t1") == []  # the recorder's to store
    # ... but the run's liveness is still the sweep's: silent too long, it is lost.
    lost = await sweeps(deps, NOW, NOW + LOST_AFTER + 2 * TICK, events=False)
    assert lost == ["t1"]
    assert await events_of(deps, "t1") == []


async def test_a_run_whose_row_is_held_does_not_hold_up_the_others_events(deps: Deps) -> None:
    """Another transaction holds one run's row (its result being taken in, its gates being
    reported): every run's events are stored all the same, at once; only that run's sign
    of life waits for the next batch."""
    await add_run(deps, "held")
    await add_run(deps, "free")
    await emit(deps, "held", ["h"])
    await emit(deps, "free", ["f"])
    async with deps.sessions() as holder, holder.begin():
        await holder.get(Run, "held", with_for_update={"key_share": True})
        reads = [
            StreamRead(run_id, await deps.redis.xrange(run_events_stream(run_id)))
            for run_id in ("held", "free")
        ]
        stored = await asyncio.wait_for(store_batch(deps.sessions, reads, skip_held=True), 5)
    assert stored == Stored(2)
    assert await events_of(deps, "held") == ["h"]
    assert (await run_row(deps, "held")).state == RunState.QUEUED  # the next batch's
    assert (await run_row(deps, "free")).state == RunState.RUNNING


async def test_a_run_whose_events_another_writer_is_storing_is_read_again_not_waited_for(
    deps: Deps,
) -> None:
    """A result's job collecting a run's last events holds its cursor until it commits,
    which a busy worker may take seconds to: the recorder leaves that run for its next
    read, and stores the others' at once."""
    for run_id in ("collecting", "other"):
        await add_run(deps, run_id)
        await emit(deps, run_id, [f"{run_id} 1"])
    await collect_events(deps.redis, deps.sessions, "collecting")  # its cursor row exists
    await emit(deps, "collecting", ["collecting 2"])
    recorder = EventRecorder(deps.redis, deps.sessions, deps.outages)
    async with deps.sessions() as job, job.begin():
        await job.execute(
            select(RunEventCursor).where(RunEventCursor.run_id == "collecting").with_for_update()
        )
        async with recorder_running(recorder):

            async def other() -> bool:
                return await events_of(deps, "other") == ["other 1"]

            await until(other)
            assert await events_of(deps, "collecting") == ["collecting 1"]
    # The job is done (it stored nothing new here): the recorder reads the run again.

    async def collected() -> bool:
        return await events_of(deps, "collecting") == ["collecting 1", "collecting 2"]

    async with recorder_running(recorder):
        await until(collected)


async def test_a_running_runs_sign_of_life_is_written_only_once_it_is_stale(deps: Deps) -> None:
    """Its row locked by every batch, a result being taken in waited for the batch: a
    running run's last sign of life moves only once SIGN_OF_LIFE_EVERY old (it is lost
    after 45 s without one)."""
    await add_run(deps, "beat", state=RunState.RUNNING, heartbeat_at=NOW)

    async def store(seq: int, after: timedelta) -> datetime | None:
        event = AgentEvent(kind=EventKind.TEXT, text="x", run_id="beat", seq=seq, at=NOW + after)
        entry = (f"{seq}-0".encode(), {b"event": json.dumps(event.to_wire()).encode()})
        await store_batch(deps.sessions, [StreamRead("beat", [entry])])
        return (await run_row(deps, "beat")).last_heartbeat_at

    assert await store(1, SIGN_OF_LIFE_EVERY / 2) == NOW
    late = SIGN_OF_LIFE_EVERY + timedelta(seconds=1)
    assert await store(2, late) == NOW + late
    assert await events_of(deps, "beat") == ["x", "x"]
