"""Persisting open runs' events as they arrive, beside the engine's tick (issue #18).

The tick read every open run's stream once every 3 s and stored what it found, so the
persisted events trailed the runners by a tick at best, and by the tick's whole length
when the worker was busy (19 s behind with 200 runs under `make bench-scale`). The
recorder instead waits on all the open runs' streams at once (one blocking XREAD), and
stores what comes in one transaction at most every `PAUSE_SECONDS`, so events are
persisted within about a second of being written, in batches rather than a transaction an
entry.

One recorder records at a time across the control workers: it holds a Redis lease
(`RECORDER_KEY`), renewed as it goes; a worker that dies frees it within `LEASE_MS`, and
another's recorder takes over. The tick leaves the streams to a recorder holding the lease
(`recorder_live`), and reads them itself when none does (Redis just came back, every
recorder stopped): the tick stays the safety net, the recorder the fast way.

In a control worker it runs with the tick on the engine's clock, a thread of its own
(bot/processes/engine_clock.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.engine.laps import Laps
from bot.engine.runs.events import READ_BATCH, StreamRead, store_batch
from bot.engine.runs.exclusive import RELEASE_IF_MINE, RENEW_IF_MINE
from bot.servers.outages import Outages
from bot.tables.workflow import Run, RunEventCursor, RunState
from harness_store.db import reading
from runner.contract import run_events_stream

log = structlog.get_logger(__name__)

RECORDER_KEY = "openase:run_recorder"  # the lease of the recorder that is recording
LEASE_MS = 10_000  # a recorder that died frees the lease this long after its last renewal
BLOCK_MS = 1_000  # how long one XREAD waits for a new entry (< the client's 5 s timeout)
PAUSE_SECONDS = 0.5  # at least this between two stores: a batch, not a transaction an entry
REFRESH_SECONDS = 1.0  # the open runs are looked up again this often
SLOW_STEP_SECONDS = 1.0  # a step this long is logged, with its slowest parts
RETRY_SECONDS = 1.0  # after a failure (a store away, a bug): try again after this


async def recorder_live(redis: Redis) -> bool:
    """Whether a recorder holds the lease (and so records the open runs' events)."""
    return bool(await redis.exists(RECORDER_KEY))


def _entry_order(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


class EventRecorder:
    """Records the open runs' events until `stop` (see the module docstring)."""

    def __init__(
        self, redis: Redis, sessions: async_sessionmaker[AsyncSession], outages: Outages
    ) -> None:
        self.redis = redis
        self.sessions = sessions
        self.outages = outages  # says when a store is away, once (and watches for it)
        self.token = secrets.token_hex(8)
        self.positions: dict[str, str] = {}  # open run -> its last entry persisted ("0-0")
        self.stored = 0  # events stored by this recorder (tests, logs)
        self._holding = False
        self._refreshed = -REFRESH_SECONDS

    async def run(self, stop: asyncio.Event) -> None:
        """Record while holding the lease; wait for it while another recorder holds it."""
        failing = False
        try:
            while not stop.is_set():
                try:
                    await self.step()
                    failing = False
                except Exception as error:
                    # A store away is said once by the outages (and the events wait in the
                    # streams); a bug once per spell, and tried again rather than ended.
                    if self.outages.noticed(error) is None and not failing:
                        log.error("run_recorder_failed", exc_info=True)
                        failing = True
                    await _wait(stop, RETRY_SECONDS)
        finally:
            await self._release()

    async def step(self) -> int:
        """Hold (or wait for) the lease, and record what the open runs' streams have new;
        how many events were stored."""
        laps = Laps()
        if not await self._hold():
            await asyncio.sleep(REFRESH_SECONDS)
            return 0
        laps.lap("lease")
        if laps.last - self._refreshed >= REFRESH_SECONDS:
            await self._refresh()
            self._refreshed = laps.last
            laps.lap("open runs")
        if not self.positions:
            await asyncio.sleep(REFRESH_SECONDS)
            return 0
        stored = await self._record(laps)
        # Waiting for entries is no slowness (up to BLOCK_MS when the runs are quiet).
        read = laps.seconds.get("read", 0.0)
        if laps.total - read >= SLOW_STEP_SECONDS or read >= BLOCK_MS / 1000 + SLOW_STEP_SECONDS:
            log.info(
                "run_recorder_slow",
                seconds=round(laps.total, 3),
                stored=stored,
                slowest=laps.slowest(),
            )
        # Entries keep coming from 200 runs at once: gather them for a moment rather than
        # store each as it comes (a transaction an entry), but never longer than that.
        await asyncio.sleep(max(0.0, PAUSE_SECONDS - laps.total))
        return stored

    async def _hold(self) -> bool:
        """Whether this recorder holds the lease now: still its own (renewed, also after a
        failed step, whose lease may not have run out), or free (taken)."""
        renewed = await self.redis.register_script(RENEW_IF_MINE)(
            keys=[RECORDER_KEY], args=[self.token, LEASE_MS]
        )
        if renewed:
            self._holding = True
            return True
        self._holding = bool(await self.redis.set(RECORDER_KEY, self.token, nx=True, px=LEASE_MS))
        if self._holding:
            log.info("run_recorder_recording")
            self.positions.clear()  # another recorder may have moved the cursors meanwhile
            self._refreshed = -REFRESH_SECONDS
        return self._holding

    async def _release(self) -> None:
        if self._holding:
            with contextlib.suppress(RedisError, OSError):  # else it expires by itself
                await self.redis.register_script(RELEASE_IF_MINE)(
                    keys=[RECORDER_KEY], args=[self.token]
                )
            self._holding = False

    async def _refresh(self) -> None:
        """The open runs, each read on from its stored cursor, or from where this recorder
        got to if that is further (the cursor is moved in the same transaction as the
        events are stored, so a run's result taken in meanwhile may have moved it on)."""
        async with reading(self.sessions) as session:
            rows = (
                await session.execute(
                    select(Run.id, RunEventCursor.entry_id)
                    .outerjoin(RunEventCursor, RunEventCursor.run_id == Run.id)
                    .where(Run.state.in_((RunState.QUEUED, RunState.RUNNING)))
                )
            ).all()
        positions = {}
        for run_id, cursor in rows:
            known = self.positions.get(run_id, "0-0")
            stored = cursor or "0-0"
            positions[run_id] = max(known, stored, key=_entry_order)
        self.positions = positions

    async def _record(self, laps: Laps) -> int:
        streams = {
            run_events_stream(run_id): position for run_id, position in self.positions.items()
        }
        answer = await self.redis.xread(streams, count=READ_BATCH, block=BLOCK_MS)  # type: ignore[arg-type]  # redis-py wants str | bytes keys, a dict of str
        reads = _reads(answer, self.positions)
        laps.lap("read")
        if not reads:
            return 0
        stored = await store_batch(self.sessions, reads, skip_held=True)
        laps.lap("store")
        for read in reads:
            if read.run_id not in stored.held:  # else read again next time
                self.positions[read.run_id] = read.last_entry
        self.stored += stored.inserted
        return stored.inserted


def _reads(answer: object, positions: dict[str, str]) -> list[StreamRead]:
    """XREAD's answer as each run's read (runs no longer open are left out)."""
    by_stream = {run_events_stream(run_id): run_id for run_id in positions}
    reads = []
    for stream, entries in answer or []:  # type: ignore[attr-defined]  # redis-py returns a list of [stream, entries]
        name = stream.decode() if isinstance(stream, bytes) else str(stream)
        run_id = by_stream.get(name)
        if run_id is not None and entries:
            reads.append(StreamRead(run_id, list(entries)))
    return reads


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
