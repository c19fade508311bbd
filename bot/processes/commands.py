"""What each `openase` command does once bot/processes/cli.py parsed it.

Every command imports what it needs when it runs, not when this module loads: `openase
--help`, `openase try` and `openase app manifest` then start without uvicorn, arq,
SQLAlchemy or pgserver (about a tenth of the time). Each function-level import below is
there for that reason alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shlex
import sys
from typing import TYPE_CHECKING

from adapters.errors import AdapterError, RateLimited
from bot.config.github_app import with_stored_app
from bot.config.manifest import github_manifest, load_app_yml
from bot.errors import ConfigError, OpenaseError
from bot.harness import cli as harness_cli
from bot.logging import configure_logging
from bot.processes import schedule_cli, supervised
from bot.servers.embedded import EmbeddedRedis
from bot.servers.services import (
    ServiceUrls,
    configured_urls,
    redis_dir,
    require_database_url,
    running_urls,
)
from bot.settings import Settings, load_settings

if TYPE_CHECKING:
    from bot.deps import Deps
    from bot.intake.backfill import SyncReport


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "app":
        return _app_manifest(args.url)

    if args.command == "try":
        # The run's own events are the output; only trouble is worth a log line.
        _configure_logging(level=logging.WARNING)
        return _try(args)
    if args.command in ("serve", "worker", "runner"):
        supervised.die_with_supervisor()  # started by `openase up`: go when it goes
    settings = load_settings()
    if args.command in ("harness", "skill"):
        return harness_cli.run(args, settings)
    if args.command == "runner":
        _configure_logging(process=supervised.process_name())
        return _runner(settings, args)
    # The App registered on the setup page, wherever the environment configures none.
    settings = with_stored_app(settings)
    if args.command == "up":
        _configure_logging(process="up")
        return _up(settings)
    if args.command == "serve" and settings.github_webhook_secret is None:
        raise ConfigError(
            "OPENASE_GITHUB_WEBHOOK_SECRET is not set: `serve` accepts only signed webhooks. Set "
            "it to the webhook secret of your GitHub App, or register the App on the setup page "
            "of `openase up` (/setup), which keeps it in the data dir."
        )
    if args.command in ("serve", "worker"):
        urls = configured_urls(settings)
        _configure_logging(process=supervised.process_name())
        return _serve(settings, urls, web=args.command == "serve")
    if args.command == "migrate":
        database_url = require_database_url(settings)
        _configure_logging()
        return _migrate(database_url)
    if args.command == "sync":
        urls = running_urls(settings)
        _configure_logging()
        return asyncio.run(_sync(settings, urls, args.repo))
    if args.command == "schedule":
        schedule_cli.check(args)
        urls = running_urls(settings)
        _configure_logging(level=logging.WARNING)
        return asyncio.run(schedule_cli.run(settings, urls, args))
    if args.command == "doctor":
        # The report is the output; log lines would only get in its way.
        _configure_logging(level=logging.ERROR)
        return asyncio.run(_doctor(settings))
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse allows no other


def _configure_logging(level: int = logging.INFO, process: str | None = None) -> None:
    configure_logging(level=level, process=process)
    # pgserver narrates every pg_ctl call and alembic every plugin it loads at INFO; their
    # warnings and errors are what matter.
    for chatty in ("pgserver", "alembic.runtime.plugins"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def _app_manifest(url: str | None) -> int:
    manifest = github_manifest(load_app_yml(), url)
    print(json.dumps(manifest, indent=2))
    if url is None:
        print(
            "openase: no --url given: homepage and webhook stay as in app.yml; pass the bot's "
            "public URL to point the App's webhook at it",
            file=sys.stderr,
        )
    return 0


def _up(settings: Settings) -> int:
    from bot.processes import lifecycle, up

    return lifecycle.run(lambda shutdown: up.up(settings, shutdown))


def _serve(settings: Settings, urls: ServiceUrls, *, web: bool) -> int:
    """`serve` (web app only) or `worker` (control worker only)."""
    from bot.processes import control_plane, lifecycle

    def announce(port: int | None) -> None:
        if port is not None:
            control_plane.log.info("listening", url=lifecycle.base_url(settings.host, port))

    # Under `openase up`, the socket it bound (and keeps for the next web process).
    sock = supervised.inherited_socket() if web else None
    return lifecycle.run(
        lambda shutdown: control_plane.run_control_plane(
            settings, urls, shutdown, web=web, worker=not web, announce=announce, sock=sock
        )
    )


def _runner(settings: Settings, args: argparse.Namespace) -> int:
    from redis.exceptions import RedisError  # start-up: see the module docstring

    from runner import worker
    from runner.priority import yield_cpu

    redis_url = settings.redis_url or EmbeddedRedis.running_url(redis_dir(settings))
    if redis_url is None:
        raise ConfigError(
            "OPENASE_REDIS_URL is not set, and no `openase up` is running with data dir "
            f"{settings.data_dir} (OPENASE_DATA_DIR): the runner needs the control plane's Redis"
        )
    root = args.workspace_root or settings.data_dir.expanduser() / "workspaces" / args.machine
    config = worker.RunnerConfig(
        machine=args.machine,
        redis_url=redis_url,
        workspace_root=root.expanduser().resolve(),
        labels=args.labels,
        max_runs=args.max_runs,
        drain_seconds=args.drain_seconds,
        sandbox_read=tuple(path.expanduser().resolve() for path in args.sandbox_read),
    )
    yield_cpu(args.nice)  # before the runner starts a thread or an agent: they inherit it
    try:
        return worker.run(config)
    except (OSError, RedisError) as exc:
        raise OpenaseError(f"cannot connect to Redis (OPENASE_REDIS_URL): {exc}") from None


def _try(args: argparse.Namespace) -> int:
    from bot.processes import trial

    options = trial.TrialOptions(
        repo=args.repo,
        agent=args.agent,
        task=args.task,
        model=args.model,
        argv=shlex.split(args.argv) if args.argv else [],
        agent_bin=args.agent_bin,
        env=args.env,
        harness=args.harness,
        skills=args.skill,
        hooks=args.hook,
        wall_seconds=args.wall_seconds,
        stall_seconds=args.stall_seconds,
        budget_usd=args.budget_usd,
        max_turns=args.max_turns,
        push=not args.no_push,
        workspace_root=args.workspace_root,
        json=args.json,
        sandbox=not args.no_sandbox,
        allow=args.allow,
        sandbox_read=args.sandbox_read,
    )
    result = asyncio.run(trial.run_trial(options))
    if args.json:
        print(json.dumps(result.to_wire(), indent=2))
    else:
        print(trial.summary(result))
    return 0 if result.succeeded else 1


def _migrate(database_url: str) -> int:
    from bot.processes.migrate import prepare_database

    seeded = asyncio.run(prepare_database(database_url))
    print("openase: database migrated to the newest schema")
    if seeded:
        print(f"openase: harness store seeded with {seeded} built-in harnesses and skills")
    return 0


async def _sync(settings: Settings, urls: ServiceUrls, full_name: str) -> int:
    from bot.deps import build_deps
    from bot.intake import backfill

    deps = await build_deps(settings, database_url=urls.database_url, redis_url=urls.redis_url)
    tracker, colon, key = full_name.partition(":")
    if colon:
        return await _sync_tracker(settings, deps, tracker, key)
    try:
        report = await backfill.sync_repository(deps, full_name)
    finally:
        await deps.close()
    print(format_report(report))
    return 0


async def _sync_tracker(settings: Settings, deps: Deps, source: str, key: str) -> int:
    from bot.config.control import load_control_config
    from bot.intake.tracker_backfill import sync_tracker

    try:
        report = await sync_tracker(
            deps, deps.trackers(), load_control_config(settings.config), source, key
        )
    except RateLimited as exc:
        print(f"openase: {source} is rate-limiting us: {exc}", file=sys.stderr)
        return 1
    except AdapterError as exc:
        print(f"openase: {source} sync failed: {exc}", file=sys.stderr)
        return 1
    finally:
        await deps.close()  # and with it the tracker clients
    print(f"openase: synced {source}:{key}: {report.issues} issues ({report.pages} pages)")
    return 0


def format_report(report: SyncReport) -> str:
    return (
        f"openase: synced {report.repository}: {report.issues} issues, "
        f"{report.pull_requests} pull requests ({report.pages_fetched} pages fetched, "
        f"{report.pages_unchanged} unchanged since the last sync)"
    )


async def _doctor(settings: Settings) -> int:
    from bot.api.checklist import blocked, checklist
    from bot.deps import build_deps

    deps = None
    with contextlib.suppress(ConfigError):  # no URLs: the checklist says what is missing
        urls = running_urls(settings)
        deps = await build_deps(settings, database_url=urls.database_url, redis_url=urls.redis_url)
    try:
        checks = await checklist(settings, deps)
    finally:
        if deps is not None:
            await deps.close()
    width = max(len(check.name) for check in checks)
    print("openase doctor: what this deployment needs")
    for check in checks:
        mark = "ok  " if check.ok else ("FAIL" if check.blocking else "warn")
        print(f"  {mark}  {check.name.ljust(width)}  {check.detail}")
        if not check.ok and check.fix:
            print(f"        {' ' * width}  fix: {check.fix}")
    if blocked(checks):
        print("openase doctor: something above stops tickets from being worked on (FAIL)")
        return 1
    print("openase doctor: ready")
    return 0
