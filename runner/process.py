"""Run one child process under the runner's limits: wall time, stall, cancellation and the
caller's own stop test (budgets), always ending with its whole process group gone.

The child starts in a process group of its own (`runner.priority.child_group`: in the
runner's session, so it shares the runner's CPU priority), so "stop" reaches everything it
spawned: SIGTERM to the group, `kill_grace_seconds` to wind down, then SIGKILL. Even after
a normal exit the leftover members of the group are killed, so a background server started
by an agent or a hook never outlives its run. A process that leaves the group (its own
`setsid`) is out of reach; it can still hold our pipes open, so EOF is awaited only briefly.

Output is read as raw chunks rather than with `StreamReader.readline`: a line is capped at
`max_line_bytes` (the rest dropped), so a flood without newlines costs bounded memory.
Process exit is observed through the transport's protocol, not `Process.wait()`, which on
Python 3.11 also waits for every pipe to close and so hangs while a grandchild holds stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from runner.priority import child_group

STDERR_TAIL_BYTES = 8 * 1024
# After the group is gone, buffered output is read within milliseconds; longer means an
# escaped process holds the pipe, and nothing more is worth waiting for.
_DRAIN_SECONDS = 2.0
# SIGKILL cannot be ignored, but a process in uninterruptible sleep (D state) dies late.
_REAP_SECONDS = 2.0


class AgentStartError(Exception):
    """The program could not be started at all (missing, not executable, bad cwd)."""


class StopReason(StrEnum):
    EXITED = "exited"  # ended on its own
    TIMEOUT = "timeout"  # wall-time limit
    STALLED = "stalled"  # no output on stdout or stderr for stall_seconds
    CANCELED = "canceled"
    OVER_BUDGET = "over_budget"  # the caller's line callback asked to stop


@dataclass(frozen=True)
class ProcessOutcome:
    exit_code: int | None  # negative: killed by that signal; None: exit never observed
    stop_reason: StopReason
    duration_s: float
    stderr_tail: str  # last ~8 KB; empty when stderr was merged into stdout
    killed: bool  # the process outlived SIGTERM and its grace and needed SIGKILL


class LineSplitter:
    """Turns chunks of bytes into decoded lines, each capped at `max_bytes`."""

    def __init__(self, emit: Callable[[str], None], max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self._emit = emit
        self._max = max_bytes
        self._buffer = bytearray()
        self._dropping = False  # an over-long line was delivered; skip to its newline

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        start = 0
        while True:
            newline = data.find(b"\n", start)
            if newline < 0:
                self._append(view[start:])
                return
            self._append(view[start:newline])
            self._end_line()
            start = newline + 1

    def close(self) -> None:
        """Deliver a last line that had no newline."""
        if self._buffer:
            self._end_line()

    def _append(self, chunk: memoryview) -> None:
        if self._dropping or not chunk:
            return
        room = self._max - len(self._buffer)
        if len(chunk) < room:
            self._buffer += chunk
            return
        # Deliver the capped line now: waiting for a newline that may never come would
        # delay the caller (and its stall and budget view) indefinitely.
        self._buffer += chunk[:room]
        self._end_line()
        self._dropping = True

    def _end_line(self) -> None:
        if self._dropping:
            self._dropping = False
            return
        line = self._buffer.decode("utf-8", errors="replace")
        self._buffer.clear()
        self._emit(line.removesuffix("\r"))


class ByteTail:
    """The last `limit` bytes of a stream, as text starting at a line boundary if it can."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._data = bytearray()
        self._cut = False

    def add(self, data: bytes) -> None:
        self._data += data
        excess = len(self._data) - self._limit
        if excess > 0:
            del self._data[:excess]
            self._cut = True

    def text(self) -> str:
        data = bytes(self._data)
        if self._cut:
            newline = data.find(b"\n")
            if 0 <= newline < len(data) // 2:
                data = data[newline + 1 :]
        return data.decode("utf-8", errors="replace")


class _Watcher(asyncio.SubprocessProtocol):
    """Feeds output to the splitters and records activity, exit and stop requests."""

    def __init__(
        self,
        on_stdout_line: Callable[[str], StopReason | None],
        on_stderr_line: Callable[[str], None] | None,
        max_line_bytes: int,
        started: float,
    ) -> None:
        self._on_stdout_line = on_stdout_line
        self._on_stderr_line = on_stderr_line
        self.stdout = LineSplitter(self._stdout_line, max_line_bytes)
        self.stderr = LineSplitter(self._stderr_line, max_line_bytes)
        self.stderr_tail = ByteTail(STDERR_TAIL_BYTES)
        self.last_output = started
        self.exited = asyncio.Event()
        self.pipes_closed = asyncio.Event()
        self.stop_requested = asyncio.Event()
        self.stop_reason: StopReason | None = None
        self.callback_error: BaseException | None = None
        self._open_pipes = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        assert isinstance(data, bytes)  # subprocess pipes are binary
        self.last_output = time.monotonic()
        if fd == 1:
            self.stdout.feed(data)
        else:
            self.stderr_tail.add(data)
            self.stderr.feed(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd not in self._open_pipes:
            return  # stdin, or stderr merged into stdout
        (self.stdout if fd == 1 else self.stderr).close()
        self._open_pipes.discard(fd)
        if not self._open_pipes:
            self.pipes_closed.set()

    def merged_stderr(self) -> None:
        self._open_pipes.discard(2)

    def process_exited(self) -> None:
        self.exited.set()

    def _stdout_line(self, line: str) -> None:
        if self.callback_error is not None:
            return
        try:
            reason = self._on_stdout_line(line)
        except Exception as error:
            # Raised in an event-loop callback it would only be logged; supervise re-raises
            # it once the process group is gone.
            self._request_stop(StopReason.CANCELED, error)
            return
        if reason is not None and reason is not StopReason.EXITED:
            self._request_stop(reason)

    def _stderr_line(self, line: str) -> None:
        if self._on_stderr_line is None or self.callback_error is not None:
            return
        try:
            self._on_stderr_line(line)
        except Exception as error:
            self._request_stop(StopReason.CANCELED, error)

    def _request_stop(self, reason: StopReason, error: BaseException | None = None) -> None:
        if error is not None and self.callback_error is None:
            self.callback_error = error
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop_requested.set()


async def supervise(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdin: bytes | None,
    on_stdout_line: Callable[[str], StopReason | None],
    on_stderr_line: Callable[[str], None] | None = None,
    wall_seconds: float,
    stall_seconds: float,
    cancel: asyncio.Event | None = None,
    kill_grace_seconds: float = 5.0,
    max_line_bytes: int = 1_000_000,
    merge_stderr: bool = False,
    pass_fds: Sequence[int] = (),
) -> ProcessOutcome:
    """Run `argv` (no shell) until it exits or a limit stops it; never raises for a process
    that fails, only `AgentStartError` when it cannot be started at all.

    `env` is the child's whole environment (PATH in it is also where argv[0] is looked up).
    `merge_stderr` sends stderr into the stdout lines, in the order the child wrote them.
    `pass_fds` are kept open in the child (the sandbox's report pipe).
    """
    if not argv:
        raise ValueError("supervise needs a non-empty argv")
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    watcher = _Watcher(on_stdout_line, on_stderr_line, max_line_bytes, started)
    if merge_stderr:
        watcher.merged_stderr()
    try:
        transport, _ = await loop.subprocess_exec(
            lambda: watcher,
            *argv,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            cwd=cwd,
            env=dict(env),
            pass_fds=tuple(pass_fds),
            **child_group(),
        )
    except OSError as error:
        raise AgentStartError(f"cannot start {argv[0]!r}: {error}") from error
    pid = transport.get_pid()
    killed = False
    try:
        if stdin is not None:
            pipe = transport.get_pipe_transport(0)
            if isinstance(pipe, asyncio.WriteTransport):
                pipe.write(stdin)  # buffered by the transport; a child need not read it
                pipe.close()
        reason = await _watch(watcher, started, wall_seconds, stall_seconds, cancel)
        if reason is not StopReason.EXITED:
            killed = await _stop_group(pid, watcher.exited, kill_grace_seconds)
        _signal_group(pid, signal.SIGKILL)  # leftovers: background children of the child
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher.pipes_closed.wait(), _DRAIN_SECONDS)
    finally:
        if not watcher.exited.is_set():  # we are being cancelled or failed ourselves
            _signal_group(pid, signal.SIGKILL)
        transport.close()
    if watcher.callback_error is not None:
        raise watcher.callback_error
    return ProcessOutcome(
        exit_code=transport.get_returncode(),
        stop_reason=reason,
        duration_s=time.monotonic() - started,
        stderr_tail=watcher.stderr_tail.text(),
        killed=killed,
    )


async def _watch(
    watcher: _Watcher,
    started: float,
    wall_seconds: float,
    stall_seconds: float,
    cancel: asyncio.Event | None,
) -> StopReason:
    """Wait for the first of: exit, a stop request, cancel, wall deadline, stall."""
    wall_deadline = started + wall_seconds
    waits = [
        asyncio.ensure_future(watcher.exited.wait()),
        asyncio.ensure_future(watcher.stop_requested.wait()),
    ]
    if cancel is not None:
        waits.append(asyncio.ensure_future(cancel.wait()))
    try:
        while True:
            if watcher.stop_reason is not None:
                return watcher.stop_reason
            if watcher.exited.is_set():
                return StopReason.EXITED
            if cancel is not None and cancel.is_set():
                return StopReason.CANCELED
            now = time.monotonic()
            if now >= wall_deadline:
                return StopReason.TIMEOUT
            stall_deadline = watcher.last_output + stall_seconds
            if now >= stall_deadline:
                return StopReason.STALLED
            await asyncio.wait(
                waits,
                timeout=min(wall_deadline, stall_deadline) - now,
                return_when=asyncio.FIRST_COMPLETED,
            )
    finally:
        for wait in waits:
            wait.cancel()


async def _stop_group(pid: int, exited: asyncio.Event, grace: float) -> bool:
    """SIGTERM the group, SIGKILL it after `grace`; True when SIGKILL was needed."""
    _signal_group(pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(exited.wait(), grace)
        return False
    except TimeoutError:
        _signal_group(pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(exited.wait(), _REAP_SECONDS)
    return True


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    # ESRCH: the group is already empty. EPERM: only possible if the id was reused by
    # someone else's group, which must not be touched.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists (another user's counts: alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    return True
