"""Real git repositories for runner tests: a bare "remote" with one commit on `main`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.test",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.test",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def make_remote(root: Path, files: dict[str, str] | None = None, name: str = "remote") -> Path:
    """A bare repository at root/<name>.git whose `main` holds `files` (a README by default)."""
    seed = root / f"{name}-seed"
    seed.mkdir(parents=True)
    git(seed, "init", "-q", "-b", "main")
    for path, content in (files or {"README.md": "# demo\n"}).items():
        target = seed / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "initial")
    bare = root / f"{name}.git"
    git(root, "clone", "-q", "--bare", str(seed), str(bare))
    return bare


def branch_files(bare: Path, branch: str) -> list[str]:
    return git(bare, "ls-tree", "-r", "--name-only", branch).splitlines()


def show(bare: Path, branch: str, path: str) -> str:
    return git(bare, "show", f"{branch}:{path}")
