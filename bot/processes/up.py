"""Running the control plane in this process: the web app, the control worker, or both.

`openase serve` and `openase worker` run one of them against configured services;
`openase up` starts the embedded services it needs, migrates, and runs both in one event
loop. One supervisor owns SIGINT/SIGTERM for all of it, so a stop is always in order:
web (no new deliveries), worker (finish or requeue jobs), clients, then the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import redis.exceptions
import structlog
import uvicorn
from arq.worker import Worker
from pydantic import SecretStr

from bot.config.github_app import APP_FILE, stored_app
from bot.deps import Deps, build_deps
from bot.errors import ConfigError, OpenaseError
from bot.intake.relay import WebhookRelay
from bot.jobs import CONTROL_QUEUE
from bot.processes.app import create_app
from bot.processes.migrate import prepare_database
from bot.processes.worker import make_worker
from bot.registry import RegisteredApp
from bot.servers.outages import Backoff
from bot.servers.services import SECRET_FILE, EmbeddedServices, ServiceUrls, webhook_secret
from bot.settings import Settings
from runner.worker import RunnerConfig, serve_runner

log = structlog.get_logger(__name__)

# Seconds in-flight requests and jobs get to finish after a stop is asked for.
SHUTDOWN_GRACE = 10.0
# A worker that ended by itself is replaced after about 1 s, then 2, 4, ... at most a minute.
WORKER_RESTART_BACKOFF = Backoff(first=1.0, cap=60.0)
LISTEN_BACKLOG = 2048


class Shutdown:
    """SIGINT/SIGTERM: the first asks for a graceful stop, the second cuts the waits short."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.requested.is_set():
            log.warning("shutdown_forced", signal=sig.name)
            self.forced.set()
        else:
            log.info("shutdown_requested", signal=sig.name)
            self.requested.set()


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


def run(main: Callable[[Shutdown], Awaitable[int]]) -> int:
    """Run `main` on a fresh event loop (uvloop when installed) with signals wired up."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):  # optional: uvicorn[standard] brings it
        import uvloop

        loop_factory = uvloop.new_event_loop

    async def supervised() -> int:
        shutdown = Shutdown()
        shutdown.install(asyncio.get_running_loop())
        return await main(shutdown)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(supervised())


def listen(host: str, port: int) -> socket.socket:
    """Bind before anything else starts, so a taken port fails fast with a clear message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        # getaddrinfo errors (an unknown host name) carry negative codes os.strerror lacks.
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or exc
        raise ConfigError(
            f"cannot listen on {host}:{port} (OPENASE_HOST, OPENASE_PORT): {reason}"
        ) from None


def base_url(host: str, port: int) -> str:
    """A URL for this machine's browser: a wildcard bind is reached through loopback."""
    shown = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104  # compared, not bound
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


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
        await _first(
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
        await _first(asyncio.sleep(delay), shutdown.requested.wait())
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
        await _first(relay.stop(SHUTDOWN_GRACE), shutdown.forced.wait())
        await relay.stop(0)  # after a second signal: at once
    if server is not None:
        await _stop_web(server, tasks["web"], shutdown)
    if worker is not None:
        await _stop_worker(worker, tasks["worker"], shutdown)
    log.info("stopped")
    return 1 if crashed else 0


async def _first(*waits: Awaitable[Any], within: float | None = None) -> None:
    """Wait until the first of `waits` finishes (or `within` seconds pass); drop the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _stop_web(server: _Server, task: asyncio.Task[Any], shutdown: Shutdown) -> None:
    server.should_exit = True
    await _first(asyncio.wait({task}), shutdown.forced.wait())
    if not task.done():
        server.force_exit = True  # a second signal: drop open connections, do not wait
        await asyncio.wait({task})


async def _stop_worker(worker: Worker, task: asyncio.Task[Any], shutdown: Shutdown) -> None:
    worker.allow_pick_jobs = False
    running = [job for job in worker.tasks.values() if not job.done()]
    if running:
        log.info("waiting_for_jobs", count=len(running))
        await _first(asyncio.wait(running), shutdown.forced.wait(), within=SHUTDOWN_GRACE)
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


def resolve_webhook_secret(settings: Settings) -> tuple[Settings, str | None]:
    """Settings carrying a webhook secret, and the generated one to show (None if configured)."""
    if settings.github_webhook_secret is not None:
        return settings, None
    secret, path = webhook_secret(settings.data_dir)
    log.info("webhook_secret_loaded", path=str(path))
    return settings.model_copy(update={"github_webhook_secret": SecretStr(secret)}), secret


async def up(settings: Settings, shutdown: Shutdown) -> int:
    """`openase up`: embedded services as needed, migrations, web and worker together."""
    # Bound first: a taken port should not cost a database start and a migration.
    sock = listen(settings.host, settings.port)
    services = EmbeddedServices(settings)
    try:
        settings, generated_secret = resolve_webhook_secret(settings)
        urls = await asyncio.to_thread(services.start)
        if shutdown.requested.is_set():
            return 0
        log.info("migrating")
        seeded = await prepare_database(urls.database_url)
        if seeded:
            log.info("harness_store_seeded", versions=seeded)

        def banner(port: int | None) -> None:
            assert port is not None
            print(
                startup_banner(settings, base_url(settings.host, port), generated_secret),
                flush=True,
            )

        runner_stop = asyncio.Event()
        runner = asyncio.create_task(_local_runner(settings, urls.redis_url, runner_stop))
        try:
            return await run_control_plane(
                settings, urls, shutdown, web=True, worker=True, announce=banner, sock=sock
            )
        finally:
            runner_stop.set()
            await asyncio.wait({runner})
    finally:
        sock.close()
        await asyncio.to_thread(services.stop)


async def _local_runner(settings: Settings, redis_url: str, stop: asyncio.Event) -> None:
    """This machine's runner, as `openase runner --machine NAME` would run it."""
    machine = settings.machine or local_machine_name()
    config = RunnerConfig(
        machine=machine,
        redis_url=redis_url,
        workspace_root=settings.data_dir / "workspaces" / machine,
        max_runs=settings.runner_max_runs,
        drain_seconds=SHUTDOWN_GRACE,
        sandbox_read=settings.sandbox_read_paths(),
    )
    try:
        await serve_runner(config, stop)
    except Exception as error:  # the web app and worker go on without a local runner
        log.error("local_runner_stopped", error=repr(error))


def local_machine_name() -> str:
    """The host name, made safe for a queue name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", socket.gethostname()).strip("-._")
    return name[:63] or "local"


def startup_banner(settings: Settings, url: str, generated_secret: str | None) -> str:
    """What `up` prints once it serves: on stdout, between rules, apart from the log lines
    (stderr); the commands in it can be pasted as they are."""
    stored = _stored_app_or_none(settings)
    stored_in_use = stored is not None and settings.github_app_id == stored.id
    if generated_secret is not None:
        secret_source = (
            f"{generated_secret}\n{'':18}(generated; kept in {settings.data_dir / SECRET_FILE})"
        )
    elif (
        stored_in_use
        and stored is not None
        and settings.github_webhook_secret is not None
        and settings.github_webhook_secret.get_secret_value() == stored.webhook_secret
    ):
        secret_source = f"the registered App's (kept in {settings.data_dir / APP_FILE})"
    else:
        secret_source = "from OPENASE_GITHUB_WEBHOOK_SECRET"  # noqa: S105  # names a variable
    if settings.github_app_id is None:
        app = f"not configured: register it at {url}/setup"
    elif stored_in_use and stored is not None:
        app = f"{stored.slug} (id {stored.id}, registered on {url}/setup)"
    else:
        app = f"id {settings.github_app_id} (from OPENASE_GITHUB_APP_ID)"
    machine = settings.machine or local_machine_name()
    openase = openase_command()
    rule = "─" * 78
    lines = [
        "",
        rule,
        "OpenASE is up.",
        f"  web page        {url}/",
        f"  GitHub App      {app}",
        f"  webhook URL     {url}/webhooks/github",
        *(
            [f"  relay           {settings.webhook_proxy_url}"]
            if settings.webhook_proxy_url
            else []
        ),
        f"  health          {url}/healthz",
        f"  webhook secret  {secret_source}",
        f"  data dir        {settings.data_dir}",
        f"  local runner    {machine} (queue openase:runs:{machine})",
        "",
    ]
    if settings.github_app_id is None:
        lines += [
            "Next: register the GitHub App in one click (this machine's browser):",
            f"    {url}/setup",
        ]
    lines += [
        "From another terminal in this directory:",
        "  what is still missing, and how to fix it:",
        f"    {openase} doctor",
        "  the App's manifest by hand, its webhook at your public URL:",
        f"    {openase} app manifest --url URL",
        "GitHub must reach the webhook URL (or set OPENASE_WEBHOOK_PROXY_URL to a relay).",
        "Ctrl-C stops everything.",
        rule,
        "",
    ]
    return "\n".join(lines)


def _stored_app_or_none(settings: Settings) -> RegisteredApp | None:
    try:
        return stored_app(settings)
    except ConfigError:
        return None


def openase_command() -> str:
    """How to run `openase` from the shell that started this process: `openase` when that
    is what PATH finds, else the path it was started by (`.venv/bin/openase` after
    `make run`), else through this Python."""
    started = Path(sys.argv[0])
    on_path = shutil.which("openase")
    if (
        on_path is not None
        and started.name == "openase"
        and Path(on_path).resolve() == started.resolve()
    ):
        return "openase"
    if started.name == "openase" and started.exists():
        relative = os.path.relpath(started)
        return shlex.quote(relative if not relative.startswith("..") else str(started.resolve()))
    return f"{shlex.quote(sys.executable)} -m bot.processes.cli"
