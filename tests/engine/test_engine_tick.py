"""The engine's tick runs one at a time across workers (bot/engine/jobs.py): arq's `unique`
cron only keeps two workers off the same 3-second slot, so a tick longer than that was
joined by the next slot's, each repeating the same sweep of every open run (16 at once
under `make bench-scale`'s 200 runs). Real engine, real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from bot.engine import jobs
from bot.engine.jobs import (
    ENGINE_CTX_KEY,
    MERGE_CHECK_EVERY,
    TICK_KEY,
    engine_tick,
    run_finished_job,
)
from bot.engine.runs.exclusive import sole_holder
from bot.jobs import MERGE_RECHECK_JOB
from bot.tables.workflow import Run, RunState
from runner.contract import (
    CONTROL_QUEUE,
    RunResult,
    RunStatus,
    run_finished_job_id,
    run_result_key,
)
from tests.conftest import OpenWorld
from tests.support.run_rows import add_running_run


async def test_a_tick_skips_its_slot_while_another_is_running(
    open_world: OpenWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweeps: list[int] = []
    real_sweep = jobs.sweep_runs  # type: ignore[attr-defined]  # patched where the tick looks

    async def slow_sweep(*args: Any, **kwargs: Any) -> Any:
        sweeps.append(len(sweeps))
        await asyncio.sleep(0.5)  # a tick longer than the gap between two slots
        return await real_sweep(*args, **kwargs)

    monkeypatch.setattr(jobs, "sweep_runs", slow_sweep)
    async with open_world(runners=0, workers=0) as w:
        ctx: dict[str, Any] = {ENGINE_CTX_KEY: lambda: w.engine}
        with capture_logs() as logs:
            first, second = await asyncio.gather(engine_tick(ctx), engine_tick(ctx))
        assert len(sweeps) == 1  # the second tick did not sweep beside the first
        assert {} in (first, second)
        assert "engine_tick_skipped" in [line["event"] for line in logs]
        assert not await w.deps.redis.exists(TICK_KEY)  # released by its holder
        # The tick that ran was slow, and its line says which part was.
        [ran] = [line for line in logs if line["event"] == "engine_tick"]
        assert ran["seconds"] >= 0.5
        assert ran["slowest"].startswith("sweep 5")  # "sweep 5xx ms, ..."
        # ... and that it was waiting, not working: the thread's CPU is beside the wall time.
        assert 0 <= ran["thread_cpu_seconds"] < ran["seconds"] - 0.3

        await engine_tick(ctx)  # the next slot's tick runs
        assert len(sweeps) == 2


async def test_a_long_tick_keeps_its_key_and_a_dead_ticks_key_runs_out_soon(
    open_world: OpenWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The running tick's key is renewed while the tick runs, and lives only TICK_HOLD_MS
    past its holder: a worker SIGKILLed mid-tick used to stop every worker's ticks (the
    sweep that announces results again) for the 120 s tick timeout."""
    assert jobs.TICK_HOLD_MS <= 10_000
    real_sweep = jobs.sweep_runs  # type: ignore[attr-defined]  # patched where the tick looks

    async def slow_sweep(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(1.0)  # longer than three of the hold below
        return await real_sweep(*args, **kwargs)

    monkeypatch.setattr(jobs, "TICK_HOLD_MS", 300)
    monkeypatch.setattr(jobs, "sweep_runs", slow_sweep)
    async with open_world(runners=0, workers=0) as w:
        ctx: dict[str, Any] = {ENGINE_CTX_KEY: lambda: w.engine}
        running = asyncio.create_task(engine_tick(ctx))
        await asyncio.sleep(0.8)
        assert await engine_tick(ctx) == {}  # still held: the other is skipped
        assert (await running)["lost"] == 0
        assert not await w.deps.redis.exists(TICK_KEY)


async def test_a_tick_held_by_another_worker_is_skipped(open_world: OpenWorld) -> None:
    async with open_world(runners=0, workers=0) as w:
        ctx: dict[str, Any] = {ENGINE_CTX_KEY: lambda: w.engine}
        async with sole_holder(w.deps.redis, TICK_KEY, 5_000) as held:  # another worker's
            assert held
            with capture_logs() as logs:
                assert await engine_tick(ctx) == {}
        assert [line["event"] for line in logs] == ["engine_tick_skipped"]


async def test_a_result_whose_announcement_was_lost_is_announced_again_once(
    open_world: OpenWorld,
) -> None:
    """The tick does not take results in itself (200 runs ending at once made ticks of
    many seconds): it enqueues the run's own announcement again, under its job id, so a
    result is taken in by one job however many ticks see it first."""
    async with open_world(runners=0, workers=0) as w:
        ctx: dict[str, Any] = {ENGINE_CTX_KEY: lambda: w.engine}
        async with w.deps.sessions() as session, session.begin():
            await add_running_run(session, "ended")
        # Ended a while ago: a result just stored is its runner's announcement's to take.
        ended = datetime.now(UTC) - timedelta(minutes=1)
        result = RunResult(
            run_id="ended", status=RunStatus.AGENT_ERROR, started_at=ended, finished_at=ended
        )
        # As the runner stores it; its announcement never reached the queue.
        await w.deps.redis.set(run_result_key("ended"), json.dumps(result.to_wire()))

        first = await engine_tick(ctx)
        second = await engine_tick(ctx)

        queued = await w.deps.redis.zrange(CONTROL_QUEUE, 0, -1)
        assert queued == [run_finished_job_id("ended").encode()]
        assert (first["results_announced"], second["results_announced"]) == (1, 0)
        async with w.deps.sessions() as session:
            run = await session.get(Run, "ended")
            assert run is not None
            assert run.state == RunState.RUNNING

        assert await run_finished_job(ctx, "ended")
        async with w.deps.sessions() as session:
            run = await session.get(Run, "ended")
            assert run is not None
            assert (run.state, run.status) == (RunState.FINISHED, "agent_error")


async def test_the_merge_recheck_is_handed_to_one_job_every_few_ticks(
    open_world: OpenWorld,
) -> None:
    """Every reviewed ticket's gate looked at one by one made ticks of seconds with 400 in
    review: the tick hands it to a job, queued once however many ticks come meanwhile."""
    async with open_world(runners=0, workers=0) as w:
        ctx: dict[str, Any] = {ENGINE_CTX_KEY: lambda: w.engine}
        ctx["engine_ticks"] = MERGE_CHECK_EVERY - 1
        handed = await engine_tick(ctx)
        ctx["engine_ticks"] = 2 * MERGE_CHECK_EVERY - 1
        again = await engine_tick(ctx)  # the first is still queued
        quiet = await engine_tick(ctx)  # not a recheck tick
        assert [c["merge_rechecks_handed_out"] for c in (handed, again, quiet)] == [1, 0, 0]
        queued = await w.deps.redis.zrange(CONTROL_QUEUE, 0, -1)
        assert queued == [MERGE_RECHECK_JOB.encode()]
