"""A runner SIGKILLed mid-run leaves its run's egress socket directory in /tmp (the
sandbox's cleanup never ran); the next runner to start removes those of runners that are
gone, and only those: other runners of the machine may be mid-run. Real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.sandbox.confine import SOCKET_DIR_PREFIX, remove_stale_socket_dirs


@pytest.fixture
def short_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary directory of its own (short enough for sockets) as the process's."""
    path = Path(tempfile.mkdtemp(prefix="oa-t-"))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # this interpreter
    gone.wait()
    return gone.pid


def test_only_the_directories_of_runners_that_are_gone_are_removed(short_tmp: Path) -> None:
    dead = short_tmp / f"{SOCKET_DIR_PREFIX}{_dead_pid()}-abc123"
    mine = short_tmp / f"{SOCKET_DIR_PREFIX}{os.getpid()}-def456"
    other_owner = short_tmp / f"{SOCKET_DIR_PREFIX}1-ghi789"  # init: alive
    unrelated = short_tmp / "openase-egress-notapid"
    for path in (dead, mine, other_owner, unrelated):
        path.mkdir()
        (path / "egress.sock").write_text("")

    assert remove_stale_socket_dirs() == 1
    assert not dead.exists()
    assert mine.exists()
    assert other_owner.exists()
    assert unrelated.exists()
    assert remove_stale_socket_dirs() == 0
