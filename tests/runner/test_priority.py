"""The runner's CPU niceness (`openase runner --nice`, `up`'s OPENASE_RUNNER_NICE): taken
by the runner process and everything it starts after, never raised back, validated; where
Linux schedules by autogroup, taken by the session the runner leads, which its agents, hooks
and git processes share (and never by a terminal's session, nor with the terminal)."""

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


# A runner as `up` starts it (leading a session of its own, no terminal): what session and
# autogroup it and a child it starts the runner's way are in.
SESSION_PROBE = """
import os, subprocess, sys
from runner.priority import child_group, yield_cpu
def autogroup():
    return open("/proc/self/autogroup").read().strip()
before = autogroup()
yield_cpu(int(sys.argv[1]))
child = subprocess.run(
    [sys.executable, "-c", "import os; ag = open('/proc/self/autogroup').read().strip(); "
     "print(os.getsid(0), os.getpgid(0) == os.getpid(), ag)"],
    capture_output=True, text=True, check=True, **child_group(),
)
print(before, "|", os.getsid(0), autogroup(), "|", child.stdout.strip())
"""

# A runner with a controlling terminal (pty.fork makes the pty the child's): how it would
# start its children.
TERMINAL_PROBE = """
import os, pty, sys
pid, terminal = pty.fork()
if pid == 0:
    from runner.priority import child_group
    print(child_group(), flush=True)
    os._exit(0)
said = b""
while True:
    try:
        chunk = os.read(terminal, 1024)
    except OSError:  # the terminal's other side closed
        break
    if not chunk:
        break
    said += chunk
os.waitpid(pid, 0)
sys.stdout.write(said.decode())
"""

needs_autogroups = pytest.mark.skipif(
    not Path("/proc/self/autogroup").exists(),
    reason="this kernel schedules without autogroups (no CONFIG_SCHED_AUTOGROUP): nothing to share",
)


def run_probe(code: str, *args: str, own_session: bool) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        start_new_session=own_session,
    )
    return done.stdout.splitlines()[-1]  # after the runner's log lines


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
        for settings, expected in ((default, "--nice=19"), (gentler, "--nice=3")):
            [runner] = [
                spec for spec in children(settings, urls, sock, None, {}) if spec.name == "runner"
            ]
            assert expected in runner.argv


@needs_autogroups
def test_a_runner_leading_its_session_gives_the_niceness_to_its_autogroup_and_children() -> None:
    before, runner, child = run_probe(SESSION_PROBE, "10", own_session=True).split(" | ")
    session, autogroup = runner.split(" ", 1)
    assert before.endswith("nice 0")
    assert autogroup.endswith("nice 10")
    # The child is in a process group of its own (a stop reaches what it spawned) inside
    # the runner's session, so in the same autogroup, at the same niceness.
    assert child == f"{session} True {autogroup}"


@needs_autogroups
def test_a_runner_in_a_terminals_session_leaves_that_sessions_autogroup_alone() -> None:
    before, runner, _ = run_probe(SESSION_PROBE, "10", own_session=False).split(" | ")
    assert runner.split(" ", 1)[1] == before


def test_a_runner_with_a_terminal_starts_its_children_in_sessions_without_it() -> None:
    said = run_probe(TERMINAL_PROBE, own_session=True)
    assert said.strip() == str({"start_new_session": True, "process_group": None})
