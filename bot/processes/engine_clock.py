"""The engine's clock: its tick (bot/engine/jobs.py `engine_tick`, every `TICK_EVERY` s)
and the run events' recorder (bot/engine/runs/recorder.py), in a thread of the control
worker with an event loop and connections of its own.

On the worker's loop they waited behind its jobs: it runs up to 50 at once, and when 200
runs started or ended under `make bench-scale` a tick that needs a few milliseconds of
work took seconds (p99 3.6-5.2 s, up to 18 s), and the events it persisted trailed the
runners by as much (19 s). Here they wait only for their own round trips and the
interpreter's lock, which the jobs' thread gives up every `SWITCH_INTERVAL`.

The tick is still one at a time across workers (its Redis key), and the recorder one at a
time (its lease): every worker has a clock, and whichever holds them does the work. A
worker given a fixed engine (tests, `bench.engine`) keeps the tick among its arq crons,
with that engine; its clock then only records.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from typing import Any

import structlog

from bot.deps import build_deps
from bot.engine.commands.registry import Commands
from bot.engine.jobs import ENGINE_CTX_KEY, engine_tick
from bot.engine.runs.recorder import EventRecorder
from bot.processes.engine_slot import EngineSlot
from bot.processes.resilience import riding_out
from bot.settings import Settings

log = structlog.get_logger(__name__)

THREAD_NAME = "engine-clock"
TICK_EVERY = 3.0  # seconds; on the multiples of it (as the arq cron was), so workers agree
TICK_TIMEOUT = 120.0  # a tick still running then is cut short (and says so)
STOP_SECONDS = 15.0  # a stopping clock gets this long to finish its tick and close
# How long the jobs' thread may keep the interpreter while the clock's waits for it
# (CPython's default is 5 ms; a tick takes it back after each of its round trips).
SWITCH_INTERVAL = 0.001
_SETTLE_KEY = "outbox_on_settled"  # the clock performs no effects: the hook goes unused


class EngineClock:
    """Started and stopped with the control worker (`Alongside`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        database_url: str,
        redis_url: str,
        commands: Commands,
        tick: bool = True,
    ) -> None:
        self.settings = settings
        self.database_url = database_url
        self.redis_url = redis_url
        self.commands = commands
        self.tick = tick
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        sys.setswitchinterval(SWITCH_INTERVAL)
        self._started.clear()
        self._thread = threading.Thread(target=self._main, name=THREAD_NAME, daemon=True)
        self._thread.start()
        self._started.wait(STOP_SECONDS)  # its loop and stop event exist once this returns

    async def stop(self) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop has ended already
                loop.call_soon_threadsafe(stop.set)
        await asyncio.to_thread(thread.join, STOP_SECONDS)
        if thread.is_alive():  # a daemon thread: it ends with the process
            log.error("engine_clock_not_stopping")
        self._thread = None

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception:  # the worker goes on; its runs' events wait for another clock
            log.error("engine_clock_failed", exc_info=True)

    async def _run(self) -> None:
        stop = asyncio.Event()
        self._loop, self._stop = asyncio.get_running_loop(), stop
        self._started.set()
        deps = await build_deps(
            self.settings, database_url=self.database_url, redis_url=self.redis_url
        )
        deps.outages.quiet = True  # the worker's own says when a store is away
        try:
            ctx: dict[str, Any] = {"deps": deps}
            async with asyncio.TaskGroup() as clock:
                recorder = EventRecorder(deps.redis, deps.sessions, deps.outages)
                clock.create_task(recorder.run(stop))
                if self.tick:
                    ctx[ENGINE_CTX_KEY] = EngineSlot(
                        ctx, deps, self.commands, settle_key=_SETTLE_KEY
                    )
                    clock.create_task(_ticking(ctx, stop))
        finally:
            await deps.close()


async def _ticking(ctx: dict[str, Any], stop: asyncio.Event) -> None:
    tick = riding_out(engine_tick)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_EVERY - time.time() % TICK_EVERY)
        if stop.is_set():
            return
        began = time.monotonic()
        try:
            await asyncio.wait_for(tick(ctx), TICK_TIMEOUT)
        except TimeoutError:
            log.error("engine_tick_timed_out", seconds=round(time.monotonic() - began, 3))
        except Exception:  # a bug: said, and the next tick tries again
            log.error("engine_tick_failed", exc_info=True)
