"""Following runs: events persisted from the runner's stream, results taken in, lost runs
declared, all through the real Redis keys a runner writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import func, select

from bot.deps import Deps
from bot.engine.runs.events import READ_BATCH, collect_events
from bot.engine.runs.tracking import (
    LOST_AFTER,
    LOST_REASON,
    QUEUED_LOST_AFTER,
    sweep_runs,
)
from bot.tables.mirror import Ticket
from bot.tables.workflow import Run, RunEvent, RunState
from runner.contract import (
    AgentEvent,
    EventKind,
    RunResult,
    RunStatus,
    machine_key,
    run_cancel_key,
    run_events_stream,
    run_heartbeat_key,
    run_result_key,
)
from runner.events import RedisEventSink

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TICK = timedelta(seconds=3)  # the engine's cron


async def add_run(
    deps: Deps,
    run_id: str,
    *,
    state: RunState = RunState.QUEUED,
    machine: str | None = "m1",
    queued_at: datetime = NOW,
    heartbeat_at: datetime | None = None,
) -> None:
    async with deps.sessions() as session, session.begin():
        ticket = Ticket(source="github", external_id=run_id, key=f"o/r#{run_id}", state="open")
        session.add(ticket)
        await session.flush()
        session.add(
            Run(
                id=run_id,
                ticket_id=ticket.id,
                workflow="coder",
                attempt=1,
                machine=machine,
                state=state,
                spec={},
                queued_at=queued_at,
                last_heartbeat_at=heartbeat_at,
            )
        )


async def run_row(deps: Deps, run_id: str) -> Run:
    async with deps.sessions() as session:
        run = await session.get(Run, run_id)
        assert run is not None
        return run


async def test_events_are_persisted_once_in_order(deps: Deps) -> None:
    await add_run(deps, "r1")
    sink = RedisEventSink(deps.redis, "r1", heartbeat_seconds=60)
    await sink.start()
    for n in range(3):
        sink.emit(AgentEvent(kind=EventKind.TEXT, text=f"step {n}"))
    await sink.close()

    assert await collect_events(deps.redis, deps.sessions, "r1") == 3
    assert await collect_events(deps.redis, deps.sessions, "r1") == 0  # nothing new
    async with deps.sessions() as session:
        rows = (await session.scalars(select(RunEvent).order_by(RunEvent.seq))).all()
    assert [(row.seq, row.event["text"]) for row in rows] == [
        (1, "step 0"),
        (2, "step 1"),
        (3, "step 2"),
    ]
    run = await run_row(deps, "r1")
    assert run.state == RunState.RUNNING
    assert run.started_at is not None


async def emit(deps: Deps, run_id: str, texts: list[str]) -> None:
    """What a runner writes to the run's stream while its agent works, numbered on from
    what it wrote before."""
    stream = run_events_stream(run_id)
    written = await deps.redis.xlen(stream)
    for seq, text in enumerate(texts, start=written + 1):
        event = AgentEvent(kind=EventKind.TEXT, text=text, run_id=run_id, seq=seq)
        await deps.redis.xadd(stream, {"event": json.dumps(event.to_wire())})


async def test_one_sweep_persists_the_new_events_of_every_open_run(deps: Deps) -> None:
    """Read from Redis for all runs at once and stored in one transaction; the next sweep
    reads on from each run's cursor."""
    runs = [f"many{n}" for n in range(30)]
    for run_id in runs:
        await add_run(deps, run_id)
        await emit(deps, run_id, [f"{run_id} a", f"{run_id} b"])
    await add_run(deps, "quiet")  # queued, nothing written yet

    await sweep_runs(deps.redis, deps.sessions, now=NOW)
    for run_id in runs[:5]:
        await emit(deps, run_id, [f"{run_id} c"])  # more output since
    await sweep_runs(deps.redis, deps.sessions, now=NOW + TICK)

    async with deps.sessions() as session:
        stored = (await session.execute(select(RunEvent.run_id, RunEvent.seq))).all()
        states = {row.id: row.state for row in await session.execute(select(Run.id, Run.state))}
    assert len(stored) == 30 * 2 + 5
    assert {(run_id, seq) for run_id, seq in stored if run_id == "many0"} == {
        ("many0", 1),
        ("many0", 2),
        ("many0", 3),
    }
    assert {states[run_id] for run_id in runs} == {RunState.RUNNING}
    assert states["quiet"] == RunState.QUEUED


async def test_a_sweep_reads_a_backlog_longer_than_one_read_to_its_end(deps: Deps) -> None:
    """A stream that grew while no worker swept (more than one read's worth): all of it."""
    await add_run(deps, "backlog")
    await emit(deps, "backlog", [f"line {n}" for n in range(READ_BATCH * 2 + 7)])

    await sweep_runs(deps.redis, deps.sessions, now=NOW)

    async with deps.sessions() as session:
        count = await session.scalar(select(func.count()).select_from(RunEvent))
        last = await session.scalar(select(func.max(RunEvent.seq)))
    assert (count, last) == (READ_BATCH * 2 + 7, READ_BATCH * 2 + 7)


async def test_a_result_is_taken_in_with_the_events_written_before_it(deps: Deps) -> None:
    """Its last events may come after the sweep's one read of every stream: the run is
    read to its end before it is finished."""
    await add_run(deps, "ending", state=RunState.RUNNING)
    await emit(deps, "ending", ["work"])
    await sweep_runs(deps.redis, deps.sessions, now=NOW)
    await emit(deps, "ending", ["last words"])
    result = RunResult(
        run_id="ending",
        status=RunStatus.SUCCEEDED,
        cost_usd=0.1,
        started_at=NOW,
        finished_at=NOW + timedelta(minutes=1),
    )
    await deps.redis.set(run_result_key("ending"), json.dumps(result.to_wire()))

    sweep = await sweep_runs(deps.redis, deps.sessions, now=NOW + TICK)

    assert sweep.finished == [("ending", result)]
    async with deps.sessions() as session:
        texts = (await session.scalars(select(RunEvent.event).order_by(RunEvent.seq))).all()
    assert [event["text"] for event in texts] == ["work", "last words"]
    assert (await run_row(deps, "ending")).state == RunState.FINISHED


async def test_a_stored_result_finishes_the_run(deps: Deps) -> None:
    await add_run(deps, "r2", state=RunState.RUNNING)
    result = RunResult(
        run_id="r2",
        status=RunStatus.GATES_FAILED,
        cost_usd=0.25,
        started_at=NOW,
        finished_at=NOW + timedelta(minutes=3),
    )
    await deps.redis.set(run_result_key("r2"), json.dumps(result.to_wire()))

    sweep = await sweep_runs(deps.redis, deps.sessions, now=NOW + timedelta(minutes=4))
    again = await sweep_runs(deps.redis, deps.sessions, now=NOW + timedelta(minutes=5))

    assert sweep.finished == [("r2", result)]
    assert again.finished == []  # taken in once, whatever the number of workers
    run = await run_row(deps, "r2")
    assert (run.state, run.status, run.cost_usd) == (RunState.FINISHED, "gates_failed", 0.25)


async def sweeps(deps: Deps, start: datetime, end: datetime, *, events: bool = True) -> list[str]:
    """The engine's cron, every 3 s from `start` to `end` (a control plane watching): the
    runs it declared lost."""
    lost: list[str] = []
    at = start
    while at <= end:
        lost += (await sweep_runs(deps.redis, deps.sessions, now=at, events=events)).lost
        at += TICK
    return lost


async def test_a_running_run_without_heartbeat_is_lost_within_a_minute(deps: Deps) -> None:
    await add_run(deps, "r3", state=RunState.RUNNING, heartbeat_at=NOW)
    await add_run(deps, "r4", state=RunState.RUNNING, heartbeat_at=NOW)
    await deps.redis.set(run_heartbeat_key("r4"), "1", ex=300)  # r4's runner is alive

    early = await sweeps(deps, NOW, NOW + LOST_AFTER - timedelta(seconds=1))
    late = await sweeps(deps, NOW + LOST_AFTER, NOW + LOST_AFTER + timedelta(seconds=3))

    assert early == []
    assert late == ["r3"]
    assert (await run_row(deps, "r3")).state == RunState.LOST
    assert (await run_row(deps, "r4")).state == RunState.RUNNING
    # Should its runner be alive after all (cut off, not dead), it is told to stop.
    assert await deps.redis.get(run_cancel_key("r3")) == LOST_REASON.encode()
    assert not await deps.redis.exists(run_cancel_key("r4"))


async def test_a_queued_run_waits_for_a_registered_machine_but_not_for_a_gone_one(
    deps: Deps,
) -> None:
    await add_run(deps, "q1", machine="busy")
    await add_run(deps, "q2", machine="gone")
    await deps.redis.hset(machine_key("busy"), mapping={"name": "busy"})  # type: ignore[misc]  # redis-py's union return

    lost = await sweeps(deps, NOW, NOW + QUEUED_LOST_AFTER + timedelta(seconds=3))

    assert lost == ["q2"]
    assert (await run_row(deps, "q1")).state == RunState.QUEUED


# --- Redis outages -----------------------------------------------------------------------------


async def test_time_the_control_plane_could_not_read_redis_does_not_count(deps: Deps) -> None:
    await add_run(deps, "o1", state=RunState.RUNNING, heartbeat_at=NOW)
    await add_run(deps, "o2", state=RunState.RUNNING, heartbeat_at=NOW)
    assert await sweeps(deps, NOW, NOW + timedelta(seconds=9)) == []
    # Redis is away for a minute: no sweep runs, and the liveness keys expire meanwhile.
    back = NOW + timedelta(seconds=70)
    assert await sweeps(deps, back, back + timedelta(seconds=6)) == []
    await deps.redis.set(run_heartbeat_key("o1"), "1", ex=300)  # o1's runner is back too

    lost = await sweeps(deps, back + timedelta(seconds=9), back + LOST_AFTER + timedelta(seconds=3))

    assert lost == ["o2"]  # o2's runner never came back: lost, a whole window later


async def test_redis_back_empty_gives_every_runner_the_whole_window(deps: Deps) -> None:
    await add_run(deps, "e1", state=RunState.RUNNING, heartbeat_at=NOW)
    assert await sweeps(deps, NOW, NOW + timedelta(seconds=27)) == []
    await deps.redis.flushdb()  # restarted without persistence, between two sweeps
    emptied = NOW + timedelta(seconds=30)

    early = await sweeps(deps, emptied, emptied + LOST_AFTER - timedelta(seconds=1))
    window = emptied + LOST_AFTER
    late = await sweeps(deps, window + timedelta(seconds=2), window + TICK)

    assert (early, late) == ([], ["e1"])


async def test_a_runner_cut_off_for_less_than_the_window_is_not_lost(deps: Deps) -> None:
    await add_run(deps, "c1", state=RunState.RUNNING, heartbeat_at=NOW)
    # The control plane watches all along; the runner's liveness key expired at NOW + 30.
    assert await sweeps(deps, NOW, NOW + LOST_AFTER - timedelta(seconds=3)) == []
    await deps.redis.set(run_heartbeat_key("c1"), "1", ex=300)  # reconnected: heartbeats again

    assert await sweeps(deps, NOW + LOST_AFTER, NOW + 3 * LOST_AFTER) == []
    assert (await run_row(deps, "c1")).state == RunState.RUNNING


async def test_a_failed_read_declares_nothing(deps: Deps) -> None:
    await add_run(deps, "f1", state=RunState.RUNNING, heartbeat_at=NOW)
    dead = Redis(unix_socket_path="/tmp/oa-no-redis-here.sock")
    try:
        with pytest.raises(RedisConnectionError):
            await sweep_runs(dead, deps.sessions, now=NOW + timedelta(hours=1))
    finally:
        await dead.aclose()
    assert (await run_row(deps, "f1")).state == RunState.RUNNING


async def test_a_lost_run_alive_again_is_told_to_stop_and_its_late_result_changes_nothing(
    deps: Deps,
) -> None:
    await add_run(deps, "z1", state=RunState.LOST, heartbeat_at=NOW)
    async with deps.sessions() as session, session.begin():
        run = await session.get(Run, "z1")
        assert run is not None
        run.finished_at = NOW
    # Redis came back empty (no cancel signal) and the zombie's runner heartbeats again.
    await deps.redis.set(run_heartbeat_key("z1"), "1", ex=30)

    await sweep_runs(deps.redis, deps.sessions, now=NOW + timedelta(minutes=2))
    assert await deps.redis.get(run_cancel_key("z1")) == LOST_REASON.encode()

    late = RunResult(
        run_id="z1", status=RunStatus.CANCELED, error=LOST_REASON, started_at=NOW, finished_at=NOW
    )
    await deps.redis.set(run_result_key("z1"), json.dumps(late.to_wire()))
    sweep = await sweep_runs(deps.redis, deps.sessions, now=NOW + timedelta(minutes=3))
    assert sweep.finished == []
    row = await run_row(deps, "z1")
    assert (row.state, row.status, row.result) == (RunState.LOST, None, None)
