"""Benchmark: preparing a run's workspace from a warm mirror vs a fresh clone.

    python -m bench.workspace_prep                   # defaults: 20,000 files, 5 runs each
    python -m bench.workspace_prep --files 50000 --runs 9

Builds a repository of N small distinct files with `git fast-import` as a bare "remote",
then measures, K times each and interleaved (so all see the same machine load):
  clone     a fresh `git clone` (over file://, the pack protocol a network clone uses; a plain
            path would hardlink the objects instead), as is and with parallel checkout
            (checkout.workers=0), which `prepare` uses for a new worktree,
  recycled  `Workspace.prepare` of a new ticket once earlier tickets of the repository were
            removed (the runner's steady state): fetch, then a parked worktree moved into
            place, reset to the new start and cleaned,
  new       `Workspace.prepare` of a new ticket with no parked worktree: fetch plus a full
            checkout into a new `git worktree`.
Before every prepare the remote's main gains a commit, so each fetch has something to fetch.
Prints median and p90 seconds and the clone / prepare ratios; the target (>= 5x) is for the
steady state. A new worktree writes every file just as a clone does, so against a local
remote (no network transfer to save) it is only as fast as a clone with parallel checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runner.contract import RepoRef
from runner.git import git_env
from runner.workspace import Workspace

TARGET_RATIO = 5.0
_COMMITTER = "Bench <bench@example.test> 1700000000 +0000"


def _git(*args: str, cwd: Path, stdin: bytes | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=git_env(), input=stdin, check=True)


def _data(text: str) -> bytes:
    raw = text.encode()
    return b"data %d\n%s\n" % (len(raw), raw)


def _tree_stream(files: int) -> bytes:
    """A fast-import stream: one commit on main with `files` files, 200 per directory."""
    out = [b"commit refs/heads/main\n", f"committer {_COMMITTER}\n".encode(), _data("initial")]
    for i in range(files):
        body = f"# module {i}\n" + "".join(f"VALUE_{i}_{j} = {i * j}\n" for j in range(8))
        out += [f"M 100644 inline src/pkg{i // 200:04d}/mod{i:06d}.py\n".encode(), _data(body)]
    return b"".join(out)


def _tick_stream(n: int) -> bytes:
    """A fast-import stream adding one small commit on top of main."""
    return b"".join(
        [
            b"commit refs/heads/main\n",
            f"committer {_COMMITTER}\n".encode(),
            _data(f"tick {n}"),
            b"from refs/heads/main^0\n",
            b"M 100644 inline TICK\n",
            _data(f"{n}\n"),
        ]
    )


def _branches_stream(branches: range) -> bytes:
    """A fast-import stream: a branch off main for each number, a commit of its own each
    (other tickets' work, in review)."""
    out = []
    for i in branches:
        out += [
            f"commit refs/heads/openase/other-{i}\n".encode(),
            f"committer {_COMMITTER}\n".encode(),
            _data(f"other ticket {i}"),
            b"from refs/heads/main^0\n",
            f"M 100644 inline OTHER-{i}.md\n".encode(),
            _data(f"work of ticket {i}\n"),
        ]
    return b"".join(out)


def add_branches(remote: Path, numbers: range) -> None:
    """Other tickets' branches pushed to `remote`, one commit off main each."""
    _git("fast-import", "--quiet", cwd=remote, stdin=_branches_stream(numbers))


def build_remote(root: Path, files: int, branches: int = 0) -> Path:
    """A bare repository: main with `files` files, and `branches` other branches."""
    remote = root / "remote.git"
    _git("init", "--quiet", "--bare", "--initial-branch=main", str(remote), cwd=root)
    _git("fast-import", "--quiet", cwd=remote, stdin=_tree_stream(files))
    if branches:
        add_branches(remote, range(branches))
    _git("repack", "-a", "-d", "-q", cwd=remote)  # one pack, as a hosted repository serves
    os.sync()  # so writing it back does not land on the first measurements
    return remote


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[8] if len(values) > 1 else values[0]


def _line(label: str, seconds: list[float]) -> str:
    return (
        f"{label:<31} median {statistics.median(seconds):7.3f} s   p90 {_p90(seconds):7.3f} s"
        f"   (runs: {', '.join(f'{s:.3f}' for s in seconds)})"
    )


async def run(args: argparse.Namespace, root: Path) -> int:
    started = time.perf_counter()
    remote = build_remote(root, args.files)
    print(f"repository:     {args.files:,} files, built in {time.perf_counter() - started:.2f} s")
    url = f"file://{remote}"

    repo = RepoRef(full_name="bench/repo", clone_url=url)
    recycling = Workspace(root / "ws-recycling")
    fresh = Workspace(root / "ws-fresh", spares=0)
    t0 = time.perf_counter()
    await recycling.prepare(repo, "main", "bench/warmup", None)
    cold = time.perf_counter() - t0
    await recycling.remove(repo.full_name, "bench/warmup")
    await fresh.prepare(repo, "main", "bench/warmup", None)

    # Nothing is deleted until the end, and dirty pages are written back before each
    # measurement: otherwise one measurement pays for the writes (or deletes) of the last.
    clones: list[float] = []
    parallel_clones: list[float] = []
    recycled: list[float] = []
    new: list[float] = []
    for i in range(args.runs):
        for extra, times in (((), clones), (("-c", "checkout.workers=0"), parallel_clones)):
            os.sync()
            t0 = time.perf_counter()
            _git(*extra, "clone", "--quiet", url, str(root / f"clone-{i}-{len(extra)}"), cwd=root)
            times.append(time.perf_counter() - t0)
        for workspace, times in ((recycling, recycled), (fresh, new)):
            _git("fast-import", "--quiet", cwd=remote, stdin=_tick_stream(len(new) + len(recycled)))
            os.sync()
            t0 = time.perf_counter()
            wt = await workspace.prepare(repo, "main", f"bench/ticket-{i}", None)
            times.append(time.perf_counter() - t0)
            if not (wt.path / "TICK").exists():
                raise SystemExit("prepare did not fetch the remote's new commit")
        await recycling.remove(repo.full_name, f"bench/ticket-{i}")  # the ticket is done

    print(_line("fresh clone", clones))
    print(_line("fresh clone, parallel checkout", parallel_clones))
    print(_line("cold mirror (first prepare)", [cold]))
    print(_line("warm mirror + recycled", recycled))
    print(_line("warm mirror + new worktree", new))
    steady = statistics.median(clones) / statistics.median(recycled)
    first = statistics.median(clones) / statistics.median(new)
    verdict = "meets" if steady >= TARGET_RATIO else "MISSES"
    print(
        f"ratio clone / recycled worktree: {steady:5.1f}x ({verdict} the {TARGET_RATIO:g}x target)"
    )
    print(f"ratio clone / new worktree:      {first:5.1f}x")
    same_checkout = statistics.median(parallel_clones) / statistics.median(new)
    print(f"ratio clone with parallel checkout / new worktree: {same_checkout:5.1f}x")
    return 0 if steady >= TARGET_RATIO else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="oa-bench-ws-")).resolve()
    try:
        return asyncio.run(run(args, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
