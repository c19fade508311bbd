"""The runner through Redis outages of any length (DESIGN §1: no process needs a supervisor).

arq's Worker ends at the first Redis connection error in its poll loop, and one started
while Redis is away dies at startup. `OutlastingWorker` waits instead, with the runs in
hand going on (their events buffered, their results kept on disk), and polls again once
Redis answers. `RedisOutage` is the one place that notices an outage, says so once when it
begins and once when it ends, and tells the rest (heartbeats, event sinks, result
delivery) that Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.worker import Worker
from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runner.wakeup import Wakeup

log = structlog.get_logger(__name__)

# Redis is asked again after a jittered wait growing from FIRST_WAIT to WAIT_CAP seconds,
# so it is found back within WAIT_CAP (+ a probe) of its return.
FIRST_WAIT = 0.5
WAIT_CAP = 4.0
PROBE_TIMEOUT = 2.0
# Without a read timeout, a command sent into a blackholed network waits forever.
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0

_T = TypeVar("_T")
OnBack = Callable[[float], Awaitable[None]]


def is_outage(error: BaseException) -> bool:
    """Whether `error` (or what caused it) says Redis cannot be reached."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # Socket errors count (redis-py lets some through unwrapped), other OSErrors (a
        # full disk, a missing file) do not.
        if isinstance(
            current, RedisConnectionError | RedisTimeoutError | ConnectionError | TimeoutError
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def cancelling() -> bool:
    """Whether this task is being cancelled: a connection cut short by the cancellation may
    raise a connection error instead, which is then no outage to wait out."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def stop_if_cancelled(error: BaseException | None = None) -> None:
    """Raise CancelledError if this task is being cancelled: a loop that waits out outages
    must not outlive its cancellation, whether a client turned it into `error` or swallowed
    it (Python 3.11's wait_for, which redis-py connects with, returns a result that arrives
    with the cancellation and drops the cancellation)."""
    if cancelling():
        raise asyncio.CancelledError from error


def connect(url: str, queue: str) -> ArqRedis:
    """The runner's pool: arq's own has no read timeout and retries for seconds at start."""
    connections = ConnectionPool.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=SOCKET_TIMEOUT
    )
    return ArqRedis(connections, default_queue_name=queue)


class RedisOutage:
    """Whether Redis is away, since when, and who wants to hear that it is back."""

    def __init__(self, probe: Callable[[], Awaitable[object]]) -> None:
        self._probe = probe
        self._back = asyncio.Event()
        self._back.set()
        self._since = 0.0
        self._watchers: set[asyncio.Task[None]] = set()
        self.on_back: list[OnBack] = []
        self.last_seconds = 0.0  # how long the last outage lasted
        self.back_at = 0.0  # wall time it ended (0: none yet)

    @property
    def away(self) -> bool:
        return not self._back.is_set()

    def noticed(self, error: BaseException) -> bool:
        """Record `error` if it says Redis is away (logged once per outage; watched until
        Redis answers); whether it did."""
        if not is_outage(error):
            return False
        if not self.away:
            self._since = time.monotonic()
            self._back.clear()
            log.warning("redis_unavailable", error=type(error).__name__)
            watcher = asyncio.get_running_loop().create_task(self._watch())
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
        return True

    async def until_back(self, stop: asyncio.Event | None = None) -> None:
        """Return once Redis answers again (or `stop` is set)."""
        if not self.away:
            return
        waits = [asyncio.ensure_future(self._back.wait())]
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def outlast(self, attempt: Callable[[], Awaitable[_T]], stop: asyncio.Event) -> _T:
        """`attempt()`, again after each outage, until it succeeds or `stop` is set."""
        while True:
            try:
                return await attempt()
            except Exception as error:
                if stop.is_set() or cancelling() or not self.noticed(error):
                    raise
                await self.until_back(stop)

    async def _watch(self) -> None:
        tries = 0
        while True:
            stop_if_cancelled()
            ceiling = min(WAIT_CAP, FIRST_WAIT * 2**tries)
            await asyncio.sleep(ceiling / 2 + random.uniform(0, ceiling / 2))  # noqa: S311  # jitter
            tries += 1
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await self._probe()
            except Exception as error:  # whatever it says, Redis is not back yet
                stop_if_cancelled(error)
                continue
            break
        self.last_seconds = round(time.monotonic() - self._since, 1)
        self.back_at = time.time()
        self._back.set()
        log.info("redis_back", seconds=self.last_seconds)
        for callback in list(self.on_back):
            try:
                await callback(self.last_seconds)
            except Exception as error:
                if not self.noticed(error):  # away again: the next return retries it
                    log.warning("redis_catch_up_failed", error=repr(error))

    async def aclose(self) -> None:
        watchers = list(self._watchers)
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)


class OutlastingWorker(Worker):
    """arq's Worker riding out Redis outages (see the module docstring)."""

    def __init__(
        self,
        *args: Any,
        redis_url: str,
        outage: RedisOutage,
        wakeup: Wakeup | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.redis_url = redis_url
        self.outage = outage
        # Each look at the queue waits for it (a run sent, a run ended) or its timeout.
        self.wakeup = wakeup
        self.closing = asyncio.Event()
        # Jobs marked in progress whose function never started: freed once Redis is back.
        self._stranded: set[str] = set()
        self._began: set[str] = set()
        self.on_job_start = self._job_starts

    async def _job_starts(self, ctx: dict[str, Any]) -> None:
        # From here on the job's function runs: it must not be started again.
        self._began.add(ctx["job_id"])

    async def main(self) -> None:
        # Starting (arq's INFO, our on_startup) needs Redis too: wait, then again.
        if self._pool is None:
            self._pool = connect(self.redis_url, self.queue_name)
        await self.outage.outlast(super().main, self.closing)

    async def _poll_iteration(self) -> None:
        if cancelling():  # a cancellation something below swallowed: stop all the same
            raise asyncio.CancelledError
        if self.wakeup is not None:
            await self.wakeup.wait()
        try:
            await super()._poll_iteration()
        except Exception as error:
            if cancelling() or not self.outage.noticed(error):
                raise
            await self.outage.until_back(self.closing)
            await self._free_stranded()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        for job_id in job_ids:
            running = self.tasks.get(job_id.decode())
            if running is not None and not running.done():
                # Sent again after Redis forgot it: this one's end finishes both.
                continue
            counted = self.job_counter
            try:
                await super().start_jobs([job_id])
            except Exception:
                # arq took a slot before asking Redis, and gives it back only on success.
                if self.job_counter > counted and self.tasks.get(job_id.decode()) is running:
                    self.job_counter -= 1
                    self.sem.release()
                    self._stranded.add(job_id.decode())
                raise

    async def run_job(self, job_id: str, score: int) -> None:
        try:
            await super().run_job(job_id, score)
        except Exception as error:
            if job_id not in self._began and is_outage(error):
                self._stranded.add(job_id)
            raise
        finally:
            self._began.discard(job_id)
            if self.wakeup is not None:  # its slot is free: the next queued run takes it now
                self.wakeup.wake()

    async def finish_job(self, *args: Any, **kwargs: Any) -> None:
        # A run's result must reach arq too, or the job (still queued, still "in
        # progress") would run again once its in-progress key expires.
        finish = super().finish_job
        await self.outage.outlast(lambda: finish(*args, **kwargs), self.closing)

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        finish = super().finish_failed_job
        await self.outage.outlast(lambda: finish(job_id, result_data), self.closing)

    async def _free_stranded(self) -> None:
        stranded, self._stranded = self._stranded, set()
        if stranded:
            with contextlib.suppress(Exception):  # not freed: it expires (arq's job timeout)
                await self.pool.delete(*(in_progress_key_prefix + job for job in stranded))

    async def close(self) -> None:
        # arq's close() gathers the cancelled jobs without return_exceptions (so the first
        # raises CancelledError out of it), and needs Redis to say goodbye: neither may
        # keep the runner from stopping.
        self.closing.set()
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()
        try:
            if self.outage.away:  # no goodbye to a Redis that is not there
                raise RedisConnectionError("Redis is away")
            await super().close()
        except Exception as error:
            if not is_outage(error):
                raise
            if self.main_task is not None:
                self.main_task.cancel()
            if self.on_shutdown is not None:
                await self.on_shutdown(self.ctx)
            with contextlib.suppress(Exception):
                await self.pool.aclose(close_connection_pool=True)
            self._pool = None
        await self.outage.aclose()
