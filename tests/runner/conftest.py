"""Fixtures of the runner's workspace tests: a bare remote, and a workspace beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.workspace import Workspace
from tests.runner.git_helpers import seed_remote


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository with `main`: a README, a source file and a .gitignore."""
    files = {"README.md": "hello\n", "src/app.py": "print('hi')\n", ".gitignore": "*.log\n"}
    return seed_remote(tmp_path, files)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws")
