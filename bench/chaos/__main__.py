"""`python -m bench.chaos` (`make chaos`): see the package docstring."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from pathlib import Path

import bench.chaos
from bench.chaos.faults import FAULTS
from bench.chaos.report import PhaseReport
from bench.chaos.run import ChaosOptions, session


def _faults(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in FAULTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown fault(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FAULTS)}"
        )
    return names


def parse(argv: list[str] | None = None) -> ChaosOptions:
    defaults = ChaosOptions()
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=bench.chaos.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--faults", type=_faults, default=defaults.faults, help="comma-separated, in order")
    add(
        "--outage-seconds",
        type=float,
        default=defaults.outage_seconds,
        help="how long PostgreSQL and Redis stay down (%(default)s)",
    )
    add(
        "--github-outage-seconds",
        type=float,
        default=defaults.github_outage_seconds,
        help="how long GitHub answers 502 (%(default)s)",
    )
    add(
        "--cut-seconds",
        type=float,
        default=defaults.cut_seconds,
        help="how long the network to Redis stays cut (%(default)s: past the lost-run window)",
    )
    add(
        "--cut-scope",
        choices=("runner", "all"),
        default=defaults.cut_scope,
        help="whose link to Redis is cut: one runner machine's, or every process's",
    )
    add("--webhook-rate", type=float, default=defaults.webhook_rate, help="webhooks per second")
    add(
        "--ticket-every",
        type=float,
        default=defaults.ticket_every,
        help="seconds between labelled tickets (0: none)",
    )
    add(
        "--agent-seconds",
        type=float,
        default=defaults.agent_seconds,
        help="how long the agent works on a ticket",
    )
    add(
        "--settle-seconds",
        type=float,
        default=defaults.settle_seconds,
        help="load before each fault",
    )
    add(
        "--catch-up-timeout",
        type=float,
        default=defaults.catch_up_timeout,
        help="how long to wait for everything to be done after a fault",
    )
    add("--root", type=Path, help="working directory (default: a new temporary one, kept)")
    args = parser.parse_args(argv)  # fmt: skip
    return ChaosOptions(
        faults=args.faults,
        outage_seconds=args.outage_seconds,
        github_outage_seconds=args.github_outage_seconds,
        cut_seconds=args.cut_seconds,
        cut_scope=args.cut_scope,
        webhook_rate=args.webhook_rate,
        ticket_every=args.ticket_every,
        agent_seconds=args.agent_seconds,
        settle_seconds=args.settle_seconds,
        catch_up_timeout=args.catch_up_timeout,
        root=args.root,
    )


async def run(options: ChaosOptions) -> int:
    reports: list[PhaseReport] = []
    started = time.monotonic()
    async with session(options) as chaos:
        print(f"cluster up in {chaos.cluster.root} (logs in {chaos.cluster.root / 'logs'})")
        print(
            f"load: {options.webhook_rate:g} webhooks/s, a labelled ticket every "
            f"{options.ticket_every:g} s (agent works {options.agent_seconds:g} s)\n",
            flush=True,
        )
        for name in options.faults:
            report = await chaos.fault(name)
            reports.append(report)
            print(report.table() + "\n", flush=True)
        root = chaos.cluster.root
    print(f"summary ({time.monotonic() - started:.0f} s):")
    for report in reports:
        misses = report.misses()
        print(f"  {report.fault:10} {'MISSED: ' + '; '.join(misses) if misses else 'ok'}")
    if any(report.misses() for report in reports):
        print(f"logs kept in {root / 'logs'}")
        return 1
    if options.root is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def main() -> int:
    return asyncio.run(run(parse()))


if __name__ == "__main__":
    sys.exit(main())
