"""The engine's tick runs one at a time across workers (bot/engine/jobs.py): arq's `unique`
cron only keeps two workers off the same 3-second slot, so a tick longer than that was
joined by the next slot's, each repeating the same sweep of every open run (16 at once
under `make bench-scale`'s 200 runs). Real engine, real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from bot.engine import jobs
from bot.engine.jobs import ENGINE_CTX_KEY, TICK_KEY, engine_tick
from bot.engine.runs.exclusive import sole_holder
from tests.conftest import OpenWorld


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

        await engine_tick(ctx)  # the next slot's tick runs
        assert len(sweeps) == 2


async def test_a_tick_held_by_another_worker_is_skipped(open_world: OpenWorld) -> None:
    async with open_world(runners=0, workers=0) as w:
        ctx: dict[str, Any] = {ENGINE_CTX_KEY: lambda: w.engine}
        async with sole_holder(w.deps.redis, TICK_KEY, 5_000) as held:  # another worker's
            assert held
            with capture_logs() as logs:
                assert await engine_tick(ctx) == {}
        assert [line["event"] for line in logs] == ["engine_tick_skipped"]
