"""`python -m bench.web`: seed, time every page, print the table (see bench.web)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import text

import bench.web
from bench.services import bench_services, empty_tables
from bench.web.measure import Probe, measure, report
from bench.web.pages import pages
from bench.web.rows import HARNESS_NAMES, REPO_NAMES
from bench.web.seed import SKILL_VERSIONS, seed
from bot.deps import build_deps
from bot.processes.app import create_app
from bot.settings import Settings
from bot.web.run_pages import OUTPUT_LIMIT
from bot.web.ticket_pages import ACTIVITY_PAGE, RUNS_LIMIT

QUICK = {"tickets": 1000, "runs": 10_000, "total_events": 100_000, "repeat": 10, "warmup": 2}


async def run(args: argparse.Namespace, database_url: str, redis_url: str, root: Path) -> int:
    settings = Settings(
        _env_file=None,
        data_dir=root / "data",
        admin_token=None,
        web_reads="public",
    )
    deps = await build_deps(settings, database_url=database_url, redis_url=redis_url)
    try:
        await empty_tables(deps.engine)
        await deps.redis.flushdb()
        started = time.perf_counter()
        seeded = await seed(deps, args)
        stored = ", ".join(f"{count:,} {what}" for what, count in seeded.counts.items())
        print(
            f"seeded in {time.perf_counter() - started:.1f} s: {stored}; {args.repos} "
            f"repositories, {args.harnesses} harnesses x {args.versions} versions, 3 skills x "
            f"{SKILL_VERSIONS} versions"
        )
        async with deps.engine.connect() as conn:
            busy_runs = await conn.scalar(
                text("SELECT count(*) FROM runs WHERE ticket_id = :id"),
                {"id": seeded.busy_ticket},
            )
        print(
            f"busiest ticket {seeded.busy_ticket}: {busy_runs} runs (page shows {RUNS_LIMIT}), "
            f"more than {ACTIVITY_PAGE} activity rows (page shows {ACTIVITY_PAGE}); its run "
            f"{seeded.busy_run}: {args.events} events (page shows {OUTPUT_LIMIT}); "
            f"small ticket {seeded.small_ticket}: 1 run"
        )
        asked = [
            page
            for page in pages(seeded, args.versions, args.harnesses)
            if not args.only or any(word in page.path for word in args.only)
        ]
        probe = Probe(deps)
        app = create_app(settings, database_url=database_url, redis_url=redis_url, deps=deps)
        if not args.no_freeze:
            gc.freeze()  # as `openase serve` does (bot/processes/app.py), unless asked not to
        transport = httpx.ASGITransport(app=app)
        print(
            f"\n{args.repeat} requests per page after {args.warmup} warm-up ones, one at a time, "
            "in-process ASGI client; ms"
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://openase.test") as http:
            rows = [await measure(http, probe, page, args.warmup, args.repeat) for page in asked]
        problems = report(rows, args.target, args.show_sql)
        if problems:
            print(f"\n{len(problems)} problem(s):")
            for problem in problems:
                print("  " + problem)
            return 1
        print(f"\nevery page: p50 <= {args.target:.0f} ms, a constant number of statements")
        return 0
    finally:
        await deps.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.web",
        description=bench.web.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tickets", type=int, default=10_000, help="mirrored tickets")
    parser.add_argument("--runs", type=int, default=100_000, help="runs in all (about)")
    parser.add_argument(
        "--total-events", type=int, default=1_000_000, help="agent events in all (about)"
    )
    parser.add_argument("--events", type=int, default=5000, help="agent events of the busy run")
    parser.add_argument("--repos", type=int, default=4, choices=range(1, len(REPO_NAMES) + 1))
    parser.add_argument(
        "--harnesses", type=int, default=10, choices=range(1, len(HARNESS_NAMES) + 1)
    )
    parser.add_argument("--versions", type=int, default=20, help="versions of each harness")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per page")
    parser.add_argument("--warmup", type=int, default=3, help="requests per page, not timed")
    parser.add_argument("--target", type=float, default=50.0, help="p50 target, ms")
    parser.add_argument("--only", nargs="*", default=[], help="pages whose path has a word")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tenth of the scale, 10 requests a page (explicit options still win)",
    )
    parser.add_argument("--show-sql", action="store_true", help="print each page's statements")
    parser.add_argument(
        "--no-freeze",
        action="store_true",
        help="skip gc.freeze() after start-up, to see what full collections cost",
    )
    args = parser.parse_args()
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    if args.tickets < 10 or args.runs < args.tickets or args.versions < 2 or args.repeat < 1:
        parser.error("needs --tickets >= 10, --runs >= --tickets, --versions >= 2, --repeat >= 1")
    with bench_services() as services:
        return asyncio.run(run(args, services.database_url, services.redis_url, services.root))


if __name__ == "__main__":
    sys.exit(main())
