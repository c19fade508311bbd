"""Putting a run on its machine's arq queue in one Redis round trip, and waking its runner;
and any number of control jobs on their queue in one.

arq's `enqueue_job` makes three (WATCH, EXISTS, then MULTI/EXEC) so that a job id is queued
once; a script does the same check and writes atomically, in one. The job is arq's own
(`serialize_job`, the pool's serializer): the runner's arq worker cannot tell the
difference. Sending twice still queues the run once (job id = run id)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.exceptions import RedisError

from bot.jobs import RUN_JOB, run_queue
from runner.contract import RunSpec, run_wake_channel

log = structlog.get_logger(__name__)

# A queued run's job expires this long before its git token (GitHub's live an hour), so a
# run a runner starts has at least this much of the token left to fetch and push with.
RUN_TOKEN_SPARE = timedelta(minutes=15)

# KEYS: the job, its arq result, the queue; ARGV: expiry (ms), the job, its score, its id,
# the machine's wake-up channel (published on, in the same round trip: runner/wakeup.py).
_ENQUEUE_ONCE = """
if redis.call('exists', KEYS[1], KEYS[2]) ~= 0 then
  return 0
end
redis.call('psetex', KEYS[1], ARGV[1], ARGV[2])
redis.call('zadd', KEYS[3], ARGV[3], ARGV[4])
redis.call('publish', ARGV[5], ARGV[4])
return 1
"""


# KEYS: the queue, then each job's key and arq result key; ARGV: expiry (ms), score, then
# each job's id and the job. 1 for each job queued, 0 for each that was not.
_ENQUEUE_EACH_ONCE = """
local queued = {}
for i = 1, (#KEYS - 1) / 2 do
  queued[i] = 0
  if redis.call('exists', KEYS[2 * i], KEYS[2 * i + 1]) == 0 then
    redis.call('psetex', KEYS[2 * i], ARGV[1], ARGV[2 * i + 2])
    redis.call('zadd', KEYS[1], ARGV[2], ARGV[2 * i + 1])
    queued[i] = 1
  end
end
return queued
"""


async def enqueue_each_once(
    redis: ArqRedis, function: str, jobs: Sequence[tuple[str, tuple[Any, ...]]]
) -> list[bool]:
    """`function`'s jobs (job id, arguments) on the pool's default queue, due now, in one
    round trip, each unless a job of its id is queued or kept (as `enqueue_job` with
    `_job_id` would, with arq's default expiry); for each job, whether it was queued.

    The engine tick hands out up to 100 dispatches and a gating job per run at once;
    `enqueue_job` side by side made three round trips each, and the tick waited for all of
    them (its "due" step 180-256 ms under `make bench-scale`)."""
    if not jobs:
        return []
    now = timestamp_ms()
    keys = [redis.default_queue_name]
    args: list[str | bytes | int] = [redis.expires_extra_ms, now]
    for job_id, job_args in jobs:
        keys += [job_key_prefix + job_id, result_key_prefix + job_id]
        job = serialize_job(function, job_args, {}, None, now, serializer=redis.job_serializer)
        args += [job_id, job]
    enqueue = redis.register_script(_ENQUEUE_EACH_ONCE)
    return [bool(queued) for queued in await enqueue(keys=keys, args=args)]


async def enqueue_run(redis: ArqRedis, spec: RunSpec, machine: str, expires: timedelta) -> bool:
    """Queue the run's job unless a job of that id is queued or kept; whether it was."""
    now = timestamp_ms()
    job = serialize_job(RUN_JOB, (spec.to_wire(),), {}, None, now, serializer=redis.job_serializer)
    keys = [job_key_prefix + spec.run_id, result_key_prefix + spec.run_id, run_queue(machine)]
    enqueue = redis.register_script(_ENQUEUE_ONCE)  # EVALSHA, EVAL when Redis lacks it
    queued = await enqueue(
        keys=keys,
        args=[
            int(expires.total_seconds() * 1000),
            job,
            now,
            spec.run_id,
            run_wake_channel(machine),
        ],
    )
    return bool(queued)


async def send(redis: ArqRedis, spec: RunSpec, machine: str, token_expires: datetime) -> bool:
    """Put the run on the machine's queue (job id = run id: sending twice queues it once).

    The job holds the spec, its token with it, until a runner takes it: it expires
    `RUN_TOKEN_SPARE` before the token, and `resend_queued` sends the run again then."""
    waits = token_expires - datetime.now(UTC) - RUN_TOKEN_SPARE
    if waits <= timedelta(0):  # a token this short-lived is none to start with
        log.warning("run_not_sent", run_id=spec.run_id, error="git token about to expire")
        return False
    try:
        return await enqueue_run(redis, spec, machine, waits)
    except (RedisError, OSError) as exc:
        log.warning("run_not_sent", run_id=spec.run_id, error=type(exc).__name__)
        return False
