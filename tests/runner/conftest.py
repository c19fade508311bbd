"""Fixtures of the runner's workspace tests: a bare remote, and a workspace beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runner.workspace import Workspace
from tests.runner.git_helpers import run_git


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository with `main`: a README, a source file and a .gitignore."""
    bare = tmp_path / "remote.git"
    run_git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=tmp_path)
    seed = tmp_path / "seed"
    run_git("init", "--quiet", "--initial-branch=main", str(seed), cwd=tmp_path)
    (seed / "README.md").write_text("hello\n")
    (seed / "src").mkdir()
    (seed / "src" / "app.py").write_text("print('hi')\n")
    (seed / ".gitignore").write_text("*.log\n")
    run_git("add", "--all", cwd=seed)
    run_git("commit", "--quiet", "-m", "initial", cwd=seed)
    run_git("push", "--quiet", str(bare), "main", cwd=seed)
    shutil.rmtree(seed)
    return bare


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws")
