"""Git by the test's own hand: a bare remote seeded and changed as another person would."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from runner.contract import RepoRef
from runner.git import git_env

IDENTITY = {
    "GIT_AUTHOR_NAME": "Seed",
    "GIT_AUTHOR_EMAIL": "seed@example.test",
    "GIT_COMMITTER_NAME": "Seed",
    "GIT_COMMITTER_EMAIL": "seed@example.test",
}


def run_git(*args: str, cwd: Path) -> str:
    """git as the test's own hand (seeding the remote, inspecting results)."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=git_env(extra=IDENTITY), capture_output=True, check=True
    )
    return done.stdout.decode().strip()


def seed_remote(root: Path, files: dict[str, str]) -> Path:
    """A bare repository `root/remote.git` whose main holds `files` (path -> text)."""
    bare = root / "remote.git"
    run_git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=root)
    seed = root / "seed"
    run_git("init", "--quiet", "--initial-branch=main", str(seed), cwd=root)
    for name, content in files.items():
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        (seed / name).write_text(content)
    run_git("add", "--all", cwd=seed)
    run_git("commit", "--quiet", "-m", "initial", cwd=seed)
    run_git("push", "--quiet", str(bare), "main", cwd=seed)
    shutil.rmtree(seed)
    return bare


def commit_on(remote: Path, branch: str, files: dict[str, str], base: str = "main") -> str:
    """Someone else pushes a commit with `files` to `branch` (created from `base`)."""
    scratch = remote.parent / f"scratch-{branch.replace('/', '-')}-{time.monotonic_ns()}"
    run_git("clone", "--quiet", "--branch", base, str(remote), str(scratch), cwd=remote.parent)
    run_git("checkout", "--quiet", "-B", branch, cwd=scratch)
    for name, content in files.items():
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_text(content)
    run_git("add", "--all", cwd=scratch)
    run_git("commit", "--quiet", "-m", f"change {branch}", cwd=scratch)
    run_git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=scratch)
    sha = run_git("rev-parse", "HEAD", cwd=scratch)
    shutil.rmtree(scratch)
    return sha


def repo_of(remote: Path, full_name: str = "octo/hello") -> RepoRef:
    return RepoRef(full_name=full_name, clone_url=str(remote))
