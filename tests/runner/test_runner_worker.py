"""The machine side through arq and a real Redis: registration, runs in, results and events
out, cancellation through Redis, refusing another contract version, SIGTERM hand-back, and
no secret of a spec left in Redis once its job is done."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job, JobStatus
from structlog.testing import capture_logs

from bot.engine.runs.sending import send
from runner import wakeup
from runner.contract import (
    MACHINES_SET,
    REMOVE_WORKTREE_JOB,
    RUN_JOB,
    SCHEMA_VERSION,
    AgentConfig,
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
from runner.sandbox import bwrap
from runner.worker import RunnerConfig, serve_runner
from tests.conftest import Services
from tests.support.git_repos import make_remote, show
from tests.support.redis_scan import key_count, keys_holding
from tests.support.runs import PARTIAL_THEN, script, spec_for

MACHINE = "m-test"


@pytest.fixture
async def redis(services: Services) -> AsyncIterator[ArqRedis]:
    """The runner needs Redis only: an empty one, no database."""
    pool = await create_pool(RedisSettings.from_dsn(services.redis_url))
    await pool.flushdb()
    yield pool
    await pool.aclose(close_connection_pool=True)


@pytest.fixture
async def runner(
    redis: ArqRedis, services: Services, tmp_path: Path
) -> AsyncIterator[tuple[asyncio.Event, RunnerConfig]]:
    """A runner serving `openase:runs:m-test` until the test ends (or sets the event)."""
    config = RunnerConfig(
        machine=MACHINE,
        redis_url=services.redis_url,
        workspace_root=tmp_path / "ws",
        labels=("linux", "gpu"),
        max_runs=2,
        drain_seconds=0.3,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve_runner(config, stop))
    await wait_for(lambda: redis.exists(machine_key(MACHINE)))
    yield stop, config
    stop.set()
    await asyncio.wait_for(task, 30)


async def wait_for(check: Any, seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def enqueue(redis: ArqRedis, wire: Any, run_id: str, **options: Any) -> Job:
    job = await redis.enqueue_job(
        RUN_JOB, wire, _queue_name=run_queue(MACHINE), _job_id=f"run:{run_id}", **options
    )
    assert job is not None
    return job


async def result_of(redis: ArqRedis, run_id: str) -> RunResult:
    """The run's result where the control plane reads it (arq keeps none)."""

    async def stored() -> bytes | None:
        value: bytes | None = await redis.get(run_result_key(run_id))
        return value

    return RunResult.from_wire(json.loads(await wait_for(stored, 30)))


async def job_done(job: Job) -> bool:
    """arq is through with the job: not queued, not running, and nothing kept of it."""
    return await job.status() is JobStatus.not_found


async def events_of(redis: ArqRedis, run_id: str) -> list[AgentEvent]:
    entries = await redis.xrange(run_events_stream(run_id))
    return [AgentEvent.from_wire(json.loads(fields[b"event"])) for _, fields in entries]


async def test_the_runner_registers_its_machine(
    redis: ArqRedis, runner: tuple[asyncio.Event, RunnerConfig]
) -> None:
    facts = await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(machine_key(MACHINE)))
    assert facts[b"name"] == MACHINE.encode()
    assert json.loads(facts[b"labels"]) == ["linux", "gpu"]
    assert facts[b"capacity"] == b"2"
    assert facts[b"running"] == b"0"
    assert json.loads(facts[b"clis"])["command"] == "any"
    assert int(facts[b"disk_free_bytes"]) > 0
    assert int(facts[b"memory_available_bytes"]) > 0
    assert int(facts[b"schema_version"]) == SCHEMA_VERSION
    # Whether it can confine runs, as the engine routes by it: the tool, or why not.
    support = await bwrap.probe()
    assert facts[b"sandbox"].decode() == (support.tool if support.available else "")
    assert facts[b"sandbox_problem"].decode() == support.problem
    assert 0 < await redis.ttl(machine_key(MACHINE)) <= 30
    assert await cast(Awaitable[int], redis.sismember(MACHINES_SET, MACHINE))


async def test_a_run_goes_through_the_queue_and_streams_its_events(
    redis: ArqRedis, runner: tuple[asyncio.Event, RunnerConfig], tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    agent = script(tmp_path, "agent.py", "print('working'); open('x.txt', 'w').write('x')\n")
    spec = spec_for(remote, [str(agent)], run_id="q-1")
    job = await enqueue(redis, spec.to_wire(), "q-1")

    result = await result_of(redis, "q-1")
    await wait_for(lambda: job_done(job))

    assert result.status is RunStatus.SUCCEEDED
    assert result.machine == MACHINE
    assert show(remote, "openase/7-add-hello", "x.txt") == "x"
    events = await events_of(redis, "q-1")
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    assert {"working"} <= {event.text for event in events if event.kind is EventKind.LOG}
    assert events[-1].kind is EventKind.PHASE
    assert events[-1].data["status"] == "succeeded"


async def test_a_cancel_signal_in_redis_stops_the_run(
    redis: ArqRedis, runner: tuple[asyncio.Event, RunnerConfig], tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    agent = script(tmp_path, "agent.py", PARTIAL_THEN)
    spec = spec_for(
        remote, [str(agent), "stubborn"], run_id="c-1", limits=Limits(kill_grace_seconds=0.5)
    )
    await enqueue(redis, spec.to_wire(), "c-1")

    async def agent_started() -> bool:
        return any(event.text == "wrote partial" for event in await events_of(redis, "c-1"))

    await wait_for(agent_started)
    started = time.monotonic()
    await redis.set(run_cancel_key("c-1"), "canceled by @hubot via /cancel")
    result = await result_of(redis, "c-1")

    assert result.status is RunStatus.CANCELED
    assert result.error == "canceled by @hubot via /cancel"
    assert time.monotonic() - started < 8
    assert show(remote, "openase/7-add-hello", "partial.txt") == "half done"


async def test_a_spec_of_another_schema_version_is_refused(
    redis: ArqRedis, runner: tuple[asyncio.Event, RunnerConfig], tmp_path: Path
) -> None:
    wire = spec_for(tmp_path / "r.git", ["true"], run_id="v-9").to_wire()
    wire["schema_version"] = SCHEMA_VERSION + 1
    await enqueue(redis, wire, "v-9")
    result = await result_of(redis, "v-9")  # delivered like any result: the run ends refused
    assert result.status is RunStatus.REFUSED
    assert result.error_class == "contract_mismatch"
    assert "upgrade" in (result.error or "")
    assert result.run_id == "v-9"


async def test_stopping_the_runner_hands_running_runs_back(
    redis: ArqRedis, runner: tuple[asyncio.Event, RunnerConfig], tmp_path: Path
) -> None:
    stop, _ = runner
    remote = make_remote(tmp_path)
    agent = script(tmp_path, "agent.py", PARTIAL_THEN)
    spec = spec_for(
        remote, [str(agent), "sleep"], run_id="h-1", limits=Limits(kill_grace_seconds=0.5)
    )
    job = await enqueue(redis, spec.to_wire(), "h-1")

    async def agent_started() -> bool:
        return any(event.text == "wrote partial" for event in await events_of(redis, "h-1"))

    await wait_for(agent_started)
    stop.set()

    async def stored() -> bytes | None:
        value: bytes | None = await redis.get(run_result_key("h-1"))
        return value

    result = RunResult.from_wire(json.loads(await wait_for(stored)))
    assert result.status is RunStatus.CANCELED
    assert "goes back to the queue" in (result.error or "")
    assert result.error_class == "runner_shutdown"  # not final: the job runs again
    assert show(remote, "openase/7-add-hello", "partial.txt") == "half done"
    await wait_for(lambda: _gone(redis))
    # arq put the job back on the machine's queue for the next runner.
    assert await job.status() in (JobStatus.queued, JobStatus.deferred)


async def _gone(redis: ArqRedis) -> bool:
    return not await redis.exists(machine_key(MACHINE))


@pytest.mark.slow
def test_openase_runner_starts_registers_and_stops_on_sigterm(
    services: Services, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "OPENASE_REDIS_URL": services.redis_url,
        "OPENASE_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("OPENASE_DATABASE_URL", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.processes.cli",
            "runner",
            "--machine",
            "cli-m",
            "--labels",
            "a,b",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        redis_cli = _sync_redis(services.redis_url)
        deadline = time.monotonic() + 30
        while not redis_cli.exists(machine_key("cli-m")):
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "runner never registered"
            time.sleep(0.1)
        assert json.loads(redis_cli.hget(machine_key("cli-m"), "labels") or b"[]") == ["a", "b"]
        process.send_signal(signal.SIGTERM)
        said, _ = process.communicate(timeout=20)
        assert process.returncode == 0, said
        assert not redis_cli.exists(machine_key("cli-m"))
        assert (tmp_path / "data" / "workspaces" / "cli-m").is_dir()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _sync_redis(url: str) -> Any:
    import redis as sync_redis

    return sync_redis.Redis.from_url(url)


async def test_aborting_the_arq_job_cancels_the_run_and_keeps_its_work(
    redis: ArqRedis, runner: tuple[asyncio.Event, RunnerConfig], tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    agent = script(tmp_path, "agent.py", PARTIAL_THEN)
    spec = spec_for(
        remote, [str(agent), "sleep"], run_id="a-1", limits=Limits(kill_grace_seconds=0.5)
    )
    job = await enqueue(redis, spec.to_wire(), "a-1")

    async def agent_started() -> bool:
        return any(event.text == "wrote partial" for event in await events_of(redis, "a-1"))

    await wait_for(agent_started)
    await job.abort(timeout=20)  # it says False: arq keeps no result to say it was aborted

    async def stored() -> bytes | None:
        value: bytes | None = await redis.get(run_result_key("a-1"))
        return value

    result = RunResult.from_wire(json.loads(await wait_for(stored)))
    assert result.status is RunStatus.CANCELED
    assert result.error == "the run's job was aborted"
    assert result.error_class == "aborted"
    assert show(remote, "openase/7-add-hello", "partial.txt") == "half done"


async def test_a_finished_tickets_worktree_is_removed_when_asked(
    redis: ArqRedis, runner: tuple[asyncio.Event, RunnerConfig], tmp_path: Path
) -> None:
    _, config = runner
    remote = make_remote(tmp_path)
    agent = script(tmp_path, "agent.py", "open('x.txt', 'w').write('x')\n")
    await enqueue(redis, spec_for(remote, [str(agent)], run_id="w-1").to_wire(), "w-1")
    assert (await result_of(redis, "w-1")).succeeded
    worktree = config.workspace_root / "worktrees" / "acme" / "api"
    assert any(worktree.iterdir())

    removal = await redis.enqueue_job(
        REMOVE_WORKTREE_JOB, "acme/api", "openase/7-add-hello", _queue_name=run_queue(MACHINE)
    )
    assert removal is not None

    await wait_for(lambda: job_done(removal), 30)
    assert not [path for path in worktree.iterdir() if path.name.startswith("openase-7-")]
    assert show(remote, "openase/7-add-hello", "x.txt") == "x"  # the pushed branch stays


async def test_no_secret_of_a_spec_stays_in_redis_once_its_job_is_done(
    redis: ArqRedis,
    runner: tuple[asyncio.Event, RunnerConfig],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token, key = "ghs_" + secrets.token_hex(18), "sk-" + secrets.token_hex(12)
    remote = make_remote(tmp_path)
    agent = script(tmp_path, "agent.py", PARTIAL_THEN)

    def wire(run_id: str, mode: str) -> dict[str, Any]:
        config = AgentConfig.model_validate(
            {"cli": "command", "argv": [str(agent), mode], "env": {"API_KEY": key}}
        )
        spec = spec_for(
            remote,
            [],
            run_id=run_id,
            agent=config,
            git_token=token,
            limits=Limits(kill_grace_seconds=0.5),
            # A branch each: two runs of one ticket's branch at once would share a worktree.
            work_branch=f"openase/{run_id}",
        )
        return spec.to_wire()

    refused = {**wire("s-3", "done"), "schema_version": SCHEMA_VERSION + 1}
    caplog.set_level(logging.INFO)  # arq's own log lines (job starts name their arguments)
    with capture_logs() as logs:
        finished = await enqueue(redis, wire("s-1", "done"), "s-1")
        canceled = await enqueue(redis, wire("s-2", "sleep"), "s-2")
        other = await enqueue(redis, refused, "s-3")
        assert (await result_of(redis, "s-1")).succeeded
        await wait_for(lambda: _said(redis, "s-2", "wrote partial"))
        await redis.set(run_cancel_key("s-2"), "canceled")
        assert (await result_of(redis, "s-2")).status is RunStatus.CANCELED
        assert (await result_of(redis, "s-3")).status is RunStatus.REFUSED
        for job in (finished, canceled, other):
            await wait_for(functools.partial(job_done, job), 30)

    assert await key_count(redis) > 0
    for secret in (token, key):
        assert await keys_holding(redis, secret) == []
        assert all(secret not in repr(entry) for entry in logs)
        assert secret not in caplog.text


async def _said(redis: ArqRedis, run_id: str, text: str) -> bool:
    return any(event.text == text for event in await events_of(redis, run_id))


async def test_the_registry_counts_a_run_from_its_start_and_frees_its_slot_before_its_result(
    redis: ArqRedis, runner: tuple[asyncio.Event, RunnerConfig], tmp_path: Path
) -> None:
    """The control plane, taking a result, sends the next run to the slot it freed: the
    registry says so by then, not at the next heartbeat (every 5 s)."""
    remote = make_remote(tmp_path)
    gate = tmp_path / "go"
    agent = script(
        tmp_path,
        "agent.py",
        f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n    time.sleep(0.05)\n",
    )
    spec = spec_for(remote, [str(agent)], run_id="slot-1")

    async def running() -> int:
        value = await cast(Awaitable[bytes | None], redis.hget(machine_key(MACHINE), "running"))
        return int(value or 0)

    async def agent_started() -> bool:
        events = await events_of(redis, "slot-1")
        return any(e.kind is EventKind.PHASE and e.text == "agent" for e in events)

    await enqueue(redis, spec.to_wire(), "slot-1")
    await wait_for(agent_started)
    assert await running() == 1  # the heartbeat is seconds away: the run's start said it
    gate.write_text("")
    await result_of(redis, "slot-1")
    assert await running() == 0


@pytest.fixture
def seldom_polled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner that looks at its queue unwoken only every minute (runner/wakeup.py)."""
    monkeypatch.setattr(wakeup, "IDLE_POLL_SECONDS", 60.0)


async def test_a_run_sent_by_the_engine_is_taken_at_once_without_polling(
    seldom_polled: None,
    redis: ArqRedis,
    runner: tuple[asyncio.Event, RunnerConfig],
    tmp_path: Path,
) -> None:
    remote = make_remote(tmp_path)
    agent = script(tmp_path, "agent.py", "open('x.txt', 'w').write('x')\n")
    await asyncio.sleep(0.5)  # the runner's first look at its queue is over: it waits now
    for number in (1, 2, 3):  # one after another: each also wakes it as the last one ends
        spec = spec_for(remote, [str(agent)], run_id=f"wake-{number}")
        assert await send(redis, spec, MACHINE, datetime.now(UTC) + timedelta(hours=1))
        result = await asyncio.wait_for(result_of(redis, f"wake-{number}"), 30)
        assert result.status is RunStatus.SUCCEEDED
