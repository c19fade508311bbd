"""A whole run through `runner.execute`: real git, a local bare remote, real processes.

The `command` agent runs small Python scripts that behave like agents (and misbehave:
sleep, flood, ignore SIGTERM); a fake `claude` speaking Claude Code's stream-json drives the
token budget. The real agent CLIs are exercised in tests/test_agent_*.py and
tests/test_runner_claude_code.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from runner.contract import (
    AgentConfig,
    EventKind,
    Hooks,
    HookSpec,
    Limits,
    RunStatus,
    SkillFile,
    SkillSpec,
)
from runner.execute import Cancellation, compose_prompt
from tests.support.git_repos import branch_files, git, make_remote, show
from tests.support.runs import HARNESS, PARTIAL_THEN, run, script, spec_for

WRITER = """
import pathlib, sys
prompt = pathlib.Path(sys.argv[1]).read_text()
instructions = pathlib.Path(sys.argv[2]).read_text()
pathlib.Path("hello.txt").write_text("hello\\n")
skill = pathlib.Path(sys.argv[3])
print("prompt:", prompt.splitlines()[0])
print("instructions:", instructions.splitlines()[0])
print("skill seen:", skill.read_text().splitlines()[1])
print("all done")
"""

SKILL = SkillSpec(
    name="run-tests",
    version=2,
    files=(
        SkillFile(
            path="SKILL.md",
            content="---\nname: run-tests\ndescription: how to run tests\n---\nUse pytest.\n",
        ),
    ),
)


async def test_a_run_pushes_the_agents_work_and_keeps_skills_out_of_the_commit(
    tmp_path: Path,
) -> None:
    remote = make_remote(tmp_path)
    agent = script(tmp_path, "agent.py", WRITER)
    spec = spec_for(
        remote,
        [str(agent), "{prompt_file}", "{instructions_file}", ".agents/skills/run-tests/SKILL.md"],
        skills=(SKILL,),
        hooks=Hooks(on_complete=(HookSpec(name="has-hello", run="test -f hello.txt"),)),
    )

    result, events = await run(tmp_path, spec)

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.pushed
    assert result.head_sha == git(remote, "rev-parse", "openase/7-add-hello")
    assert branch_files(remote, "openase/7-add-hello") == ["README.md", "hello.txt"]
    texts = [event.text for event in events if event.kind is EventKind.LOG]
    assert "prompt: Create hello.txt" in texts
    assert f"instructions: {HARNESS}" in texts
    assert "skill seen: name: run-tests" in texts
    assert [hook.name for hook in result.hook_results] == ["has-hello"]
    assert result.hook_results[0].passed
    message = git(remote, "log", "-1", "--format=%B", "openase/7-add-hello")
    assert message.startswith("acme/api#7: Add hello")
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    phases = [event.text for event in events if event.kind is EventKind.PHASE]
    assert phases == ["preparing", "agent", "committing", "pushing", "gating", "hooks", "done"]


async def test_a_blocking_gate_failure_fails_the_run_but_keeps_the_work(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    agent = script(tmp_path, "agent.py", "open('hello.txt', 'w').write('hi')\n")
    hooks = Hooks(
        on_complete=(
            HookSpec(name="tests", run="echo 'FAILED test_hello: expected 2' >&2; exit 3"),
            HookSpec(name="lint", run="echo style; exit 1", on_failure="warn"),
        ),
        on_error=(HookSpec(name="notify", run="echo on_error ran"),),
    )
    result, _ = await run(tmp_path, spec_for(remote, [str(agent)], hooks=hooks))

    assert result.status is RunStatus.GATES_FAILED
    assert result.error_class == "gates_failed"
    assert [hook.name for hook in result.gate_failures] == ["tests"]
    tests = result.hook_results[0]
    assert tests.exit_code == 3
    assert "FAILED test_hello: expected 2" in tests.output_tail
    assert [(hook.phase, hook.name) for hook in result.hook_results] == [
        ("on_complete", "tests"),
        ("on_complete", "lint"),
        ("on_error", "notify"),
    ]
    assert result.pushed
    assert "hello.txt" in branch_files(remote, "openase/7-add-hello")


async def test_a_failing_warn_hook_does_not_fail_the_run(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    agent = script(tmp_path, "agent.py", "open('hello.txt', 'w').write('hi')\n")
    hooks = Hooks(on_complete=(HookSpec(name="lint", run="exit 1", on_failure="warn"),))
    result, _ = await run(tmp_path, spec_for(remote, [str(agent)], hooks=hooks))
    assert result.status is RunStatus.SUCCEEDED
    assert not result.hook_results[0].passed


async def test_a_blocking_on_start_hook_stops_the_run_before_the_agent(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    marker = tmp_path / "agent-ran"
    agent = script(tmp_path, "agent.py", f"open({str(marker)!r}, 'w').write('x')\n")
    hooks = Hooks(on_start=(HookSpec(name="deps", run="echo cannot install; exit 2"),))
    result, _ = await run(tmp_path, spec_for(remote, [str(agent)], hooks=hooks))
    assert result.status is RunStatus.GATES_FAILED
    assert result.error == "on_start hook 'deps' failed"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("mode", "limits", "status", "error"),
    [
        ("sleep", Limits(stall_seconds=1, kill_grace_seconds=1), RunStatus.STALLED, "no output"),
        (
            "chatty",
            Limits(wall_seconds=1.5, stall_seconds=60, kill_grace_seconds=1),
            RunStatus.TIMEOUT,
            "wall-time limit",
        ),
        (
            "stubborn",
            Limits(stall_seconds=1, kill_grace_seconds=0.5),
            RunStatus.STALLED,
            "no output for 1 s",
        ),
    ],
)
async def test_limits_stop_the_agent_and_commit_its_partial_work(
    tmp_path: Path, mode: str, limits: Limits, status: RunStatus, error: str
) -> None:
    remote = make_remote(tmp_path)
    agent = script(tmp_path, "agent.py", PARTIAL_THEN)
    started = time.monotonic()
    result, _ = await run(tmp_path, spec_for(remote, [str(agent), mode], limits=limits))
    elapsed = time.monotonic() - started

    assert result.status is status
    assert result.error is not None
    assert error in result.error
    assert elapsed < 10  # the process group is gone within seconds of the limit
    assert result.pushed
    assert show(remote, "openase/7-add-hello", "partial.txt") == "half done"
    message = git(remote, "log", "-1", "--format=%B", "openase/7-add-hello")
    assert f"stopped: {status.value}" in message


async def test_cancel_stops_an_agent_that_ignores_sigterm(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    agent = script(tmp_path, "agent.py", PARTIAL_THEN)
    cancellation = Cancellation()
    hooks = Hooks(on_cancel=(HookSpec(name="tidy", run="echo canceled"),))
    spec = spec_for(
        remote,
        [str(agent), "stubborn"],
        hooks=hooks,
        limits=Limits(kill_grace_seconds=0.5),
    )

    async def cancel_soon() -> None:
        await asyncio.sleep(1.0)
        cancellation.cancel("canceled by @octocat with /cancel")

    canceler = asyncio.create_task(cancel_soon())
    started = time.monotonic()
    result, _ = await run(tmp_path, spec, cancellation)
    await canceler

    assert result.status is RunStatus.CANCELED
    assert result.error == "canceled by @octocat with /cancel"
    assert result.error_class == "canceled"
    assert time.monotonic() - started < 8
    assert show(remote, "openase/7-add-hello", "partial.txt") == "half done"
    assert [hook.name for hook in result.hook_results] == ["tidy"]


FAKE_CLAUDE = """
import json, sys, time
print(json.dumps({"type": "system", "subtype": "init", "session_id": "sess-1"}), flush=True)
open("partial.txt", "w").write("spent tokens\\n")
for turn in range(1000):
    print(json.dumps({"type": "assistant", "session_id": "sess-1", "message": {
        "id": f"msg_{turn}", "content": [{"type": "text", "text": f"turn {turn}"}],
        "usage": {"input_tokens": 400, "output_tokens": 100}}}), flush=True)
    time.sleep(0.02)
"""


async def test_a_token_budget_stops_the_agent(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    fake = script(tmp_path, "claude", FAKE_CLAUDE)
    spec = spec_for(
        remote,
        [],
        cli="claude_code",
        binary=str(fake),
        limits=Limits(max_tokens=5000, kill_grace_seconds=1),
    )
    result, events = await run(tmp_path, spec)

    assert result.status is RunStatus.OVER_BUDGET
    assert result.error == "budget spent: 5000 tokens of the 5000 allowed"
    assert 5000 <= result.usage.total_tokens < 6000
    assert result.session_id == "sess-1"
    assert show(remote, "openase/7-add-hello", "partial.txt") == "spent tokens"
    assert any(event.kind is EventKind.TEXT and event.text == "turn 0" for event in events)


async def test_a_missing_agent_cli_is_an_infra_error(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    spec = spec_for(remote, [], cli="codex", binary="no-such-codex-cli")
    result, _ = await run(tmp_path, spec)
    assert result.status is RunStatus.INFRA_ERROR
    assert result.error_class == "agent_cli_missing"
    assert "no-such-codex-cli" in (result.error or "")


async def test_an_unreachable_remote_is_an_infra_error(tmp_path: Path) -> None:
    spec = spec_for(tmp_path / "missing.git", ["true"])
    result, _ = await run(tmp_path, spec)
    assert result.status is RunStatus.INFRA_ERROR
    assert result.error_class == "git_prepare_failed"


async def test_the_agents_own_commits_carry_the_runs_identity(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    agent = script(
        tmp_path,
        "agent.py",
        "import subprocess\n"
        "open('a.txt', 'w').write('a')\n"
        "subprocess.run(['git', 'add', 'a.txt'], check=True)\n"
        "subprocess.run(['git', 'commit', '-q', '-m', 'agent: add a'], check=True)\n",
    )
    result, _ = await run(tmp_path, spec_for(remote, [str(agent)]))
    assert result.status is RunStatus.SUCCEEDED, result.error
    log = git(remote, "log", "-1", "--format=%s|%an|%ae", "openase/7-add-hello")
    assert log == "agent: add a|OpenASE|openase@users.noreply.github.com"


async def test_an_agent_that_fails_is_reported_with_its_exit_status(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    agent = script(
        tmp_path, "agent.py", "import sys; print('giving up', file=sys.stderr); sys.exit(4)\n"
    )
    result, events = await run(tmp_path, spec_for(remote, [str(agent)]))
    assert result.status is RunStatus.AGENT_ERROR
    assert result.agent_exit_code == 4
    assert any(
        event.kind is EventKind.LOG
        and event.text == "giving up"
        and event.data == {"stream": "stderr"}
        for event in events
    )
    assert not result.pushed  # nothing changed, nothing to push


async def test_rework_starts_from_the_pushed_branch(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    first = script(tmp_path, "first.py", "open('a.txt', 'w').write('1')\n")
    second = script(
        tmp_path,
        "second.py",
        "import os; assert os.path.exists('a.txt'); open('b.txt', 'w').write('2')\n",
    )
    one, _ = await run(tmp_path, spec_for(remote, [str(first)], run_id="run-1"))
    two, _ = await run(
        tmp_path,
        spec_for(remote, [str(second)], run_id="run-2", attempt=2, previous_failure="tests failed"),
    )
    assert one.status is RunStatus.SUCCEEDED
    assert two.status is RunStatus.SUCCEEDED, two.error
    assert branch_files(remote, "openase/7-add-hello") == ["README.md", "a.txt", "b.txt"]
    assert git(remote, "rev-parse", "openase/7-add-hello~1") == one.head_sha


def test_the_prompt_carries_the_previous_failure() -> None:
    spec = spec_for(Path("/r.git"), ["true"], attempt=3, previous_failure="tests: 2 failed")
    prompt = compose_prompt(spec)
    assert prompt.startswith("Create hello.txt")
    assert "previous attempt (#2) failed" in prompt
    assert prompt.endswith("tests: 2 failed\n")
    assert compose_prompt(spec_for(Path("/r.git"), ["true"])) == "Create hello.txt"


async def test_the_agent_gets_a_scrubbed_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENASE_GITHUB_WEBHOOK_SECRET", "whsec-do-not-leak")
    monkeypatch.setenv("OPENASE_DATABASE_URL", "postgresql://u:pw@db/x")
    remote = make_remote(tmp_path)
    dump = script(
        tmp_path,
        "env.py",
        "import json, os; open('env.json', 'w').write(json.dumps(dict(os.environ)))\n",
    )
    spec = spec_for(
        remote,
        [str(dump)],
        git_token="ghs_secret_token",
        agent=AgentConfig.model_validate(
            {"cli": "command", "argv": [str(dump)], "env": {"ANTHROPIC_API_KEY": "sk-test"}}
        ),
    )
    result, _ = await run(tmp_path, spec)
    env = json.loads(show(remote, "openase/7-add-hello", "env.json"))
    assert result.status is RunStatus.SUCCEEDED
    assert env["ANTHROPIC_API_KEY"] == "sk-test"
    leaked = [value for value in env.values() if "do-not-leak" in value or "pw@db" in value]
    assert leaked == []
    assert "ghs_secret_token" not in json.dumps(env)


FAKE_OFFLINE_CODEX = """
import json, time
print(json.dumps({"type": "thread.started", "thread_id": "th-1"}), flush=True)
print(json.dumps({"type": "turn.started"}), flush=True)
for _ in range(100):  # what codex 0.169 prints, about every 10 s, when it cannot connect
    print(json.dumps({"type": "error", "message":
        "Reconnecting... waiting for network (Connection failed: error sending request)"}),
        flush=True)
    time.sleep(0.1)
"""


async def test_an_agent_retrying_an_unreachable_api_forever_is_stopped(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    fake = script(tmp_path, "codex", FAKE_OFFLINE_CODEX)
    spec = spec_for(remote, [], cli="codex", binary=str(fake), limits=Limits(kill_grace_seconds=1))
    started = time.monotonic()
    result, _ = await run(tmp_path, spec)
    assert result.status is RunStatus.API_ERROR
    assert result.error_class == "api_unreachable"
    assert "waiting for network" in (result.error or "")
    assert result.session_id == "th-1"
    assert time.monotonic() - started < 8


FAKE_PRICEY_CLAUDE = """
import json
print(json.dumps({"type": "system", "subtype": "init", "session_id": "s-2"}), flush=True)
open("work.txt", "w").write("done\\n")
print(json.dumps({"type": "result", "subtype": "success", "is_error": False,
    "result": "All done.", "session_id": "s-2", "total_cost_usd": 2.5}), flush=True)
"""


async def test_a_cost_reported_with_the_final_result_does_not_undo_a_finished_run(
    tmp_path: Path,
) -> None:
    remote = make_remote(tmp_path)
    fake = script(tmp_path, "claude", FAKE_PRICEY_CLAUDE)
    spec = spec_for(remote, [], cli="claude_code", binary=str(fake), limits=Limits(budget_usd=1.0))
    result, _ = await run(tmp_path, spec)
    assert result.status is RunStatus.SUCCEEDED
    assert result.cost_usd == 2.5
    assert result.summary == "All done."
