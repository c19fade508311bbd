"""runner.process: limits, stop reasons and process-group cleanup, against small misbehaving
scripts (python3 -c and sh)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.process import (
    AgentStartError,
    ByteTail,
    LineSplitter,
    ProcessOutcome,
    StopReason,
    supervise,
)
from tests.support.processes import gone

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def py(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


async def run(
    argv: list[str],
    tmp_path: Path,
    *,
    on_line: Callable[[str], StopReason | None] | None = None,
    on_stderr_line: Callable[[str], None] | None = None,
    env: dict[str, str] = ENV,
    stdin: bytes | None = None,
    wall: float = 5.0,
    stall: float = 5.0,
    grace: float = 0.3,
    cancel: asyncio.Event | None = None,
    max_line_bytes: int = 1_000_000,
    merge_stderr: bool = False,
) -> tuple[ProcessOutcome, list[str]]:
    lines: list[str] = []

    def collect(line: str) -> StopReason | None:
        lines.append(line)
        return on_line(line) if on_line else None

    outcome = await supervise(
        argv,
        cwd=tmp_path,
        env=env,
        stdin=stdin,
        on_stdout_line=collect,
        on_stderr_line=on_stderr_line,
        wall_seconds=wall,
        stall_seconds=stall,
        cancel=cancel,
        kill_grace_seconds=grace,
        max_line_bytes=max_line_bytes,
        merge_stderr=merge_stderr,
    )
    return outcome, lines


# --- output ---------------------------------------------------------------------------


async def test_exit_code_and_lines_in_order(tmp_path: Path) -> None:
    outcome, lines = await run(
        py("""
            import sys
            for i in range(5):
                print(f"line {i}", flush=True)
            print("oops", file=sys.stderr)
            sys.exit(3)
        """),
        tmp_path,
    )
    assert outcome.stop_reason is StopReason.EXITED
    assert outcome.exit_code == 3
    assert not outcome.killed
    assert lines == [f"line {i}" for i in range(5)]
    assert outcome.stderr_tail == "oops\n"


async def test_runs_in_cwd_with_stdin(tmp_path: Path) -> None:
    outcome, lines = await run(sh("pwd; cat"), tmp_path, stdin=b"hello\nworld")
    assert outcome.exit_code == 0
    assert lines == [str(tmp_path), "hello", "world"]


async def test_no_stdin_reads_dev_null(tmp_path: Path) -> None:
    outcome, lines = await run(["cat"], tmp_path, wall=2)
    assert outcome.stop_reason is StopReason.EXITED
    assert lines == []


async def test_long_line_without_newline_is_capped(tmp_path: Path) -> None:
    started = time.monotonic()
    outcome, lines = await run(
        py("""
            import sys
            sys.stdout.buffer.write(b"x" * 5_000_000)
            sys.stdout.buffer.write(b"\\nafter\\n" + b"y" * 3_000_000)
        """),
        tmp_path,
        max_line_bytes=1000,
    )
    assert outcome.exit_code == 0
    assert lines == ["x" * 1000, "after", "y" * 1000]
    assert time.monotonic() - started < 3


async def test_endless_output_without_newlines_is_stopped(tmp_path: Path) -> None:
    outcome, lines = await run(
        py("""
            import sys
            while True:
                sys.stdout.buffer.write(b"z" * 65536)
        """),
        tmp_path,
        wall=0.7,
        max_line_bytes=100_000,
    )
    assert outcome.stop_reason is StopReason.TIMEOUT
    assert lines
    assert {len(line) for line in lines} == {100_000}


async def test_flood_of_lines_all_delivered_in_order(tmp_path: Path) -> None:
    outcome, lines = await run(
        py("""
            import sys
            sys.stdout.writelines(f"{i}\\n" for i in range(200_000))
        """),
        tmp_path,
    )
    assert outcome.exit_code == 0
    assert lines == [str(i) for i in range(200_000)]


async def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    _, lines = await run(sh(r"printf 'caf\303\251 \377ok\r\n'"), tmp_path)
    assert lines == ["café \ufffdok"]


async def test_stderr_lines_and_tail(tmp_path: Path) -> None:
    stderr_lines: list[str] = []
    outcome, lines = await run(
        py("""
            import sys
            for i in range(3000):
                print(f"err {i}", file=sys.stderr)
            print("out")
        """),
        tmp_path,
        on_stderr_line=stderr_lines.append,
    )
    assert lines == ["out"]
    assert stderr_lines == [f"err {i}" for i in range(3000)]
    tail = outcome.stderr_tail
    assert tail.endswith("err 2999\n")
    assert tail.startswith("err ")  # cut at a line boundary
    assert len(tail.encode()) <= 8 * 1024


async def test_merge_stderr_keeps_write_order(tmp_path: Path) -> None:
    outcome, lines = await run(
        sh("echo one; echo two >&2; echo three; echo four >&2"), tmp_path, merge_stderr=True
    )
    assert lines == ["one", "two", "three", "four"]
    assert outcome.stderr_tail == ""


async def test_env_is_exactly_what_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENASE_PROBE_SECRET", "must-not-leak")
    env = {"PATH": "/usr/bin:/bin", "ONLY": "this"}
    _, lines = await run(["env"], tmp_path, env=env)
    assert sorted(lines) == ["ONLY=this", "PATH=/usr/bin:/bin"]


# --- limits ---------------------------------------------------------------------------


async def test_wall_time_stops_a_sleeper(tmp_path: Path) -> None:
    outcome, _ = await run(["sleep", "30"], tmp_path, wall=0.5)
    assert outcome.stop_reason is StopReason.TIMEOUT
    assert outcome.exit_code == -signal.SIGTERM
    assert not outcome.killed
    assert 0.5 <= outcome.duration_s < 1.5


async def test_stall_stops_a_silent_process(tmp_path: Path) -> None:
    outcome, lines = await run(sh("echo start; sleep 30"), tmp_path, stall=0.5)
    assert outcome.stop_reason is StopReason.STALLED
    assert lines == ["start"]
    assert outcome.duration_s < 1.5


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
async def test_slow_but_chatty_process_is_not_stalled(tmp_path: Path, stream: str) -> None:
    outcome, _ = await run(
        py(f"""
            import sys, time
            for i in range(6):
                print(i, file=sys.{stream}, flush=True)
                time.sleep(0.2)
        """),
        tmp_path,
        stall=0.5,
    )
    assert outcome.stop_reason is StopReason.EXITED
    assert outcome.exit_code == 0
    assert outcome.duration_s > 1.0  # longer than the stall limit in total


async def test_cancel_event_stops_it(tmp_path: Path) -> None:
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, cancel.set)
    outcome, _ = await run(["sleep", "30"], tmp_path, cancel=cancel)
    assert outcome.stop_reason is StopReason.CANCELED
    assert outcome.duration_s < 1.0


async def test_line_callback_can_stop_it_over_budget(tmp_path: Path) -> None:
    outcome, lines = await run(
        py("""
            import itertools, time
            for i in itertools.count():
                print(i, flush=True)
                time.sleep(0.01)
        """),
        tmp_path,
        on_line=lambda line: StopReason.OVER_BUDGET if line == "5" else None,
    )
    assert outcome.stop_reason is StopReason.OVER_BUDGET
    assert lines[:6] == ["0", "1", "2", "3", "4", "5"]
    assert outcome.duration_s < 1.5


async def test_sigterm_ignored_gets_sigkill_after_grace(tmp_path: Path) -> None:
    stop_at: list[float] = []

    def on_line(line: str) -> StopReason | None:
        stop_at.append(time.monotonic())
        return StopReason.OVER_BUDGET  # on "ready": the handler is installed by then

    outcome, lines = await run(
        py("""
            import signal, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("ready", flush=True)
            time.sleep(30)
        """),
        tmp_path,
        on_line=on_line,
        grace=0.3,
    )
    returned = time.monotonic()
    assert lines == ["ready"]
    assert outcome.stop_reason is StopReason.OVER_BUDGET
    assert outcome.killed
    assert outcome.exit_code == -signal.SIGKILL
    assert 0.3 <= returned - stop_at[0] < 1.3


async def test_shell_trapping_term_is_killed(tmp_path: Path) -> None:
    outcome, _ = await run(
        sh("trap 'echo got term' TERM; while true; do sleep 0.05; done"),
        tmp_path,
        wall=0.4,
        grace=0.3,
    )
    assert outcome.stop_reason is StopReason.TIMEOUT
    assert outcome.killed
    assert outcome.duration_s < 1.8


# --- the whole group goes -------------------------------------------------------------


async def test_background_grandchild_dies_after_normal_exit(tmp_path: Path) -> None:
    # The grandchild keeps our stdout open: supervise must not wait for EOF forever.
    outcome, lines = await run(sh("sleep 1000 & echo $!; exit 0"), tmp_path)
    assert outcome.stop_reason is StopReason.EXITED
    assert outcome.exit_code == 0
    assert outcome.duration_s < 1.5
    assert await gone(int(lines[0]))


async def test_grandchildren_die_when_stopped(tmp_path: Path) -> None:
    outcome, lines = await run(
        sh("sh -c 'trap \"\" TERM; sleep 1000' & echo $!; sleep 1000"),
        tmp_path,
        wall=0.5,
        grace=0.3,
    )
    assert outcome.stop_reason is StopReason.TIMEOUT
    assert await gone(int(lines[0]))


async def test_escaped_process_holding_stdout_does_not_hang(tmp_path: Path) -> None:
    started = time.monotonic()
    outcome, lines = await run(
        py("""
            import subprocess
            child = subprocess.Popen(["sleep", "30"], start_new_session=True)
            print(child.pid, flush=True)
        """),
        tmp_path,
    )
    escaped = int(lines[0])
    try:
        assert outcome.stop_reason is StopReason.EXITED
        assert outcome.exit_code == 0
        assert time.monotonic() - started < 3.5
    finally:
        os.kill(escaped, signal.SIGKILL)  # left the group on purpose: out of supervise's reach


async def test_cancelling_supervise_kills_the_group(tmp_path: Path) -> None:
    pids: list[int] = []
    started = asyncio.Event()

    def on_line(line: str) -> None:
        pids.append(int(line))
        started.set()

    task = asyncio.ensure_future(
        supervise(
            sh("sleep 1000 & echo $!; sleep 1000"),
            cwd=tmp_path,
            env=ENV,
            stdin=None,
            on_stdout_line=on_line,
            wall_seconds=30,
            stall_seconds=30,
        )
    )
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gone(pids[0])


async def test_callback_error_is_raised_after_the_group_is_gone(tmp_path: Path) -> None:
    pids: list[int] = []

    def on_line(line: str) -> StopReason | None:
        pids.append(int(line))
        raise RuntimeError("parser bug")

    with pytest.raises(RuntimeError, match="parser bug"):
        await supervise(
            sh("sleep 1000 & echo $!; sleep 1000"),
            cwd=tmp_path,
            env=ENV,
            stdin=None,
            on_stdout_line=on_line,
            wall_seconds=30,
            stall_seconds=30,
            kill_grace_seconds=0.3,
        )
    assert await gone(pids[0])


# --- start failures -------------------------------------------------------------------


async def test_missing_binary_is_a_start_error(tmp_path: Path) -> None:
    with pytest.raises(AgentStartError, match="no-such-agent-cli"):
        await run(["no-such-agent-cli", "--help"], tmp_path)


async def test_not_executable_is_a_start_error(tmp_path: Path) -> None:
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(AgentStartError, match=r"agent\.sh"):
        await run([str(script)], tmp_path)


async def test_missing_cwd_is_a_start_error(tmp_path: Path) -> None:
    with pytest.raises(AgentStartError, match="missing"):
        await run(["true"], tmp_path / "missing")


async def test_empty_argv_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="argv"):
        await run([], tmp_path)


# --- building blocks ------------------------------------------------------------------


def test_line_splitter_across_chunks() -> None:
    lines: list[str] = []
    splitter = LineSplitter(lines.append, max_bytes=5)
    for chunk in [b"ab", b"c\nde", b"", b"fghij", b"klm\nn\r\n", b"\n", b"tail"]:
        splitter.feed(chunk)
    splitter.close()
    assert lines == ["abc", "defgh", "n", "", "tail"]


def test_line_splitter_exact_cap_is_one_line() -> None:
    lines: list[str] = []
    splitter = LineSplitter(lines.append, max_bytes=3)
    splitter.feed(b"abc\nxyz")
    splitter.close()
    assert lines == ["abc", "xyz"]


def test_byte_tail_keeps_the_end() -> None:
    tail = ByteTail(10)
    tail.add(b"first line\nsecond\n")
    assert tail.text() == "second\n"
    short = ByteTail(100)
    short.add(b"a\nb")
    assert short.text() == "a\nb"
