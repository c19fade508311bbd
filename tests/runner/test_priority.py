"""The runner's CPU niceness (`openase runner --nice`, `up`'s OPENASE_RUNNER_NICE): taken
by the runner process and everything it starts after, never raised back, validated."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bot.processes.cli import main
from bot.processes.up import children
from bot.servers.services import ServiceUrls
from bot.settings import Settings
from runner.priority import yield_cpu

# A process apart (a niceness once lowered cannot be raised back, and the test process
# must keep its own): it lowers its own, then starts a child that reports its niceness.
PROBE = """
import os, subprocess, sys
os.nice(int(sys.argv[1]))  # the niceness it was started at (`nice -n`)
from runner.priority import yield_cpu
held = yield_cpu(int(sys.argv[2]))
child = subprocess.run(
    [sys.executable, "-c", "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"],
    capture_output=True, text=True, check=True,
)
print(held, os.getpriority(os.PRIO_PROCESS, 0), child.stdout.strip())
"""


def probe(started_at: int, asked: int) -> list[int]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(started_at), str(asked)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    last = done.stdout.splitlines()[-1]  # after the runner's log line, if it logged one
    return [int(word) for word in last.split()]


def test_the_runner_and_what_it_starts_run_at_the_niceness_asked() -> None:
    assert probe(0, 10) == [10, 10, 10]


def test_a_runner_started_nicer_already_is_never_raised() -> None:
    assert probe(15, 10) == [15, 15, 15]


def test_a_niceness_out_of_range_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="0 to 19"):
        yield_cpu(20)
    with pytest.raises(SystemExit):
        main(["runner", "--machine", "m1", "--nice", "25"])
    assert "expected a niceness from 0 (normal) to 19 (lowest priority), got '25'" in (
        capsys.readouterr().err
    )


def test_up_starts_its_runner_at_the_configured_niceness(tmp_path: Path) -> None:
    urls = ServiceUrls(database_url="postgresql://db/x", redis_url="redis://r/0")
    with socket.socket() as sock:
        default = Settings(_env_file=None, data_dir=tmp_path)
        gentler = Settings(_env_file=None, data_dir=tmp_path, runner_nice=3)
        for settings, expected in ((default, "--nice=10"), (gentler, "--nice=3")):
            [runner] = [
                spec for spec in children(settings, urls, sock, None, {}) if spec.name == "runner"
            ]
            assert expected in runner.argv
