"""runner.hooks: block / warn / ignore, timeouts, output capture, environment, gate report."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.contract import HookPhase, HookResult, HookSpec, OnFailure
from runner.hooks import OUTPUT_TAIL_CHARS, describe_failure, gate_report, run_hooks
from tests.support.processes import gone

BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}


def hook(name: str, run: str, on_failure: OnFailure = "block", timeout: float = 10) -> HookSpec:
    return HookSpec(name=name, run=run, on_failure=on_failure, timeout=timeout)


async def run(
    tmp_path: Path,
    *hooks: HookSpec,
    phase: HookPhase = "on_complete",
    seen: list[HookResult] | None = None,
) -> list[HookResult]:
    return await run_hooks(
        phase,
        hooks,
        cwd=tmp_path,
        ticket="octo/hello#12",
        workspace=tmp_path,
        attempt=2,
        base_env=BASE_ENV,
        on_result=None if seen is None else seen.append,
        kill_grace_seconds=0.3,
    )


async def test_passing_hook(tmp_path: Path) -> None:
    [result] = await run(tmp_path, hook("lint", "echo all good"))
    assert result.passed
    assert not result.blocks
    assert result.exit_code == 0
    assert not result.timed_out
    assert result.output_tail == "all good"
    assert result.phase == "on_complete"
    assert result.name == "lint"
    assert 0 < result.duration_s < 2


@pytest.mark.parametrize(
    ("on_failure", "blocks"), [("block", True), ("warn", False), ("ignore", False)]
)
async def test_failure_blocks_only_when_blocking(
    tmp_path: Path, on_failure: OnFailure, blocks: bool
) -> None:
    [result] = await run(tmp_path, hook("tests", "echo 2 failed; exit 3", on_failure))
    assert result.exit_code == 3
    assert not result.passed
    assert result.blocks is blocks
    assert result.on_failure == on_failure


async def test_every_hook_of_the_phase_runs_after_a_blocking_failure(tmp_path: Path) -> None:
    seen: list[HookResult] = []
    results = await run(
        tmp_path,
        hook("first", "exit 1"),
        hook("second", "echo still ran > second.txt"),
        hook("third", "exit 2", "warn"),
        seen=seen,
    )
    assert [r.name for r in results] == ["first", "second", "third"]
    assert seen == results  # reported one by one, as each finished
    assert [r.blocks for r in results] == [True, False, False]
    assert (tmp_path / "second.txt").read_text() == "still ran\n"


async def test_timeout_stops_the_hook_and_its_children(tmp_path: Path) -> None:
    started = time.monotonic()
    [result] = await run(
        tmp_path,
        hook(
            "slow",
            "sleep 1000 & echo $! > bg.pid; trap '' TERM; echo working; sleep 1000",
            timeout=0.4,
        ),
    )
    assert time.monotonic() - started < 2
    assert result.timed_out
    assert result.exit_code is None
    assert result.blocks
    assert result.output_tail.startswith("working\n")
    assert "timed out after 0.4 s" in result.output_tail
    assert await gone(int((tmp_path / "bg.pid").read_text()))


async def test_stdout_and_stderr_interleaved_in_order(tmp_path: Path) -> None:
    [result] = await run(
        tmp_path, hook("mixed", "echo one; echo two >&2; echo three; echo four >&2; exit 1")
    )
    assert result.output_tail == "one\ntwo\nthree\nfour"


async def test_output_tail_keeps_the_last_whole_lines(tmp_path: Path) -> None:
    [result] = await run(tmp_path, hook("noisy", "seq 1 20000"))
    tail = result.output_tail
    assert len(tail) <= OUTPUT_TAIL_CHARS + 100
    marker, first, *_ = tail.split("\n")
    assert "omitted" in marker
    assert tail.endswith("\n20000")
    # The first kept line is whole: it follows its predecessor in the sequence.
    assert int(first) > 10000
    assert tail.split("\n")[1:] == [str(i) for i in range(int(first), 20001)]


async def test_environment_is_base_plus_openase_facts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENASE_PROBE_SECRET", "must-not-leak")
    [result] = await run(tmp_path, hook("env", "env"), phase="on_start")
    env = dict(line.split("=", 1) for line in result.output_tail.splitlines())
    env.pop("PWD", None)  # some shells export it themselves
    env.pop("SHLVL", None)
    assert env == {
        **BASE_ENV,
        "OPENASE_TICKET": "octo/hello#12",
        "OPENASE_WORKSPACE": str(tmp_path),
        "OPENASE_ATTEMPT": "2",
        "OPENASE_HOOK": "env",
        "OPENASE_HOOK_PHASE": "on_start",
    }


async def test_runs_in_cwd(tmp_path: Path) -> None:
    [result] = await run(tmp_path, hook("where", "pwd; test -f marker"))
    assert result.output_tail.splitlines()[0] == str(tmp_path)
    assert result.exit_code == 1
    (tmp_path / "marker").touch()
    [again] = await run(tmp_path, hook("where", "test -f marker"))
    assert again.passed


async def test_hook_that_cannot_start(tmp_path: Path) -> None:
    [result] = await run(tmp_path / "gone", hook("lint", "true"))
    assert result.exit_code is None
    assert not result.timed_out
    assert result.blocks
    assert "could not start" in result.output_tail
    assert describe_failure(result) == "could not start"


async def test_hook_killed_by_a_signal(tmp_path: Path) -> None:
    [result] = await run(tmp_path, hook("crash", "kill -KILL $$"))
    assert result.exit_code == -9
    assert describe_failure(result) == "killed by signal SIGKILL"


async def test_no_hooks_no_results(tmp_path: Path) -> None:
    assert await run(tmp_path) == []


# --- gate report ----------------------------------------------------------------------


async def test_gate_report_names_failed_blocking_hooks_only(tmp_path: Path) -> None:
    results = await run(
        tmp_path,
        hook("lint", "echo lint is clean"),
        hook("tests", "echo 'FAILED test_login - AssertionError'; exit 1"),
        hook("style", "echo style nit; exit 1", "warn"),
        hook("types", "echo 'error: bad return type' >&2; exit 2"),
    )
    report = gate_report(results)
    assert "`tests` (on_complete) failed: exit status 1" in report
    assert "FAILED test_login - AssertionError" in report
    assert "`types` (on_complete) failed: exit status 2" in report
    assert "error: bad return type" in report
    assert "lint" not in report
    assert "style" not in report
    assert report.index("tests") < report.index("types")


def result(
    name: str, output: str, exit_code: int | None = 1, timed_out: bool = False
) -> HookResult:
    return HookResult(
        phase="on_complete",
        name=name,
        on_failure="block",
        exit_code=exit_code,
        timed_out=timed_out,
        duration_s=1.5,
        output_tail=output,
    )


def test_gate_report_empty_when_all_passed() -> None:
    assert gate_report([result("ok", "fine", exit_code=0)]) == ""
    assert gate_report([]) == ""


def test_gate_report_fits_max_chars_keeping_the_end() -> None:
    output = "\n".join(f"line {i}" for i in range(5000))
    report = gate_report([result("a", output), result("b", output)], max_chars=2000)
    assert len(report) <= 2000
    assert report.count("line 4999") == 2  # the end of each output survives
    assert "line 0\n" not in report
    assert "timed out" in gate_report([result("slow", "", exit_code=None, timed_out=True)])


def test_gate_report_fence_survives_backticks_in_output() -> None:
    report = gate_report([result("docs", "```\nnot the end\n```")])
    assert "````text\n```\nnot the end\n```\n````" in report
