"""A run's result on its way to the control plane, through Redis outages and crashes.

The result is written to disk first (`<workspace_root>/.results/<run_id>.json`, atomically),
then stored under `openase:run:<id>:result` and announced (`run_finished` on the control
queue). One that cannot be delivered waits on disk and goes out once Redis is back, or
when the next runner process on this machine starts (this one may be SIGKILLed first).

A delivered result stays a while in `.results/delivered/`: should Redis come back empty
before the control plane took it in, it is delivered again. Taking a result in is
idempotent on the control plane's side (a conditional update of the run's row), so a
result delivered twice is acted on once, and one for a run declared lost is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from runner.contract import (
    CONTROL_QUEUE,
    RUN_FINISHED_JOB,
    ContractMismatch,
    RunResult,
    run_finished_job_id,
    run_result_key,
)
from runner.redis_outage import RedisOutage, stop_if_cancelled

log = structlog.get_logger(__name__)

RESULT_TTL_SECONDS = 7 * 24 * 3600
# Long enough for any control worker to have taken a delivered result in.
KEEP_DELIVERED_SECONDS = 3600

Flushed = Callable[[str], Awaitable[None]]


async def store(redis: ArqRedis, result: RunResult) -> None:
    """Keep the result beside the run's events: an aborted job has no arq result."""
    await redis.set(
        run_result_key(result.run_id), json.dumps(result.to_wire()), ex=RESULT_TTL_SECONDS
    )


async def announce(redis: ArqRedis, run_id: str) -> None:
    """Tell the control plane the result is there (its sweep finds it anyway, later)."""
    await redis.enqueue_job(
        RUN_FINISHED_JOB, run_id, _job_id=run_finished_job_id(run_id), _queue_name=CONTROL_QUEUE
    )


class Results:
    """The machine's results not yet (or only just) delivered, on disk."""

    def __init__(self, root: Path, redis: ArqRedis, outage: RedisOutage) -> None:
        self.waiting = root / ".results"
        self.delivered = self.waiting / "delivered"
        self._redis = redis
        self._outage = outage
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._in_memory: dict[str, RunResult] = {}  # results the disk would not take

    def keep(self, result: RunResult) -> None:
        """On disk before anything else: a crash from here on loses nothing."""
        try:
            self.waiting.mkdir(parents=True, exist_ok=True)
            _write_atomically(self.waiting / f"{result.run_id}.json", result.to_wire())
        except OSError as error:  # a full disk: the result waits in memory instead
            log.error("run_result_not_kept", run_id=result.run_id, error=str(error))
            self._in_memory[result.run_id] = result
        self._prune()

    def _prune(self) -> None:
        with contextlib.suppress(OSError):
            for path in self.delivered.glob("*.json"):
                if time.time() - path.stat().st_mtime > KEEP_DELIVERED_SECONDS:
                    path.unlink(missing_ok=True)

    def earlier(self, run_id: str) -> RunResult | None:
        """The result this machine already has for the run, delivered or not."""
        if run_id in self._in_memory:
            return self._in_memory[run_id]
        for folder in (self.waiting, self.delivered):
            result = _read(folder / f"{run_id}.json")
            if result is not None:
                return result
        return None

    async def deliver(self, result: RunResult) -> bool:
        """Store and announce a kept result; whether it went out (else it waits on disk)."""
        async with self._lock:
            try:
                await store(self._redis, result)
                await announce(self._redis, result.run_id)
            except (RedisError, OSError) as error:
                if not self._outage.noticed(error):
                    log.warning("run_result_undelivered", run_id=result.run_id, error=str(error))
                return False
            self.delivered.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                (self.waiting / f"{result.run_id}.json").replace(
                    self.delivered / f"{result.run_id}.json"
                )
            self._in_memory.pop(result.run_id, None)
            log.info("run_result_delivered", run_id=result.run_id)
            return True

    def wake(self) -> None:
        """Have the courier go through what waits (at start, and when Redis is back)."""
        self._wake.set()

    async def courier(self, flushed: Flushed) -> None:
        """Deliver what waits whenever woken; `flushed(run_id)` returns once that run's
        events are written, so the control plane reads them before its result."""
        while True:
            stop_if_cancelled()
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._deliver_waiting(flushed)
                await self._redeliver_forgotten()
            except (RedisError, OSError) as error:
                stop_if_cancelled(error)
                if not self._outage.noticed(error):
                    log.warning("run_results_undelivered", error=str(error))

    async def _deliver_waiting(self, flushed: Flushed) -> None:
        waiting = [_read(path) for path in sorted(self.waiting.glob("*.json"))]
        for result in [*waiting, *self._in_memory.values()]:
            if result is None:
                continue
            await flushed(result.run_id)
            if not await self.deliver(result):
                return  # Redis is away again: the next return wakes us

    async def _redeliver_forgotten(self) -> None:
        """Results Redis lost (it came back empty) before the control plane took them in."""
        self._prune()
        for path in sorted(self.delivered.glob("*.json")):
            result = _read(path)
            if result is not None and not await self._redis.exists(run_result_key(result.run_id)):
                await store(self._redis, result)
                await announce(self._redis, result.run_id)
                log.info("run_result_redelivered", run_id=result.run_id)


def _write_atomically(path: Path, data: object) -> None:
    temporary = path.with_suffix(".tmp")
    with temporary.open("w") as file:
        json.dump(data, file)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)


def _read(path: Path) -> RunResult | None:
    """None when absent or unreadable (an unreadable one is logged and set aside)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return RunResult.from_wire(json.loads(text))
    except (ValueError, ContractMismatch) as error:
        log.error("run_result_unreadable", path=str(path), error=str(error))
        with contextlib.suppress(OSError):
            path.rename(path.with_suffix(".unreadable"))
        return None
