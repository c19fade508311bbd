"""Sending a run to its machine's queue in one Redis round trip: arq's job, queued once
whoever sends it how often, and never over a job arq still keeps a result of; the same for
any number of control jobs at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import Job, JobStatus

from bot.deps import Deps
from bot.engine.runs.sending import RUN_TOKEN_SPARE, enqueue_each_once, send
from bot.jobs import DISPATCH_JOB
from runner.contract import RUN_JOB, RunSpec, run_queue
from tests.support.runs import spec_for

MACHINE = "m1"


def spec(run_id: str) -> RunSpec:
    return spec_for(Path("/nowhere/hello.git"), ["true"], run_id=run_id)


async def test_a_run_is_queued_once_as_arq_queues_it(deps: Deps) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    assert await send(deps.redis, spec("s1"), MACHINE, expires)
    assert not await send(deps.redis, spec("s1"), MACHINE, expires)  # sent again: once
    assert await deps.redis.zcard(run_queue(MACHINE)) == 1

    job = Job("s1", deps.redis, _queue_name=run_queue(MACHINE))
    assert await job.status() is JobStatus.queued
    info = await job.info()
    assert info is not None
    assert (info.function, info.args[0]["run_id"]) == (RUN_JOB, "s1")
    lives = timedelta(milliseconds=await deps.redis.pttl(job_key_prefix + "s1"))
    assert timedelta(minutes=44) < lives <= timedelta(hours=1) - RUN_TOKEN_SPARE


async def test_a_job_arq_keeps_a_result_of_is_not_queued_again(deps: Deps) -> None:
    await deps.redis.set(result_key_prefix + "s2", b"done")
    expires = datetime.now(UTC) + timedelta(hours=1)
    assert not await send(deps.redis, spec("s2"), MACHINE, expires)
    assert await deps.redis.zcard(run_queue(MACHINE)) == 0


async def test_a_run_whose_token_is_about_to_expire_is_not_sent(deps: Deps) -> None:
    expires = datetime.now(UTC) + RUN_TOKEN_SPARE - timedelta(seconds=1)
    assert not await send(deps.redis, spec("s3"), MACHINE, expires)
    assert not await deps.redis.exists(job_key_prefix + "s3")


async def test_control_jobs_are_queued_in_one_go_each_once_as_arq_queues_them(deps: Deps) -> None:
    await deps.redis.set(result_key_prefix + "dispatch:3:due", b"done")  # arq keeps its result
    jobs = [(f"dispatch:{ticket}:due", (ticket,)) for ticket in (1, 2, 3)]
    assert await enqueue_each_once(deps.redis, DISPATCH_JOB, jobs) == [True, True, False]
    # Handed out again: none.
    assert await enqueue_each_once(deps.redis, DISPATCH_JOB, jobs) == [False, False, False]
    assert await enqueue_each_once(deps.redis, DISPATCH_JOB, []) == []
    queue = deps.redis.default_queue_name
    assert sorted(await deps.redis.zrange(queue, 0, -1)) == [b"dispatch:1:due", b"dispatch:2:due"]

    # What arq's worker reads: its own job, as `enqueue_job` would have written it.
    job = Job("dispatch:2:due", deps.redis, _queue_name=queue)
    assert await job.status() is JobStatus.queued
    info = await job.info()
    assert info is not None
    assert (info.function, info.args, info.kwargs) == (DISPATCH_JOB, (2,), {})
    lives = timedelta(milliseconds=await deps.redis.pttl(job_key_prefix + "dispatch:2:due"))
    assert timedelta(hours=23) < lives <= timedelta(milliseconds=deps.redis.expires_extra_ms)
    score = await deps.redis.zscore(queue, "dispatch:2:due")
    assert score is not None
    assert abs(score / 1000 - datetime.now(UTC).timestamp()) < 60  # due now
