"""The web app and/or the control worker in this process: `openase serve`, `openase worker`.

Each owns SIGINT/SIGTERM for all it runs, so a stop is always in order: the web app (no
new deliveries), then the worker (finish or requeue jobs), then the clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import redis.exceptions
import structlog
import uvicorn
from arq.worker import Worker

from bot.deps import Deps, build_deps
from bot.errors import OpenaseError
from bot.intake.relay import WebhookRelay
from bot.jobs import CONTROL_QUEUE
from bot.processes.app import create_app
from bot.processes.lifecycle import SHUTDOWN_GRACE, Shutdown, first_of, listen
from bot.processes.worker import make_worker
from bot.servers.outages import Backoff
from bot.servers.services import ServiceUrls
from bot.settings import Settings

log = structlog.get_logger(__name__)

# A worker that ended by itself is replaced after about 1 s, then 2, 4, ... at most a minute.
WORKER_RESTART_BACKOFF = Backoff(first=1.0, cap=60.0)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling.

    uvicorn would take SIGINT/SIGTERM for itself and re-raise them after its own shutdown,
    killing the worker and the embedded servers halfway through theirs.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_done = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.startup_done.set()  # `started` tells whether it worked


_SETTING_OF = {"postgres": "OPENASE_DATABASE_URL", "redis": "OPENASE_REDIS_URL"}


async def connect(settings: Settings, urls: ServiceUrls) -> Deps:
    """The process's clients. A store that does not answer yet is waited for (said once in
    the log, naming its setting); one that refuses us (a wrong password, no such database)
    is a setting to fix, said at once."""
    try:
        deps = await build_deps(settings, database_url=urls.database_url, redis_url=urls.redis_url)
    except ValueError as exc:  # redis-py on a URL that is not one
        raise OpenaseError(f"OPENASE_REDIS_URL: {exc}") from None
    refusals = await deps.outages.check()
    if refusals:
        await deps.close()
        store, error = next(iter(refusals.items()))
        raise OpenaseError(f"{store} refused the connection ({_SETTING_OF[store]}): {error}")
    for store in deps.outages.away():
        log.warning("waiting_for_store", store=store, setting=_SETTING_OF[store])
    return deps


async def run_control_plane(
    settings: Settings,
    urls: ServiceUrls,
    shutdown: Shutdown,
    *,
    web: bool,
    worker: bool,
    announce: Callable[[int | None], None] = lambda port: None,
    sock: socket.socket | None = None,
) -> int:
    """Serve the web app and/or run the control worker until a signal; 0 on a clean stop.

    `announce` gets the bound port once the web app listens (None without one); `sock` is
    a listening socket bound earlier by the caller.
    """
    if web and sock is None:
        sock = listen(settings.host, settings.port)
    deps = await connect(settings, urls)
    try:
        return await _supervise(settings, urls, deps, shutdown, sock, worker, announce)
    finally:
        await deps.close()


async def _supervise(
    settings: Settings,
    urls: ServiceUrls,
    deps: Deps,
    shutdown: Shutdown,
    sock: socket.socket | None,
    with_worker: bool,
    announce: Callable[[int | None], None],
) -> int:
    tasks: dict[str, asyncio.Task[Any]] = {}
    server: _Server | None = None
    worker: Worker | None = None
    relay: WebhookRelay | None = None
    if sock is not None:
        app = create_app(
            settings, database_url=urls.database_url, redis_url=urls.redis_url, deps=deps
        )
        config = uvicorn.Config(
            app,
            log_config=None,  # keep our structlog pipeline
            lifespan="on",
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
            server_header=False,
        )
        server = _Server(config)
        tasks["web"] = asyncio.create_task(server.serve(sockets=[sock]), name="web")
    if with_worker:
        worker = make_worker(settings, redis_url=urls.redis_url, deps=deps)
        tasks["worker"] = asyncio.create_task(worker.async_run(), name="worker")

    if server is not None and sock is not None:
        await first_of(
            server.startup_done.wait(), shutdown.requested.wait(), asyncio.wait({tasks["web"]})
        )
        if server.started:
            announce(sock.getsockname()[1])
            if settings.webhook_proxy_url is not None:
                relay = WebhookRelay(deps, str(settings.webhook_proxy_url))
                tasks["relay"] = relay.start()
    else:
        log.info("worker_running", queue=CONTROL_QUEUE)
        announce(None)

    stop = asyncio.create_task(shutdown.requested.wait())
    restarts = 0
    while True:
        done, _ = await asyncio.wait({stop, *tasks.values()}, return_when=asyncio.FIRST_COMPLETED)
        if worker is None or tasks["worker"] not in done or stop in done or len(done) > 1:
            break
        # The worker ended by itself (outages it waits out; this is a bug it met): what it
        # was doing is in Postgres, so a new one takes over, after a pause that grows if it
        # keeps ending. The web app is not stopped for it.
        failed = tasks["worker"]
        error = None if failed.cancelled() else failed.exception()
        delay = WORKER_RESTART_BACKOFF.delay(restarts)
        log.error("worker_restarting", error=repr(error), restarts=restarts, in_seconds=delay)
        restarts += 1
        with contextlib.suppress(Exception):
            await worker.close()
        await first_of(asyncio.sleep(delay), shutdown.requested.wait())
        worker = make_worker(settings, redis_url=urls.redis_url, deps=deps)
        tasks["worker"] = asyncio.create_task(worker.async_run(), name="worker")
    stop.cancel()
    crashed = [name for name, task in tasks.items() if task in done]
    for name in crashed:
        task = tasks[name]
        error = None if task.cancelled() else task.exception()
        log.error("stopped_unexpectedly", component=name, error=repr(error))

    # The relay and the web first, so no delivery arrives that the worker would not see;
    # then the worker. A relayed delivery in hand gets the grace to be stored.
    if relay is not None:
        await first_of(relay.stop(SHUTDOWN_GRACE), shutdown.forced.wait())
        await relay.stop(0)  # after a second signal: at once
    if server is not None:
        await _stop_web(server, tasks["web"], shutdown)
    if worker is not None:
        await _stop_worker(worker, tasks["worker"], shutdown)
    log.info("stopped")
    return 1 if crashed else 0


async def _stop_web(server: _Server, task: asyncio.Task[Any], shutdown: Shutdown) -> None:
    server.should_exit = True
    await first_of(asyncio.wait({task}), shutdown.forced.wait())
    if not task.done():
        server.force_exit = True  # a second signal: drop open connections, do not wait
        await asyncio.wait({task})


async def _stop_worker(worker: Worker, task: asyncio.Task[Any], shutdown: Shutdown) -> None:
    worker.allow_pick_jobs = False
    running = [job for job in worker.tasks.values() if not job.done()]
    if running:
        log.info("waiting_for_jobs", count=len(running))
        await first_of(asyncio.wait(running), shutdown.forced.wait(), within=SHUTDOWN_GRACE)
    # The poll loop stops first: closing the pool under it would end it with an error.
    task.cancel()
    await asyncio.wait({task}, timeout=SHUTDOWN_GRACE)
    if not task.done():
        log.error("worker_not_stopping")  # closing below stops what it waits on
    elif not task.cancelled() and task.exception() is not None:
        log.warning("worker_stopped_with_error", error=repr(task.exception()))
    try:
        # Cancels what is still running (arq queues it again) and closes the shared pool.
        await worker.close()
    except (OSError, redis.exceptions.RedisError) as exc:
        log.warning("worker_close_failed", error=repr(exc))
