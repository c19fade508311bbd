"""The engine's clock: the tick and the run events' recorder in a thread of the control
worker, with an engine and connections of its own; a worker with a fixed engine keeps the
tick among its arq crons instead."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

from bot.deps import Deps
from bot.engine.jobs import TICK_KEY
from bot.engine.runs.recorder import recorder_live
from bot.jobs import CONTROL_QUEUE, ENGINE_TICK_CRON
from bot.processes.engine_clock import THREAD_NAME, EngineClock
from bot.processes.worker import COMMANDS, make_worker
from bot.tables.workflow import RunState
from runner.contract import RunResult, RunStatus, run_finished_job_id, run_result_key
from tests.conftest import OpenWorld, Services
from tests.engine.runs.test_recorder import events_of, until
from tests.engine.runs.test_run_tracking import add_run, emit


def clocks() -> int:
    return [thread.name for thread in threading.enumerate()].count(THREAD_NAME)


async def test_the_clock_ticks_and_records_beside_the_loop_and_stops_cleanly(
    deps: Deps, services: Services
) -> None:
    await add_run(deps, "live")
    await add_run(deps, "ended", state=RunState.RUNNING, heartbeat_at=datetime.now(UTC))
    # A result whose runner's announcement never reached the queue: the tick's to announce.
    ended = datetime.now(UTC) - timedelta(minutes=1)
    result = RunResult(
        run_id="ended", status=RunStatus.AGENT_ERROR, started_at=ended, finished_at=ended
    )
    await deps.redis.set(run_result_key("ended"), json.dumps(result.to_wire()))
    clock = EngineClock(
        deps.settings,
        database_url=services.database_url,
        redis_url=services.redis_url,
        commands=COMMANDS,
    )
    clock.start()
    try:
        assert clocks() == 1
        await emit(deps, "live", ["from", "the clock"])

        async def recorded() -> bool:
            return await events_of(deps, "live") == ["from", "the clock"]

        async def announced() -> bool:
            queued = await deps.redis.zrange(CONTROL_QUEUE, 0, -1)
            return run_finished_job_id("ended").encode() in queued

        await until(recorded)
        assert await recorder_live(deps.redis)
        await until(announced)  # within a tick or two (every 3 s)
    finally:
        await clock.stop()
    assert clocks() == 0
    assert not await recorder_live(deps.redis)
    assert not await deps.redis.exists(TICK_KEY)


async def test_a_worker_ticks_on_its_clock_unless_given_its_engine(
    deps: Deps, services: Services, open_world: OpenWorld
) -> None:
    """A fixed engine (a test's, a benchmark's) cannot be used from another thread's loop:
    such a worker ticks in arq's crons, and its clock only records. A burst worker (one
    pass over the queue) has no clock: its tick runs once as it starts."""
    own = make_worker(deps.settings, redis_url=services.redis_url, deps=deps)
    burst = make_worker(deps.settings, redis_url=services.redis_url, deps=deps, burst=True)
    try:
        assert ENGINE_TICK_CRON not in {job.name for job in own.cron_jobs}
        assert [each.tick for each in own.alongside if isinstance(each, EngineClock)] == [True]
        assert ENGINE_TICK_CRON in {job.name for job in burst.cron_jobs}
        assert burst.alongside == ()
        async with open_world(runners=0, workers=0) as w:
            fixed = make_worker(
                w.settings, redis_url=services.redis_url, deps=w.deps, engine=w.engine
            )
            try:
                assert ENGINE_TICK_CRON in {job.name for job in fixed.cron_jobs}
                ticking = [e.tick for e in fixed.alongside if isinstance(e, EngineClock)]
                assert ticking == [False]
            finally:
                await fixed.close()
    finally:
        await own.close()
        await burst.close()
