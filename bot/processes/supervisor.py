"""`openase up`'s children: the web app, the control worker and the runner, each a process
of its own (`openase serve|worker|runner`), kept running and stopped in order.

Apart, a webhook's answer no longer waits on ingest in the same event loop, and the three
use both cores of a small machine. A child that ends by itself (a crash, the OOM killer, a
SIGKILL) is logged and started again after a pause that grows while it keeps ending
(1 s, 2 s, 4 s, ... at most a minute; afresh once it ran a minute); the others go on. What
it was doing is in Postgres (the worker's jobs, the web app's deliveries) or handed back
(the runner's runs), so the new one takes over.

The children run in sessions of their own, so a terminal's Ctrl-C reaches the supervisor
only, which stops them in order: the web processes first (no new deliveries), then the
worker, then the runner, each with SIGTERM and the grace it takes; a second signal sends a
second SIGTERM (serve and worker then cut their waits short) and, soon after, SIGKILL.
A killed supervisor takes its children with it (bot/processes/supervised.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from bot.processes.lifecycle import Shutdown, first_of
from bot.servers.outages import Backoff

log = structlog.get_logger(__name__)

# A child that ended by itself is started again after about 1 s, then 2, 4, ... at most a
# minute; one that ran for STABLE_SECONDS before it ended starts that count afresh.
RESTART_BACKOFF = Backoff(first=1.0, cap=60.0)
STABLE_SECONDS = 60.0
# After a second signal, how long a child gets to cut its stop short before SIGKILL.
FORCED_KILL_SECONDS = 3.0
READY_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class ChildSpec:
    """One supervised process: its command line (no secrets: `ps` shows it), its
    environment (where URLs and secrets go) and when it stops (lower `tier` first)."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    tier: int
    pass_fds: tuple[int, ...] = ()


@dataclass(eq=False)
class Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    restarts: int = 0
    keeper: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def send(self, sig: signal.Signals) -> None:
        if self.process is not None and self.alive:
            with contextlib.suppress(ProcessLookupError):  # ended since we looked
                self.process.send_signal(sig)


def describe(returncode: int) -> str:
    """`exit 1`, or `killed by SIGKILL`."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


class Supervisor:
    """Starts `specs`, keeps them running until a signal, then stops them tier by tier."""

    def __init__(self, specs: Sequence[ChildSpec], *, stop_seconds: float) -> None:
        self.children = [Child(spec) for spec in specs]
        # How long a child may take over a graceful stop before it is killed.
        self.stop_seconds = stop_seconds
        self._stopping = asyncio.Event()
        self._ready = False
        self._failed_early = asyncio.Event()

    async def run(
        self, shutdown: Shutdown, address: tuple[str, int], announce: Callable[[], None]
    ) -> int:
        """0 after a stop asked for by a signal; 1 when a child ended before the web app
        first answered on `address` (its own message says why)."""
        for child in self.children:
            child.keeper = asyncio.create_task(self._keep(child), name=f"keep-{child.spec.name}")
        answering = asyncio.create_task(_answering(*address))
        await first_of(answering, shutdown.requested.wait(), self._failed_early.wait())
        status = 0
        if answering.done() and not answering.cancelled() and answering.exception() is None:
            self._ready = True
            announce()
            keepers = asyncio.wait(self._keepers(), return_when=asyncio.FIRST_COMPLETED)
            await first_of(shutdown.requested.wait(), keepers)  # keepers end on a bug only
        elif self._failed_early.is_set():
            status = 1
        for child in self.children:  # a keeper that failed is a bug: say it, stop the rest
            if child.keeper is not None and child.keeper.done() and not child.keeper.cancelled():
                error = child.keeper.exception()
                if error is not None:
                    log.error("supervision_failed", child=child.spec.name, error=repr(error))
                    status = 1
        await self._stop(shutdown)
        return status

    def _keepers(self) -> list[asyncio.Task[None]]:
        return [child.keeper for child in self.children if child.keeper is not None]

    async def _keep(self, child: Child) -> None:
        """Run `child` until the stop, starting it again whenever it ends by itself."""
        spec = child.spec
        while not self._stopping.is_set():
            child.started = time.monotonic()
            try:
                process = await asyncio.create_subprocess_exec(
                    *spec.argv,
                    env=dict(spec.env),
                    pass_fds=spec.pass_fds,
                    stdin=subprocess.DEVNULL,
                    # Out of the terminal's process group: Ctrl-C reaches the supervisor
                    # alone, which stops the children in order.
                    start_new_session=True,
                )
            except OSError as error:
                log.error("process_not_started", child=spec.name, error=repr(error))
                returncode = None
            else:
                child.process = process
                log.info("process_started", child=spec.name, pid=process.pid)
                if self._stopping.is_set():  # the stop began while it was being started
                    child.send(signal.SIGTERM)
                returncode = await process.wait()
                if self._stopping.is_set():
                    log.info("process_stopped", child=spec.name, status=describe(returncode))
                    return
            if not self._ready:
                log.error(
                    "process_ended_at_start",
                    child=spec.name,
                    status=None if returncode is None else describe(returncode),
                )
                self._failed_early.set()
                return
            if time.monotonic() - child.started >= STABLE_SECONDS:
                child.restarts = 0
            delay = RESTART_BACKOFF.delay(child.restarts)
            log.error(
                "process_ended",
                child=spec.name,
                pid=None if child.process is None else child.process.pid,
                status=None if returncode is None else describe(returncode),
                restarts=child.restarts,
                restart_in_seconds=round(delay, 1),
            )
            child.restarts += 1
            await first_of(asyncio.sleep(delay), self._stopping.wait())

    async def _stop(self, shutdown: Shutdown) -> None:
        self._stopping.set()
        for tier in sorted({child.spec.tier for child in self.children}):
            await asyncio.gather(
                *(self._stop_child(c, shutdown) for c in self.children if c.spec.tier == tier)
            )
        log.info("stopped")

    async def _stop_child(self, child: Child, shutdown: Shutdown) -> None:
        keeper = child.keeper
        if keeper is None or keeper.done():
            return
        child.send(signal.SIGTERM)
        await first_of(asyncio.wait({keeper}), shutdown.forced.wait(), within=self.stop_seconds)
        if keeper.done():
            return
        if shutdown.forced.is_set():
            child.send(signal.SIGTERM)  # a second one: serve and worker stop waiting
            await first_of(asyncio.wait({keeper}), within=FORCED_KILL_SECONDS)
        else:
            log.error("process_not_stopping", child=child.spec.name, seconds=self.stop_seconds)
        if not keeper.done():
            child.send(signal.SIGKILL)
            await asyncio.wait({keeper})


async def _answering(host: str, port: int) -> None:
    """Until the web app answers GET /healthz (any status: it runs; the body says how)."""
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request.encode())
                if (await reader.readline()).startswith(b"HTTP/"):
                    return
            finally:
                writer.close()
        except OSError:
            pass
        await asyncio.sleep(READY_POLL_SECONDS)
