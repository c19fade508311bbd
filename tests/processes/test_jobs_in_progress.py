"""A control worker SIGKILLed mid-job frees its jobs within the in-progress hold
(bot/processes/resilience.py), not after arq's longest job timeout + 10 s (610 s here),
while a worker that lives keeps its long jobs marked however long they run. A real worker
process, killed for real, and the real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from arq.constants import in_progress_key_prefix
from arq.worker import func

from bot.deps import Deps, redis_client
from bot.processes import resilience
from bot.processes.resilience import ResilientWorker
from bot.servers.outages import Outages
from tests.conftest import Services

QUEUE = "openase:test:jobs"
HOLD = 1.0  # seconds, for both workers here (30 in the product)

# The worker that dies: its job says it started, then works for a minute.
_DYING_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from arq.worker import func
    from bot.deps import redis_client
    from bot.processes import resilience
    from bot.servers.outages import Outages

    resilience.IN_PROGRESS_HOLD_SECONDS = float(sys.argv[2])

    async def slow(ctx, n):
        await ctx["redis"].set("openase:test:started", ctx["job_try"])
        await asyncio.sleep(60)

    async def main():
        worker = resilience.ResilientWorker(
            functions=[func(slow, name="slow", max_tries=2)],
            redis_pool=redis_client(sys.argv[1], queue=sys.argv[3]),
            queue_name=sys.argv[3], outages=Outages(), poll_delay=0.01,
            handle_signals=False, keep_result=0,
        )
        await worker.main()

    asyncio.run(main())
    """
)


async def _until(check: Callable[[], Awaitable[Any]], seconds: float) -> None:
    began = time.monotonic()
    while not await check():
        assert time.monotonic() - began < seconds, f"not within {seconds} s"
        await asyncio.sleep(0.05)


async def test_a_killed_workers_job_is_taken_up_within_the_hold(
    deps: Deps, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = deps.redis
    await redis.enqueue_job("slow", 7, _job_id="j1", _queue_name=QUEUE)
    dying = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", _DYING_WORKER, services.redis_url, str(HOLD), QUEUE),
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        await _until(lambda: redis.exists("openase:test:started"), 30)
        marked = in_progress_key_prefix + "j1"
        assert 0 < await redis.pttl(marked) <= HOLD * 1000  # not 610 s
        await asyncio.sleep(HOLD * 2)  # a job longer than its hold stays marked while alive
        assert await redis.exists(marked)
        dying.send_signal(signal.SIGKILL)
        await asyncio.wait_for(dying.wait(), 10)
        await _until(lambda: _gone(redis, marked), HOLD * 3)
    finally:
        if dying.returncode is None:
            dying.kill()
            await dying.wait()

    # Another worker takes the job up as its second try.
    tries: list[int] = []

    async def slow(ctx: dict[str, Any], n: int) -> None:
        tries.append(ctx["job_try"])

    monkeypatch.setattr(resilience, "IN_PROGRESS_HOLD_SECONDS", HOLD)
    pool = redis_client(services.redis_url, queue=QUEUE)
    worker = ResilientWorker(
        functions=[func(slow, name="slow", max_tries=2)],
        redis_pool=pool,
        queue_name=QUEUE,
        outages=Outages(),
        poll_delay=0.01,
        handle_signals=False,
        keep_result=0,
    )
    running = asyncio.create_task(worker.main())
    try:
        await _until(lambda: _done(tries), 10)
        assert tries == [2]
    finally:
        running.cancel()
        await asyncio.wait({running})
        await worker.close()
        await pool.aclose(close_connection_pool=True)


async def _gone(redis: Any, key: str) -> bool:
    return not await redis.exists(key)


async def _done(tries: list[int]) -> bool:
    return bool(tries)
