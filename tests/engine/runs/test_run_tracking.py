"""Following runs: events persisted from the runner's stream, results taken in, lost runs
declared, all through the real Redis keys a runner writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bot.deps import Deps
from bot.engine.runs.tracking import LOST_AFTER, QUEUED_LOST_AFTER, collect_events, sweep_runs
from bot.tables.mirror import Ticket
from bot.tables.workflow import Run, RunEvent, RunState
from runner.contract import (
    AgentEvent,
    EventKind,
    RunResult,
    RunStatus,
    machine_key,
    run_heartbeat_key,
    run_result_key,
)
from runner.events import RedisEventSink

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


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


async def test_a_running_run_without_heartbeat_is_lost_within_a_minute(deps: Deps) -> None:
    await add_run(deps, "r3", state=RunState.RUNNING, heartbeat_at=NOW)
    await add_run(deps, "r4", state=RunState.RUNNING, heartbeat_at=NOW)
    await deps.redis.set(run_heartbeat_key("r4"), "1", ex=30)  # r4's runner is alive

    early = await sweep_runs(deps.redis, deps.sessions, now=NOW + LOST_AFTER - timedelta(seconds=1))
    late = await sweep_runs(deps.redis, deps.sessions, now=NOW + LOST_AFTER + timedelta(seconds=1))

    assert early.lost == []
    assert late.lost == ["r3"]
    assert (await run_row(deps, "r3")).state == RunState.LOST
    assert (await run_row(deps, "r4")).state == RunState.RUNNING


async def test_a_queued_run_waits_for_a_registered_machine_but_not_for_a_gone_one(
    deps: Deps,
) -> None:
    await add_run(deps, "q1", machine="busy")
    await add_run(deps, "q2", machine="gone")
    await deps.redis.hset(machine_key("busy"), mapping={"name": "busy"})  # type: ignore[misc]  # redis-py's union return

    sweep = await sweep_runs(
        deps.redis, deps.sessions, now=NOW + QUEUED_LOST_AFTER + timedelta(seconds=1)
    )

    assert sweep.lost == ["q2"]
    assert (await run_row(deps, "q1")).state == RunState.QUEUED
