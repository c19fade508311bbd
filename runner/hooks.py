"""Hooks: a phase's shell commands, run in the worktree with the run's facts in the
environment, each with its exit code, duration and output tail recorded.

Like CI systems, every hook of a phase runs even after one fails, so a gate report names
all failing checks at once instead of one per attempt; `HookResult.blocks` marks the
failures that count. A hook's timeout stops its whole process group (SIGTERM, then SIGKILL),
so a test server a hook started in the background does not outlive it.
"""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from runner.contract import HookPhase, HookResult, HookSpec
from runner.process import AgentStartError, ProcessOutcome, StopReason, supervise
from runner.sandbox.confine import RunSandbox

log = structlog.get_logger(__name__)

SHELL = "/bin/sh"
OUTPUT_TAIL_CHARS = 16 * 1024
_OMITTED = "[... earlier output omitted ...]\n"


async def run_hooks(
    phase: HookPhase,
    hooks: Sequence[HookSpec],
    *,
    cwd: Path,
    ticket: str,
    workspace: Path,
    attempt: int,
    base_env: Mapping[str, str],
    on_result: Callable[[HookResult], None] | None = None,
    kill_grace_seconds: float = 5.0,
    confinement: RunSandbox | None = None,
) -> list[HookResult]:
    """Run `hooks` in order, all of them; `base_env` must already be scrubbed of secrets.
    With `confinement` each runs in the run's sandbox, like the agent."""
    results = []
    for hook in hooks:
        env = {
            **base_env,
            "OPENASE_TICKET": ticket,
            "OPENASE_WORKSPACE": str(workspace),
            "OPENASE_ATTEMPT": str(attempt),
            "OPENASE_HOOK": hook.name,
            "OPENASE_HOOK_PHASE": phase,
        }
        result = await _run_hook(phase, hook, cwd, env, kill_grace_seconds, confinement)
        log.info(
            "hook_finished",
            phase=phase,
            hook=hook.name,
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            seconds=round(result.duration_s, 2),
        )
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


async def _run_hook(
    phase: HookPhase,
    hook: HookSpec,
    cwd: Path,
    env: dict[str, str],
    grace: float,
    confinement: RunSandbox | None,
) -> HookResult:
    tail = _LineTail(OUTPUT_TAIL_CHARS)

    def on_line(line: str) -> None:
        tail.add(line)

    limit: str | None = None
    # Checks such as test suites may be quiet for long stretches: only the timeout applies
    # (the stall deadline never comes before the wall one).
    options: dict[str, Any] = {
        "stdin": None,
        "on_stdout_line": on_line,
        "wall_seconds": hook.timeout,
        "stall_seconds": hook.timeout,
        "kill_grace_seconds": grace,
        "max_line_bytes": OUTPUT_TAIL_CHARS,
        "merge_stderr": True,
    }
    try:
        outcome: ProcessOutcome
        if confinement is None:
            outcome = await supervise([SHELL, "-c", hook.run], cwd=cwd, env=env, **options)
        else:
            confined = await confinement.supervise(
                [SHELL, "-c", hook.run], cwd=cwd, worktree=cwd, env=env, **options
            )
            outcome, limit = confined.outcome, confined.limit
    except AgentStartError as error:
        return HookResult(
            phase=phase,
            name=hook.name,
            on_failure=hook.on_failure,
            exit_code=None,
            duration_s=0.0,
            output_tail=f"hook could not start: {error}",
        )
    timed_out = outcome.stop_reason is not StopReason.EXITED
    if timed_out:
        tail.add(f"[openase: hook timed out after {hook.timeout:g} s and was stopped]")
    exit_code = None if timed_out else outcome.exit_code
    if limit is not None:
        tail.add(f"[openase: the hook hit the sandbox's {limit}]")
        if exit_code == 0:
            exit_code = 1  # a check that ran out of room did not pass, whatever it says
    return HookResult(
        phase=phase,
        name=hook.name,
        on_failure=hook.on_failure,
        exit_code=exit_code,
        timed_out=timed_out,
        duration_s=outcome.duration_s,
        output_tail=tail.text(),
    )


class _LineTail:
    """The last whole lines of some output, at most `limit` characters in all."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lines: deque[str] = deque()
        self._size = 0
        self._omitted = False

    def add(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line) + 1
        while self._size > self._limit and len(self._lines) > 1:
            self._size -= len(self._lines.popleft()) + 1
            self._omitted = True

    def text(self) -> str:
        text = "\n".join(self._lines)
        if len(text) > self._limit:  # one line longer than the whole tail
            text = text[-self._limit :]
            self._omitted = True
        return (_OMITTED if self._omitted else "") + text


def describe_failure(result: HookResult) -> str:
    """'exit status 1', 'timed out', 'could not start' or 'killed by signal SIGKILL'."""
    if result.timed_out:
        return "timed out"
    if result.exit_code is None:
        return "could not start"
    if result.exit_code < 0:
        return f"killed by signal {_signal_name(-result.exit_code)}"
    return f"exit status {result.exit_code}"


def gate_report(results: Sequence[HookResult], *, max_chars: int = 8000) -> str:
    """Markdown describing the failed blocking hooks with their output tails, for the next
    attempt's prompt; empty when none failed. Each tail shares `max_chars` equally."""
    failed = [result for result in results if result.blocks]
    if not failed:
        return ""
    heads = [
        f"### `{result.name}` ({result.phase}) failed: {describe_failure(result)}"
        f" after {result.duration_s:.1f} s\n"
        for result in failed
    ]
    fences = [_fence(result.output_tail) for result in failed]
    # Per section: the heading, two fences, the info string and the newlines between.
    overhead = sum(
        len(head) + 2 * len(fence) + 9 for head, fence in zip(heads, fences, strict=True)
    )
    share = max(0, (max_chars - overhead) // len(failed))
    sections = []
    for head, fence, result in zip(heads, fences, failed, strict=True):
        output = _keep_end(result.output_tail.rstrip("\n"), share) or "(no output)"
        sections.append(f"{head}\n{fence}text\n{output}\n{fence}\n")
    return "\n".join(sections)[:max_chars]


def _keep_end(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[len(text) - limit :]
    newline = cut.find("\n")
    # Start on a whole line unless that would throw most of the room away.
    return cut[newline + 1 :] if 0 <= newline < limit // 2 else cut


def _fence(text: str) -> str:
    """A code fence longer than any backtick run in `text`, so the output cannot close it."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
