"""Benchmark: runner overhead per run, from RunSpec received to agent process started.

    python -m bench.runner_overhead                 # 30 runs each on a 20,000-file repository
    python -m bench.runner_overhead --runs 50 --files 2000
    python -m bench.runner_overhead --files 200 --branches 1000   # a remote of many branches

Builds a local bare repository, warms the runner's mirror with one run, then executes
`--runs` runs of distinct tickets with the `command` agent, whose first act is to print
the clock. Overhead = agent's first clock reading - the moment `execute()` got the spec; it
covers fetching the mirror, adding the worktree, materialising two skills, writing the
prompt and spawning the agent. Prints p50 / p90 / max in milliseconds. Target: p50 <= 300 ms.
`--branches N` gives the remote N other branches (other tickets' work in review), and one
more is pushed before each run, as on a busy repository: whatever a run fetches of them is
part of its overhead.

As many runs again go into the sandbox (bubblewrap, the default policy: network through
the allowlisting proxy), interleaved with the unconfined ones so both see the same machine
load; the sandbox's cost is the difference of the two (the proxy's start, bubblewrap's
namespaces and mounts, inner.py and its forwarder). Target: at most +100 ms at p50. Where
bubblewrap cannot work, that part is skipped and says why; `--no-sandbox` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from bench.workspace_prep import add_branches, build_remote
from runner.contract import (
    AgentConfig,
    AgentEvent,
    EventKind,
    HarnessRef,
    RepoRef,
    RunSpec,
    RunStatus,
    SandboxPolicy,
    SkillFile,
    SkillSpec,
    TicketRef,
)
from runner.events import CallbackEventSink
from runner.execute import execute
from runner.sandbox.bwrap import probe
from runner.sandbox.confine import Sandbox
from runner.workspace import Workspace

# On stdout (a LOG event), not in a file: a confined agent sees no file of the bench's.
AGENT = "import time; print(repr(time.time()), flush=True)"
TARGET_MS = 300
SANDBOX_TARGET_MS = 100  # the sandbox's cost at p50


def _skills() -> tuple[SkillSpec, ...]:
    return tuple(
        SkillSpec(
            name=name,
            version=1,
            files=(
                SkillFile(
                    path="SKILL.md",
                    content=f"---\nname: {name}\ndescription: {name}\n---\nSteps for {name}.\n",
                ),
            ),
        )
        for name in ("run-tests", "commit-message")
    )


def _spec(remote: Path, n: int, *, confined: bool) -> RunSpec:
    return RunSpec(
        run_id=f"bench-{n}",
        ticket=TicketRef(key=f"bench/repo#{n}", number=n, title=f"Bench {n}"),
        repo=RepoRef(full_name="bench/repo", clone_url=str(remote)),
        base_branch="main",
        work_branch=f"openase/{n}-bench",
        prompt="Write the clock",
        harness=HarnessRef(name="coder", version=1, text="Bench harness."),
        skills=_skills(),
        agent=AgentConfig(cli="command", argv=(sys.executable, "-c", AGENT)),
        push=False,
        sandbox=SandboxPolicy(enabled=confined),
    )


async def _overhead(spec: RunSpec, workspace: Workspace, sandbox: Sandbox | None) -> float:
    """One run: seconds from execute() called to the agent's clock reading."""
    events: list[AgentEvent] = []
    received = time.time()
    result = await execute(
        spec,
        workspace=workspace,
        sink=CallbackEventSink(spec.run_id, events.append),
        sandbox=sandbox,
    )
    if result.status is not RunStatus.SUCCEEDED:
        raise SystemExit(f"{spec.run_id} failed: {result.status.value}: {result.error}")
    await workspace.remove(spec.repo.full_name, spec.work_branch)
    clock = next(event.text or "" for event in events if event.kind is EventKind.LOG)
    return float(clock) - received


async def measure(
    files: int, runs: int, sandbox: Sandbox | None, branches: int = 0
) -> tuple[list[float], list[float]]:
    """The overheads unconfined and, with `sandbox`, confined (else none)."""
    with tempfile.TemporaryDirectory(prefix="openase-bench-") as tmp:
        root = Path(tmp)
        remote = build_remote(root, files, branches)
        workspace = Workspace(root / "ws")
        pushed = itertools.count(branches)

        async def overhead(n: int, box: Sandbox | None) -> float:
            if branches:  # another ticket's branch arrives before each run
                number = next(pushed)
                add_branches(remote, range(number, number + 1))
            return await _overhead(_spec(remote, n, confined=box is not None), workspace, box)

        # Not counted: run 0 creates the mirror, run 1 brings bubblewrap into the page cache.
        await _overhead(_spec(remote, 0, confined=False), workspace, None)
        if sandbox is not None:
            await _overhead(_spec(remote, 1, confined=True), workspace, sandbox)
        plain: list[float] = []
        confined: list[float] = []
        for n in range(2, runs + 2):
            plain.append(await overhead(2 * n, None))
            if sandbox is not None:
                confined.append(await overhead(2 * n + 1, sandbox))
        return plain, confined


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _line(values: list[float]) -> str:
    p50, p90, worst = 1000 * statistics.median(values), _ms(values, 0.9), 1000 * max(values)
    return f"p50 {p50:.0f} ms   p90 {p90:.0f} ms   max {worst:.0f} ms"


async def _sandbox(skip: bool) -> tuple[Sandbox | None, str]:
    """This machine's sandbox and its tool, or None and why there is none."""
    if skip:
        return None, "--no-sandbox"
    support = await probe()
    if not support.available:
        return None, support.problem
    return Sandbox(support), f"{support.tool}, network allowlist"


def _at_least(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than `least`, or a clear error."""

    def number(value: str) -> int:
        try:
            parsed = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if parsed < least:
            raise argparse.ArgumentTypeError(f"{parsed} is less than {least}")
        return parsed

    return number


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--files", type=_at_least(1), default=20000, help="files in the repository")
    add("--runs", type=_at_least(1), default=30, help="measured runs (each way)")
    add("--no-sandbox", action="store_true", help="only the unconfined runs")
    add("--branches", type=_at_least(0), default=0, help="other branches (one more a run)")
    args = parser.parse_args()
    sandbox, tool = asyncio.run(_sandbox(args.no_sandbox))
    plain, confined = asyncio.run(measure(args.files, args.runs, sandbox, args.branches))
    p50 = 1000 * statistics.median(plain)
    others = f", {args.branches:,} other branches" if args.branches else ""
    print(
        "runner overhead, spec received -> agent started "
        f"({args.files} files{others}, {args.runs} runs)"
    )
    verdict = "met" if p50 <= TARGET_MS else "NOT met"
    print(f"  {_line(plain)}   (target p50 <= {TARGET_MS} ms: {verdict})")
    if not confined:
        print(f"the sandbox's cost: not measured: {tool}")
        return
    print(f"the sandbox's cost, spec received -> agent started ({tool})")
    cost = 1000 * (statistics.median(confined) - statistics.median(plain))
    cost90 = _ms(confined, 0.9) - _ms(plain, 0.9)
    verdict = "met" if cost <= SANDBOX_TARGET_MS else "NOT met"
    print(f"  without   {_line(plain)}")
    print(f"  with      {_line(confined)}")
    print(
        f"  cost      p50 {cost:+.0f} ms   p90 {cost90:+.0f} ms"
        f"   (target at most +{SANDBOX_TARGET_MS} ms at p50: {verdict})"
    )


if __name__ == "__main__":
    main()
