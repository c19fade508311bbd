"""`openase schedule list|pause|resume|run`: scheduled tickets (bot/engine/schedules.py) of a
repository (`--repo`), a Linear team (`--team`) or a Jira project (`--project`), from the
command line.

It reads each repository's `.github/openase.yml` as the worker does (the GitHub App's
credentials), the teams' and projects' schedules from the control-plane config, and keeps
pauses in PostgreSQL (the URLs, or a running `openase up`), so a
pause holds across restarts and every worker honours it. `run` decides the issue at once;
a worker's outbox opens it. Heavy imports wait until a command runs (bot/processes/
commands.py says why).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from bot.errors import ConfigError, ConfigUnavailable

if TYPE_CHECKING:
    from bot.deps import Deps
    from bot.engine.context import Engine
    from bot.servers.services import ServiceUrls
    from bot.settings import Settings

ACTIONS = ("list", "pause", "resume", "run")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schedule = commands.add_parser(
        "schedule",
        help="list, pause, resume or run scheduled tickets",
        description=(
            "Scheduled tickets (`schedules:` in .github/openase.yml, and under Linear teams "
            "and Jira projects in the control-plane config). `list` shows each "
            "schedule with its next run; `pause NAME` and `resume NAME` stop and restart one "
            "(kept in PostgreSQL); `run NAME` files its issue now. Needs the GitHub App "
            "(OPENASE_GITHUB_APP_ID and key) and OPENASE_DATABASE_URL / OPENASE_REDIS_URL, "
            "or a running `openase up` with the same OPENASE_DATA_DIR."
        ),
    )
    schedule.add_argument("action", choices=ACTIONS)
    schedule.add_argument("name", nargs="?", help="the schedule (pause, resume, run)")
    owner = schedule.add_mutually_exclusive_group()
    owner.add_argument("--repo", metavar="OWNER/NAME", help="a repository's schedule")
    owner.add_argument("--team", metavar="KEY", help="a Linear team's schedule (ENG)")
    owner.add_argument("--project", metavar="KEY", help="a Jira project's schedule (PROJ)")


def where(args: argparse.Namespace) -> str | None:
    """Whose schedules: OWNER/NAME, `linear:KEY` or `jira:KEY` (None: everyone's)."""
    if args.team is not None:
        return f"linear:{args.team}"
    if args.project is not None:
        return f"jira:{args.project}"
    return args.repo if isinstance(args.repo, str) else None


def check(args: argparse.Namespace) -> None:
    """Refuse what argparse cannot: a NAME and whose schedule where the action needs them."""
    if args.action != "list" and (args.name is None or where(args) is None):
        raise ConfigError(
            f"`openase schedule {args.action}` needs a NAME and --repo OWNER/NAME, "
            "--team KEY (Linear) or --project KEY (Jira)"
        )


async def run(settings: Settings, urls: ServiceUrls, args: argparse.Namespace) -> int:
    """The command with this process's own clients."""
    from bot.deps import build_deps
    from bot.processes.engine_slot import build_engine

    check(args)
    deps = await build_deps(settings, database_url=urls.database_url, redis_url=urls.redis_url)
    try:
        engine = build_engine(deps)
        if engine is None:
            raise ConfigError(
                "no GitHub App is configured: set OPENASE_GITHUB_APP_ID and its private key, "
                "or register one on the setup page"
            )
        return await schedule_command(deps, engine, args)
    finally:
        await deps.close()


async def schedule_command(deps: Deps, engine: Engine, args: argparse.Namespace) -> int:
    """Do `args.action`; print what it did. 1 when the schedule is not there."""
    from bot.engine.schedule_slots import run_now, set_paused
    from bot.engine.schedules import config_problems, find_schedule, schedule_views
    from harness_store.db import transaction

    check(args)
    if args.action == "list":
        views = await schedule_views(engine, full_name=where(args))
        if not views:
            print("openase: no schedules")
        for view in views:
            state = "paused" if view.paused else "active"
            last = (
                "never"
                if view.last_slot is None
                else f"{view.last_slot:%Y-%m-%d %H:%M} UTC {view.last_outcome}"
                + ("" if view.last_issue is None else f" {view.last_issue}")
            )
            print(
                f"{view.repository}  {view.schedule.name}  {view.schedule.cron} "
                f"({view.schedule.timezone})  {state}  next {view.next_at:%Y-%m-%d %H:%M} UTC  "
                f"last {last}"
            )
        for full_name, problems in await config_problems(engine, full_name=where(args)):
            print(f"openase: {full_name}: no schedule of it runs; its config has problems:")
            for problem in problems:
                print(f"  {problem}")
        return 0
    owner_name = where(args) or ""
    try:
        found = await find_schedule(engine, owner_name, args.name, labelled=args.action == "run")
    except ConfigUnavailable as exc:
        print(f"openase: {exc}", file=sys.stderr)
        return 1
    if found is None:
        named = (
            f"Linear team {args.team}"
            if args.team is not None
            else f"Jira project {args.project}"
            if args.project is not None
            else owner_name
        )
        print(f"openase: {named} has no schedule {args.name!r}", file=sys.stderr)
        return 1
    target, schedule = found
    who, label = "cli", target.owner.label
    if args.action in ("pause", "resume"):
        async with transaction(deps.sessions) as session:
            await set_paused(
                session, target.owner, schedule.name, paused=args.action == "pause", by=who
            )
        done = "paused" if args.action == "pause" else "resumed"
        print(f"openase: {label} {schedule.name} {done}")
        return 0
    outcome = await run_now(engine, target, schedule, by=who)
    if outcome != "filed":
        why = f"{outcome} (see the worker's log)"
        print(f"openase: {label} {schedule.name}: {why}", file=sys.stderr)
        return 1
    print(f"openase: {label} {schedule.name}: filed; a worker opens the issue")
    return 0
