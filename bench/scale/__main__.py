"""`python -m bench.scale` (`make bench-scale`): see the package docstring."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import bench.scale
from bench.scale.run import ScaleOptions, session


def parse(argv: list[str] | None = None) -> ScaleOptions:
    defaults = ScaleOptions()
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=bench.scale.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--tickets", type=int, default=defaults.tickets, help="tickets mirrored (%(default)s)")
    add("--runs", type=int, default=defaults.runs, help="labelled at once (%(default)s)")
    add("--more-runs", type=int, help="labelled after the others join (default: --runs)")
    add("--runners", type=int, default=defaults.runners, help="runner processes (%(default)s)")
    add("--slots", type=int, default=defaults.slots, help="runs at once each (%(default)s)")
    add(
        "--agent-seconds",
        type=float,
        default=defaults.agent_seconds,
        help="how long the agent streams output (%(default)s)",
    )
    add(
        "--runs-only",
        action="store_true",
        help="end each batch once its runs are done, without waiting for the paced outbox "
        "(quick tries of the engine; what the outbox has not sent yet counts as not done)",
    )
    add("--root", type=Path, help="working directory (default: a new temporary one)")
    args = parser.parse_args(argv)
    return ScaleOptions(
        tickets=args.tickets,
        runs=args.runs,
        more_runs=args.more_runs,
        runners=args.runners,
        slots=args.slots,
        agent_seconds=args.agent_seconds,
        runs_only=args.runs_only,
        root=args.root,
    )


async def run(options: ScaleOptions) -> int:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"bench-scale: {options.tickets} tickets, {options.runs} + {options.second_batch} runs, "
        f"{options.runners} runners x {options.slots} slots, agent {options.agent_seconds:g} s"
    )
    print(f"machine: {os.cpu_count()} CPUs, load average {load}\n", flush=True)
    started = time.monotonic()
    # SIGTERM (a `kill`, a CI timeout) stops the cluster as Ctrl-C does: its processes run
    # in sessions of their own and would outlive this one, loading the machine.
    session_task = asyncio.ensure_future(session(options))
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, session_task.cancel)
    try:
        report, root = await session_task
    except asyncio.CancelledError:
        print("\nstopped (SIGTERM): the cluster's processes are stopped", flush=True)
        return 143
    missed = report.missed()
    print(f"\n{len(report.rows) - len(missed)} rows met or informative, {len(missed)} NOT met "
          f"({time.monotonic() - started:.0f} s)")  # fmt: skip
    if missed:
        print(f"logs kept in {root / 'logs'}")
        return 1
    if options.root is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def main() -> int:
    options = parse()
    code = asyncio.run(run(options))
    return code


if __name__ == "__main__":
    sys.exit(main())
