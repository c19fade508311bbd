"""The chaos suite, short: each fault once, under a light steady load, against the real
processes (`openase serve`, two workers, two runners, PostgreSQL and Redis of their own);
the machinery is `make chaos`'s (bench/chaos/). Targets as there: nothing acknowledged
lost, nothing done twice, everything caught up within 60 s of the fault's end, and no
process exiting by itself.

The network cut here (8 s) is shorter than the lost-run window: a machine briefly cut off
keeps its run. `make chaos` cuts for longer than the window.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.chaos.report import trouble
from bench.chaos.run import ChaosOptions, Session, session

SHORT = ChaosOptions(
    outage_seconds=3.0,
    github_outage_seconds=5.0,
    cut_seconds=8.0,
    webhook_rate=10.0,
    ticket_every=2.0,
    agent_seconds=1.0,
    settle_seconds=2.0,
    catch_up_timeout=60.0,
)


@pytest.fixture(scope="module")
async def chaos() -> AsyncIterator[Session]:
    # Not under pytest's tmp_path: as root, PostgreSQL runs as another user, who must be
    # able to reach its data directory (pytest's are private to us).
    root = Path(tempfile.mkdtemp(prefix="oa-chaos-"))
    try:
        async with session(dataclasses.replace(SHORT, root=root)) as running:
            yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _survives(chaos: Session, fault: str) -> None:
    report = await chaos.fault(fault)
    misses = report.misses()
    assert not misses, f"{report.table()}\n\nwhat the processes said:\n{trouble(chaos.cluster)}"


@pytest.mark.slow
async def test_worker_sigkilled(chaos: Session) -> None:
    await _survives(chaos, "worker")


@pytest.mark.slow
async def test_postgres_stopped_and_started(chaos: Session) -> None:
    await _survives(chaos, "postgres")


@pytest.mark.slow
async def test_redis_killed_and_started_empty(chaos: Session) -> None:
    await _survives(chaos, "redis")


@pytest.mark.slow
async def test_github_answering_502(chaos: Session) -> None:
    await _survives(chaos, "github")


@pytest.mark.slow
async def test_network_to_a_runners_redis_cut(chaos: Session) -> None:
    await _survives(chaos, "redis-cut")


@pytest.mark.slow
async def test_runner_sigkilled_mid_run(chaos: Session) -> None:
    await _survives(chaos, "runner")
