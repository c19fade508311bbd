"""The control worker through outages of PostgreSQL and Redis (the README, "Outages").

arq's worker ends at the first Redis connection error in its poll loop, and every job and
cron that meets an unreachable store would fail with a traceback, every few seconds for as
long as the outage lasts. Here:

- `ResilientWorker` waits for Redis instead (the jobs in hand go on) and polls again as
  soon as it answers; a worker started while Redis is away waits for it the same way.
- A job in hand is marked in progress for `IN_PROGRESS_HOLD_SECONDS` past its last
  renewal (every third of it while it runs), not arq's longest timeout + 10 s (610 s
  here): a worker SIGKILLed mid-job held its jobs, and their ids, for ten minutes; the
  tick's re-announcement of a result or hand-out of a dispatch under that id was a no-op
  all that time. Now another worker takes them up (or, past their tries, drops them and
  the crons redo the work from PostgreSQL) within that hold.
- `riding_out` turns a job's or cron's "store unreachable" into one log line per outage
  (bot/servers/outages.py) and a quiet return: what the job was doing stays where
  PostgreSQL keeps it (a pending delivery, a due effect, a queued run), and is taken up
  again by the crons, and at once when the store is back (`catch_up`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, cast

import structlog
from arq.constants import in_progress_key_prefix
from arq.typing import WorkerCoroutine
from arq.worker import Worker
from redis.exceptions import RedisError

from bot.deps import Deps
from bot.servers.outages import Outages
from runner.redis_outage import cancelling

log = structlog.get_logger(__name__)

Job = Callable[..., Awaitable[object]]

IN_PROGRESS_HOLD_SECONDS = 30.0


class Alongside(Protocol):
    """Work of the worker's process beside arq's jobs: the ingest pump (needs no Redis),
    the engine's clock (bot/processes/engine_clock.py: the tick and the run recorder)."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class ResilientWorker(Worker):
    """arq's Worker that outlives Redis outages (see the module docstring). What runs
    `alongside` starts with it, before it waits for Redis, and stops as it closes."""

    def __init__(
        self, *args: Any, outages: Outages, alongside: Sequence[Alongside] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.outages = outages
        self.alongside = tuple(alongside)
        # arq marks a job in progress this long as it starts it; `_keep_in_progress` renews.
        self.in_progress_timeout_s = IN_PROGRESS_HOLD_SECONDS

    async def main(self) -> None:
        # What runs alongside lives exactly as long as this: a worker whose main() was
        # cancelled without close() (a test, an embedding) leaves nothing running.
        for each in self.alongside:
            each.start()
        renewing = asyncio.get_running_loop().create_task(self._keep_in_progress())
        try:
            await self._main()
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            await self._stop_alongside()

    async def _keep_in_progress(self) -> None:
        """Renew the in-progress mark of every job this worker is running, in one round
        trip; a mark that is gone (the job ended, Redis came back empty) stays gone."""
        hold_ms = int(IN_PROGRESS_HOLD_SECONDS * 1000)
        while True:
            await asyncio.sleep(IN_PROGRESS_HOLD_SECONDS / 3)
            running = [job_id for job_id, task in self.tasks.items() if not task.done()]
            if not running or self.pool is None:
                continue
            try:
                async with self.pool.pipeline(transaction=False) as pipe:
                    for job_id in running:
                        pipe.pexpire(in_progress_key_prefix + job_id, hold_ms)
                    await pipe.execute()
            except (RedisError, OSError):
                continue  # Redis away: the poll loop waits for it; renewed once it is back

    async def _stop_alongside(self) -> None:
        await asyncio.gather(*(each.stop() for each in self.alongside))

    async def _main(self) -> None:
        # Starting (the pool, arq's INFO, our on_startup) needs Redis too: wait, then again.
        while True:
            try:
                await super().main()
                return
            except Exception as error:
                if cancelling() or self.outages.noticed(error) != "redis":
                    raise
                await self._until_redis_is_back()

    async def _poll_iteration(self) -> None:
        if cancelling():  # a cancellation something below swallowed: stop all the same
            raise asyncio.CancelledError
        try:
            await super()._poll_iteration()
        except Exception as error:
            if cancelling() or self.outages.noticed(error) != "redis":
                raise
            await self._until_redis_is_back()

    async def _until_redis_is_back(self) -> None:
        await self.outages.until_back("redis")

    async def close(self) -> None:
        # arq's close() cancels the jobs in hand and then gathers them, so the first
        # cancelled one raises CancelledError out of close(): on_shutdown never ran and the
        # pool stayed open. A job cut short is safe to cut (its rows say what is left to do);
        # the worker must still close.
        await self._stop_alongside()
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()
        await super().close()


def riding_out(job: Job) -> WorkerCoroutine:
    """`job` (an arq job or cron taking the worker's ctx first) answering an unreachable
    store with "<store>_unavailable" instead of an error; other errors still raise."""

    @functools.wraps(job)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> object:
        try:
            return await job(ctx, *args, **kwargs)
        except Exception as error:
            deps: Deps = ctx["deps"]
            store = None if cancelling() else deps.outages.noticed(error)
            if store is None:
                raise
            return f"{store}_unavailable"

    return cast(WorkerCoroutine, run)  # arq's Protocol wants __qualname__, which wraps() sets
