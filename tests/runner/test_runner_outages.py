"""The runner through Redis outages (issue #19): a real runner reaching a real Redis through a
link the test cuts (tests/support/tcp_proxy.py), while the test itself reads Redis directly,
as the control plane would on its side of the partition."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import job_key_prefix
from arq.jobs import Job, JobStatus
from redis.asyncio import Redis
from structlog.testing import capture_logs

from bot.engine.runs.tracking import LOST_REASON
from runner.contract import (
    RUN_JOB,
    AgentEvent,
    EventKind,
    Limits,
    RunResult,
    RunStatus,
    machine_key,
    run_cancel_key,
    run_events_stream,
    run_queue,
    run_result_key,
)
from runner.events import RedisEventSink
from runner.worker import RunnerConfig, serve_runner
from tests.conftest import Services
from tests.support.git_repos import make_remote, show
from tests.support.runs import PARTIAL_THEN, script, spec_for
from tests.support.tcp_proxy import RedisLink, cuttable_redis

# A silent partition times out arq's watching pipeline (start_jobs), whose UNWATCH then
# times out too: redis-py keeps the dead connection on the pipeline, and says so when the
# pipeline is collected. Nothing of ours leaks; the pool opens a new connection.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function Redis.__del__:pytest.PytestUnraisableExceptionWarning"
)

MACHINE = "m-cut"
# Prints `tick N` every DELAY seconds COUNT times, then leaves a file; counts its starts.
TICKING = """
import pathlib, sys, time
count, delay, starts = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
with open(starts, "a") as file:
    file.write("started\\n")
for n in range(count):
    print(f"tick {n}", flush=True)
    time.sleep(delay)
pathlib.Path("done.txt").write_text("done\\n")
"""


@pytest.fixture
async def link(services: Services) -> AsyncIterator[RedisLink]:
    async with cuttable_redis(services.redis_url) as made:
        yield made


@pytest.fixture
async def redis(services: Services) -> AsyncIterator[ArqRedis]:
    """The control plane's side: Redis reached directly, never cut."""
    pool = await create_pool(RedisSettings.from_dsn(services.redis_url))
    await pool.flushdb()
    yield pool
    await pool.aclose(close_connection_pool=True)


@contextlib.asynccontextmanager
async def running(url: str, root: Path) -> AsyncIterator[RunnerConfig]:
    config = RunnerConfig(
        machine=MACHINE, redis_url=url, workspace_root=root, max_runs=2, drain_seconds=0.3
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve_runner(config, stop))
    try:
        yield config
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def wait_for(check: Callable[[], Awaitable[Any]], seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def events_of(redis: ArqRedis, run_id: str) -> list[AgentEvent]:
    entries = await redis.xrange(run_events_stream(run_id))
    return [AgentEvent.from_wire(json.loads(fields[b"event"])) for _, fields in entries]


def printed(redis: ArqRedis, run_id: str, text: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(event.text == text for event in await events_of(redis, run_id))

    return check


async def stored_result(redis: ArqRedis, run_id: str, seconds: float = 15) -> RunResult:
    async def stored() -> bytes | None:
        value: bytes | None = await redis.get(run_result_key(run_id))
        return value

    return RunResult.from_wire(json.loads(await wait_for(stored, seconds)))


def announced(redis: ArqRedis, run_id: str) -> Callable[[], Awaitable[int]]:
    """The runner's `run_finished` job for the run, on the control queue."""
    return lambda: redis.exists(job_key_prefix + f"run-finished:{run_id}")


def done(job: Job) -> Callable[[], Awaitable[bool]]:
    """arq is through with the job (it keeps no results: a run's is under our key)."""

    async def check() -> bool:
        return await job.status() is JobStatus.not_found

    return check


async def enqueue(redis: ArqRedis, wire: Any, run_id: str) -> Job:
    job = await redis.enqueue_job(RUN_JOB, wire, _queue_name=run_queue(MACHINE), _job_id=run_id)
    assert job is not None
    return job


def ticking(tmp_path: Path, run_id: str, count: int, delay: float) -> tuple[Any, Path]:
    remote = make_remote(tmp_path)
    agent = script(tmp_path, "agent.py", TICKING)
    starts = tmp_path / f"{run_id}.starts"
    spec = spec_for(remote, [str(agent), str(count), str(delay), str(starts)], run_id=run_id)
    return spec.to_wire(), starts


async def test_a_run_rides_out_a_cut_and_its_events_arrive_after(
    redis: ArqRedis, link: RedisLink, tmp_path: Path
) -> None:
    wire, starts = ticking(tmp_path, "cut-1", count=40, delay=0.15)
    with capture_logs() as logs:
        async with running(link.url, tmp_path / "ws"):
            job = await enqueue(redis, wire, "cut-1")
            await wait_for(printed(redis, "cut-1", "tick 2"))
            link.proxy.cut(refuse=True)
            await asyncio.sleep(3)
            link.proxy.restore()
            restored = time.monotonic()

            result = await stored_result(redis, "cut-1")
            await wait_for(done(job))  # arq's job finished too

            async def registered_again() -> bool:
                back_at = await redis.hget(machine_key(MACHINE), "redis_back_at")  # type: ignore[misc]  # redis-py's union return
                return float(back_at or 0) > 0

            await wait_for(registered_again)
            assert time.monotonic() - restored < 10

    assert result.status is RunStatus.SUCCEEDED  # the agent ran on through the cut
    assert starts.read_text() == "started\n"
    events = await events_of(redis, "cut-1")
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    ticks = [event.text for event in events if event.kind is EventKind.LOG]
    assert ticks == [f"tick {n}" for n in range(40)]  # those of the cut came after it
    said = [entry["event"] for entry in logs]
    assert said.count("redis_unavailable") == 1
    assert said.count("redis_back") == 1
    assert next(entry["seconds"] for entry in logs if entry["event"] == "redis_back") >= 2.5


async def test_a_result_finished_during_a_cut_waits_on_disk_and_goes_out_after(
    redis: ArqRedis, link: RedisLink, tmp_path: Path
) -> None:
    wire, _ = ticking(tmp_path, "cut-2", count=3, delay=0.3)
    root = tmp_path / "ws"
    async with running(link.url, root):
        job = await enqueue(redis, wire, "cut-2")
        await wait_for(printed(redis, "cut-2", "tick 0"))
        link.proxy.cut()
        waiting = root / ".results" / "cut-2.json"

        async def kept() -> bool:
            return waiting.exists()

        await wait_for(kept)
        assert RunResult.from_wire(json.loads(waiting.read_text())).succeeded
        assert not await redis.exists(run_result_key("cut-2"))
        link.proxy.restore()

        result = await stored_result(redis, "cut-2")
        await wait_for(announced(redis, "cut-2"))
        await wait_for(done(job))
        assert not waiting.exists()
        assert (root / ".results" / "delivered" / "cut-2.json").exists()

    assert result.succeeded
    texts = [event.text for event in await events_of(redis, "cut-2")]
    assert texts.index("tick 2") < len(texts) - 1  # written, in order, before the result


async def test_a_result_left_by_a_killed_runner_is_delivered_at_start(
    redis: ArqRedis, services: Services, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    (root / ".results").mkdir(parents=True)
    at = datetime.now(UTC)
    left = RunResult(run_id="k-1", status=RunStatus.SUCCEEDED, started_at=at, finished_at=at)
    (root / ".results" / "k-1.json").write_text(json.dumps(left.to_wire()))

    async with running(services.redis_url, root):
        assert await stored_result(redis, "k-1") == left
        await wait_for(announced(redis, "k-1"))
    assert not (root / ".results" / "k-1.json").exists()


async def test_redis_back_empty_gets_the_machine_and_the_result_back_and_nothing_runs_twice(
    redis: ArqRedis, link: RedisLink, tmp_path: Path
) -> None:
    wire, starts = ticking(tmp_path, "cut-3", count=60, delay=0.15)
    async with running(link.url, tmp_path / "ws"):
        first = await enqueue(redis, wire, "cut-3")
        await wait_for(printed(redis, "cut-3", "tick 2"))
        link.proxy.cut()
        await redis.flushdb()  # restarted without persistence while the runner was cut off
        await asyncio.sleep(1)
        link.proxy.restore()

        async def registered() -> bool:
            return bool(await redis.exists(machine_key(MACHINE)))

        await wait_for(registered, 10)
        # The control plane sends the run again (its job is gone): it is not started twice,
        # whether as the same arq job or another.
        again = await enqueue(redis, wire, "cut-3")
        other = await redis.enqueue_job(RUN_JOB, wire, _queue_name=run_queue(MACHINE))
        assert other is not None
        await wait_for(done(other))  # a duplicate: it ended at once (the starts file says)
        result = await stored_result(redis, "cut-3")
        await wait_for(announced(redis, "cut-3"))
        await wait_for(done(again))  # finished with the first (the same job id)
        assert await first.status() is JobStatus.not_found

    assert result.succeeded
    assert starts.read_text() == "started\n"
    events = await events_of(redis, "cut-3")
    seqs = [event.seq for event in events]
    assert seqs == sorted(set(seqs))  # what Redis lost is gone; nothing twice, in order
    assert events[-1].kind is EventKind.PHASE


async def test_a_run_declared_lost_while_cut_off_stops_on_reconnection_and_keeps_its_work(
    redis: ArqRedis, link: RedisLink, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    agent = script(tmp_path, "agent.py", PARTIAL_THEN)
    spec = spec_for(
        remote, [str(agent), "sleep"], run_id="z-1", limits=Limits(kill_grace_seconds=0.5)
    )
    async with running(link.url, tmp_path / "ws"):
        await enqueue(redis, spec.to_wire(), "z-1")
        await wait_for(printed(redis, "z-1", "wrote partial"))
        link.proxy.cut()
        await redis.set(run_cancel_key("z-1"), LOST_REASON)  # what the engine does
        await asyncio.sleep(1)
        link.proxy.restore()
        result = await stored_result(redis, "z-1", seconds=20)

    assert result.status is RunStatus.CANCELED
    assert result.error == LOST_REASON
    assert show(remote, "openase/7-add-hello", "partial.txt") == "half done"


async def test_a_runner_started_while_redis_is_away_waits_for_it_and_stops_during_an_outage(
    redis: ArqRedis, link: RedisLink, tmp_path: Path
) -> None:
    link.proxy.cut(refuse=True)
    async with running(link.url, tmp_path / "never"):
        await asyncio.sleep(1)  # stopped before Redis ever answered: ends quietly too
    async with running(link.url, tmp_path / "ws"):
        await asyncio.sleep(1.5)
        assert not await redis.exists(machine_key(MACHINE))
        link.proxy.restore()
        restored = time.monotonic()

        async def registered() -> bool:
            return bool(await redis.exists(machine_key(MACHINE)))

        await wait_for(registered, 10)
        assert time.monotonic() - restored < 10
        link.proxy.cut(refuse=True)
        await asyncio.sleep(1)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5  # stopped cleanly though Redis is away


async def test_events_of_a_long_outage_are_bounded_and_the_dropped_ones_counted(
    redis: ArqRedis, link: RedisLink
) -> None:
    cut_off = Redis.from_url(link.url, socket_timeout=2)
    sink = RedisEventSink(cut_off, "b-1", heartbeat_seconds=60, buffer_limit=5)
    with capture_logs() as logs:
        await sink.start()
        sink.emit(AgentEvent(kind=EventKind.TEXT, text="before"))
        await sink.drain()
        link.proxy.cut(refuse=True)
        for n in range(12):
            sink.emit(AgentEvent(kind=EventKind.TEXT, text=f"during {n}"))
            await asyncio.sleep(0.02)
        link.proxy.restore()
        await asyncio.wait_for(sink.drain(), 10)
        await sink.close()
    await cut_off.aclose()

    events = await events_of(redis, "b-1")
    kept = [f"during {n}" for n in range(7, 12)]  # the newest five
    assert [event.text for event in events[:-1]] == ["before", *kept]
    assert events[-1].data == {"events_dropped": 7}
    assert sink.dropped == 7
    assert [entry["dropped"] for entry in logs if entry["event"] == "run_events_dropped"] == [7]
