"""The control worker's ingest: pending deliveries claimed in batches as soon as stored.

A delivery's row is its place in the queue. Whoever stores one pending (the web app, the
relay, the recovery of missed deliveries) or sets one pending again makes Postgres notify
channel `openase_deliveries` as it commits (a trigger: migration c4e9a2d7f1b6). The pump
listens on a connection of its own, claims the due pending deliveries in batches
(bot/intake/ingest.py) until none is left, and waits for the next notification, or at
most `POLL_SECONDS` (a retry coming due, a notification lost with its connection).

So nothing has to hand a delivery over: one stored while no worker ran, or held by a
worker that died (its transaction rolled back), is simply claimed by the next batch, and a
Redis outage does not hold up ingest. Workers share the work through `SKIP LOCKED`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog

from bot.deps import Deps, plain_url
from bot.intake.ingest import BATCH, ingest_batch

log = structlog.get_logger(__name__)

CHANNEL = "openase_deliveries"
POLL_SECONDS = 1.0  # the longest an idle pump waits without a notification
CONCURRENT_BATCHES = 2  # transactions in flight at once (see IngestPump.drain)
STOP_GRACE_SECONDS = 15.0  # a stopping pump finishes the batch in hand for this long
PUMP_TASK = "ingest-pump"  # the running pump's task name


class IngestPump:
    """Ingests pending deliveries while it runs (`start`/`stop`), or until none is due
    (`drain`). `prepare` runs before each batch is applied (the worker adopts a
    just-registered App's engine there)."""

    def __init__(self, deps: Deps, *, prepare: Callable[[], object] = lambda: None) -> None:
        self.deps = deps
        self.prepare = prepare
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._listener: Any = None  # asyncpg.Connection

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        """Look for pending deliveries now (a store is back, a notification came)."""
        self._wakeup.set()

    async def drain(self) -> int:
        """Ingest batch after batch until none is due; how many deliveries were taken.

        `CONCURRENT_BATCHES` at a time: while PostgreSQL works on one batch's statement,
        this process prepares the other's, so each of the two keeps a core busy (one at a
        time, each waited for the other: 422 deliveries/s where each alone allowed 800+).
        """
        try:
            async with asyncio.TaskGroup() as batches:
                running = [
                    batches.create_task(self._drain_one()) for _ in range(CONCURRENT_BATCHES)
                ]
        except ExceptionGroup as failed:
            # What failed as itself (a store away is then recognised as one, and said once);
            # the other batch was cancelled and rolled back, its deliveries still pending.
            raise failed.exceptions[0] from None
        return sum(task.result() for task in running)

    async def _drain_one(self) -> int:
        taken = 0
        while not self._stopping:
            batch = await ingest_batch(self.deps, prepare=self.prepare)
            taken += len(batch)
            if len(batch) < BATCH:
                break
        return taken

    def start(self) -> None:
        if not self.running:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=PUMP_TASK)

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop after the batch in hand (cut short after `grace` s: its transaction is then
        rolled back and its deliveries stay pending for the next worker)."""
        self._stopping = True
        self.wake()
        if self._task is not None:
            _, running = await asyncio.wait({self._task}, timeout=grace)
            for task in running:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._unlisten()

    async def _run(self) -> None:
        while not self._stopping:
            self._wakeup.clear()  # before looking: a notification from now on is not lost
            try:
                await self._listen()
                await self.drain()
            except Exception as error:
                store = self.deps.outages.noticed(error)
                if store is None:  # a bug: said, and tried again rather than ending ingest
                    log.error("ingest_failed", exc_info=True)
                    await asyncio.sleep(POLL_SECONDS)
                else:  # said once by the outage; the deliveries wait in Postgres
                    await self._unlisten()
                    await self.deps.outages.until_back(store)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), POLL_SECONDS)

    async def _listen(self) -> None:
        """Keep a connection listening on CHANNEL (again, after it was lost)."""
        if self._listener is not None and not self._listener.is_closed():
            return
        url = self.deps.engine.url.render_as_string(hide_password=False)
        self._listener = await asyncpg.connect(plain_url(url), timeout=5)
        await self._listener.add_listener(CHANNEL, self._notified)

    def _notified(self, *_: object) -> None:
        self._wakeup.set()

    async def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        try:
            await asyncio.wait_for(listener.close(), 2)
        except Exception:  # a lost connection: nothing to say goodbye to
            listener.terminate()
