"""A control worker killed mid-work loses nothing: every delivery is ingested exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from bot.deps import Deps
from bot.tables.mirror import Delivery, DeliveryTicket, Ticket
from tests.conftest import Services
from tests.support.helpers import GitHubWebhookSender, github_example

DELIVERIES = 600


async def _done(deps: Deps) -> int:
    async with deps.sessions() as s:
        return (await s.execute(select(func.count()).where(Delivery.status == "done"))).scalar_one()


@pytest.mark.slow
async def test_worker_killed_mid_burst_loses_and_duplicates_nothing(
    github: GitHubWebhookSender, deps: Deps, services: Services
) -> None:
    template = github_example("issues", "opened")
    for i in range(DELIVERIES):
        template["issue"]["id"] = 50_000 + i
        template["issue"]["number"] = i + 1
        assert (await github.send("issues", template)).status_code == 202

    env = {
        **os.environ,
        "OPENASE_DATABASE_URL": services.database_url,
        "OPENASE_REDIS_URL": services.redis_url,
    }
    first = _start_worker(env)
    try:
        deadline = time.monotonic() + 60
        while await _done(deps) < 20:
            assert first.poll() is None, "worker exited on its own"
            assert time.monotonic() < deadline, "worker made no progress"
            await asyncio.sleep(0.01)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # no clean shutdown: a crash
        first.wait()
    assert await _done(deps) < DELIVERIES, "the worker finished before it could be killed"

    # A restarted worker drains everything, the batch the dead one held included: its
    # transaction died with it, so those rows are pending and unlocked again.
    second = _start_worker(env)
    try:
        deadline = time.monotonic() + 90
        while await _done(deps) < DELIVERIES:
            assert second.poll() is None, "worker exited on its own"
            assert time.monotonic() < deadline, "restarted worker made no progress"
            await asyncio.sleep(0.05)
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        assert second.wait(timeout=30) == 0

    async with deps.sessions() as s:
        statuses = dict(
            (await s.execute(select(Delivery.status, func.count()).group_by(Delivery.status))).all()
        )
        attempts = set((await s.execute(select(Delivery.attempts))).scalars())
        links = (await s.execute(select(func.count()).select_from(DeliveryTicket))).scalar_one()
        tickets = (await s.execute(select(func.count()).select_from(Ticket))).scalar_one()
    assert statuses == {"done": DELIVERIES}
    assert attempts == {1}  # a transaction cut off by the kill left no trace
    assert links == tickets == DELIVERIES


def _start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.processes.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
