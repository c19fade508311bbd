"""The `openase` command line: one entry point for every process of the control plane."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import re
import sys
from collections.abc import Sequence
from typing import Any

from bot.errors import ConfigError, OpenaseError
from bot.settings import Settings

# GitHub's rules: owner 1-39 alphanumerics or single hyphens, repository name up to 100
# characters of letters, digits, '.', '-', '_'.
_REPO = re.compile(
    r"^(?P<owner>[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38})/(?P<name>[A-Za-z0-9._-]{1,100})$"
)

DESCRIPTION = """\
OpenASE: a GitHub App that mirrors issues into Postgres and drives them through a workflow.

Settings come from OPENASE_* environment variables (see README.md); a malformed one stops
the command with a message naming it (exit status 2)."""

EPILOG = """\
local use:   openase up                 (embedded Postgres and Redis unless URLs are set)
production:  openase migrate; openase serve; openase worker
             (need OPENASE_DATABASE_URL and OPENASE_REDIS_URL)"""


def repository(value: str) -> str:
    """argparse type for OWNER/REPO."""
    match = _REPO.match(value)
    if match is None or match["name"] in (".", ".."):
        raise argparse.ArgumentTypeError(
            f"expected OWNER/REPO (for example octocat/hello-world), got {value!r}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openase",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "up",
        help="web app and control worker in one process, for one machine",
        description=(
            "Run the web app and the control worker in one process. Without "
            "OPENASE_DATABASE_URL / OPENASE_REDIS_URL, start embedded PostgreSQL and Redis "
            "under OPENASE_DATA_DIR (default ~/.local/share/openase). Migrates, then serves on "
            "OPENASE_HOST:OPENASE_PORT (default 127.0.0.1:2080). Without "
            "OPENASE_GITHUB_WEBHOOK_SECRET, generates one, keeps it in the data dir and prints it."
        ),
    )
    commands.add_parser(
        "serve",
        help="web app only: webhooks, JSON API, /healthz, /metrics",
        description=(
            "Serve the web app (stateless; run as many as you like). Needs OPENASE_DATABASE_URL, "
            "OPENASE_REDIS_URL and OPENASE_GITHUB_WEBHOOK_SECRET."
        ),
    )
    commands.add_parser(
        "worker",
        help="control worker only: ingest deliveries, backfill, sweeps",
        description="Run the arq control worker. Needs OPENASE_DATABASE_URL and OPENASE_REDIS_URL.",
    )
    commands.add_parser(
        "migrate",
        help="apply database migrations (alembic upgrade head)",
        description="Migrate the database to the newest schema. Needs OPENASE_DATABASE_URL.",
    )
    sync = commands.add_parser(
        "sync",
        help="backfill one repository's open issues and pull requests into the mirror",
        description=(
            "Page through a repository's open issues and pull requests with the GitHub API "
            "(needs the App's OPENASE_GITHUB_APP_ID and private key, and the App installed on "
            "the repository). Uses OPENASE_DATABASE_URL / OPENASE_REDIS_URL, or else the "
            "embedded services of an `openase up` running with the same OPENASE_DATA_DIR."
        ),
    )
    sync.add_argument("repo", metavar="OWNER/REPO", type=repository)
    app = commands.add_parser("app", help="GitHub App helpers", description="GitHub App helpers.")
    app_commands = app.add_subparsers(dest="app_command", metavar="COMMAND", required=True)
    manifest = app_commands.add_parser(
        "manifest",
        help="print app.yml as the JSON of GitHub's App manifest flow",
        description=(
            "Print the GitHub App manifest (app.yml) as JSON for GitHub's manifest flow. With "
            "--url, the homepage is URL/ and the webhook URL/webhooks/github."
        ),
    )
    manifest.add_argument("--url", metavar="BASE_URL", help="public base URL of the bot")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"openase: {exc}", file=sys.stderr)
        return 2
    except OpenaseError as exc:
        print(f"openase: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "app":
        return _app_manifest(args.url)

    from bot.settings import load_settings

    settings = load_settings()
    if args.command == "serve" and settings.github_webhook_secret is None:
        raise ConfigError(
            "OPENASE_GITHUB_WEBHOOK_SECRET is not set: `serve` accepts only signed webhooks. Set "
            "it to the webhook secret of your GitHub App (`openase up` generates one for you)."
        )
    _configure_logging()
    if args.command == "up":
        return _up(settings)
    if args.command in ("serve", "worker"):
        return _serve(settings, web=args.command == "serve", worker=args.command == "worker")
    if args.command == "migrate":
        return _migrate(settings)
    if args.command == "sync":
        return asyncio.run(_sync(settings, args.repo))
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse allows no other


def _configure_logging() -> None:
    from bot.logging import configure_logging

    configure_logging()
    # pgserver narrates every pg_ctl call at INFO; its warnings and errors are what matter.
    logging.getLogger("pgserver").setLevel(logging.WARNING)


def _app_manifest(url: str | None) -> int:
    from bot.manifest import github_manifest, load_app_yml

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
    from bot import up

    return up.run(lambda shutdown: up.up(settings, shutdown))


def _serve(settings: Settings, *, web: bool, worker: bool) -> int:
    from bot import up
    from bot.services import configured_urls

    urls = configured_urls(settings)

    def announce(port: int | None) -> None:
        if port is not None:
            up.log.info("listening", url=up.base_url(settings.host, port))

    return up.run(
        lambda shutdown: up.run_control_plane(
            settings, urls, shutdown, web=web, worker=worker, announce=announce
        )
    )


def _migrate(settings: Settings) -> int:
    from bot.migrate import upgrade
    from bot.services import require_database_url

    upgrade(require_database_url(settings))
    print("openase: database migrated to the newest schema")
    return 0


async def _sync(settings: Settings, full_name: str) -> int:
    from bot import backfill
    from bot.deps import build_deps
    from bot.services import running_urls

    urls = running_urls(settings)
    deps = await build_deps(settings, database_url=urls.database_url, redis_url=urls.redis_url)
    try:
        report = await backfill.sync_repository(settings, deps, full_name)
    finally:
        await deps.close()
    print(format_report(report))
    return 0


def format_report(report: Any) -> str:
    """A sync report for a terminal: JSON for structured reports, else its own text."""
    if hasattr(report, "model_dump_json"):
        return str(report.model_dump_json(indent=2))
    if dataclasses.is_dataclass(report) and not isinstance(report, type):
        return json.dumps(dataclasses.asdict(report), indent=2, default=str)
    return str(report)


if __name__ == "__main__":
    sys.exit(main())
