"""A run's sender wakes its machine's runner (runner/wakeup.py, bot/engine/runs/sending.py):
the script that queues the run publishes on the machine's channel, so the runner need not
poll its queue often. Real Redis; the runner itself is tests/runner/test_runner_worker.py's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.deps import Deps
from bot.engine.runs.sending import send
from runner.wakeup import Wakeup
from tests.support.runs import spec_for

HOUR = timedelta(hours=1)


@pytest.fixture
async def woken(deps: Deps) -> AsyncIterator[tuple[Wakeup, Wakeup]]:
    """Listening runners of machines m1 and m2, subscribed (their first wake-up taken)."""
    pair = (Wakeup("m1"), Wakeup("m2"))
    for wakeup in pair:
        wakeup.start(deps.redis)
        assert await wakeup.wait(5)  # subscribed: it looks at its queue once at once
    yield pair
    for wakeup in pair:
        await wakeup.stop()


async def test_a_sent_run_wakes_its_machines_runner_and_no_other(
    deps: Deps, woken: tuple[Wakeup, Wakeup]
) -> None:
    m1, m2 = woken
    spec = spec_for(Path("/nowhere/hello.git"), ["true"], run_id="w-1")
    assert await send(deps.redis, spec, "m1", datetime.now(UTC) + HOUR)
    assert await m1.wait(5)
    assert not await m2.wait(0.2)
    # Sent again, it is not queued again, and wakes no one.
    assert not await send(deps.redis, spec, "m1", datetime.now(UTC) + HOUR)
    assert not await m1.wait(0.2)


async def test_without_a_message_the_wait_ends_on_its_own(woken: tuple[Wakeup, Wakeup]) -> None:
    m1, _ = woken
    began = asyncio.get_running_loop().time()
    assert not await m1.wait(0.1)
    assert asyncio.get_running_loop().time() - began >= 0.1
    m1.wake()  # a run ended here: its slot is free
    assert await m1.wait(5)


async def test_a_lost_subscription_comes_back(deps: Deps, woken: tuple[Wakeup, Wakeup]) -> None:
    m1, _ = woken
    await deps.redis.client_kill_filter(_type="pubsub")
    assert await m1.wait(10)  # subscribed again: it looks at its queue at once
    spec = spec_for(Path("/nowhere/hello.git"), ["true"], run_id="w-2")
    assert await send(deps.redis, spec, "m1", datetime.now(UTC) + HOUR)
    assert await m1.wait(5)
