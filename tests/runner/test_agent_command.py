"""The `command` agent: what only its argv templates do, its plain-text parser, and a real
run through runner.process.supervise that edits a file. Its argv, files and env are checked
with every agent module's in test_agent_contract.py."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from runner.agents.base import Outcome
from runner.agents.command import SUMMARY_CHARS, Command, CommandParser, expand_argv
from runner.contract import AgentConfig, EventKind, RunStatus
from runner.process import StopReason, supervise
from tests.runner.agent_cases.base import agent_run


def command(*argv: str, **fields: object) -> AgentConfig:
    return AgentConfig.model_validate({"cli": "command", "argv": argv, **fields})


def test_prompt_text_is_not_expanded_again(tmp_path: Path) -> None:
    run = agent_run(tmp_path, command("agent", "{prompt}"), prompt="use {ticket} and {{x}}")
    assert Command().invocation(run, "").argv == ["agent", "use {ticket} and {{x}}"]


def test_binary_is_prefixed_when_configured(tmp_path: Path) -> None:
    run = agent_run(tmp_path, command("{prompt_file}", binary="/opt/agent/bin/run"))
    argv = Command().invocation(run, "").argv
    assert argv == ["/opt/agent/bin/run", str(run.prompt_file)]


@pytest.mark.parametrize(
    ("element", "message"),
    [
        ("{attempt}", "unknown placeholder {attempt}"),
        ("--x={prompt.__class__}", "unknown placeholder {prompt.__class__}"),
        ("{}", "unknown placeholder {}"),
        ("{prompt!r}", "no format spec or conversion"),
        ("{prompt:>40}", "no format spec or conversion"),
        ("{prompt", "literal braces"),
        ("}", "literal braces"),
        ("{model}", "no model set"),
    ],
)
def test_bad_templates_are_refused(tmp_path: Path, element: str, message: str) -> None:
    run = agent_run(tmp_path, command("agent", element))
    with pytest.raises(ValueError, match="argv") as raised:
        Command().invocation(run, "")
    assert message in str(raised.value)
    assert not run.prompt_file.exists()  # refused before writing anything


def test_empty_argv_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="command agent needs argv"):
        Command().invocation(agent_run(tmp_path, command()), "")


def test_expand_argv_alone() -> None:
    assert expand_argv(["a{x}b", "{{{x}}}"], {"x": "1"}) == ["a1b", "{1}"]


# --- parser ---------------------------------------------------------------------------


def test_every_line_is_a_log_event() -> None:
    parser = CommandParser()
    events = [event for line in ["working", "", "  done  "] for event in parser.feed(line)]
    assert [(event.kind, event.text) for event in events] == [
        (EventKind.LOG, "working"),
        (EventKind.LOG, ""),
        (EventKind.LOG, "  done  "),
    ]
    assert parser.state.final_text == "working\n  done  "


def test_summary_is_the_last_lines_within_the_limit() -> None:
    parser = CommandParser()
    for i in range(1000):
        parser.feed(f"step {i}")
    summary = parser.state.final_text
    assert summary is not None
    assert len(summary) <= SUMMARY_CHARS
    assert summary.endswith("step 999")
    assert summary.split("\n")[0].startswith("step ")  # whole lines
    parser.feed("x" * 5000)
    assert parser.state.final_text == "x" * SUMMARY_CHARS


def test_finish_classifies_exit_status() -> None:
    parser = CommandParser()
    parser.feed("changed hello.txt")
    ok = parser.finish(0, "")
    assert ok.status is RunStatus.SUCCEEDED
    assert ok.summary == "changed hello.txt"
    assert ok.error is None

    failed = parser.finish(2, "warming up\nfatal: no model configured\n")
    assert failed.status is RunStatus.AGENT_ERROR
    assert failed.error_class == "exit_status"
    assert failed.error is not None
    assert failed.error.startswith("exited with status 2")
    assert "fatal: no model configured" in failed.error
    assert failed.summary == "changed hello.txt"

    killed = CommandParser().finish(-9, "")
    assert killed.status is RunStatus.AGENT_ERROR
    assert killed.error == "killed by signal 9"


# --- a real run -----------------------------------------------------------------------

# Python source inside an argv template: literal braces are doubled.
EDITOR = textwrap.dedent("""
    import os, pathlib, sys
    prompt = pathlib.Path(sys.argv[1]).read_text()
    instructions = pathlib.Path(os.environ["OPENASE_INSTRUCTIONS_FILE"]).read_text()
    stdin = sys.stdin.read()
    print("task:", prompt)
    print("stdin matches:", stdin == prompt)
    print("harness:", instructions.split(".")[0])
    pathlib.Path("hello.txt").write_text("Hello, {{}}!\\n".format(sys.argv[2]))
    print("edited hello.txt for", os.environ["OPENASE_TICKET"])
    sys.exit(int(sys.argv[3]))
""")


async def run_editor(tmp_path: Path, exit_status: int) -> tuple[list[str], str, Outcome]:
    config = command(sys.executable, "-c", EDITOR, "{prompt_file}", "{ticket}", str(exit_status))
    run = agent_run(
        tmp_path,
        config,
        prompt="Fix the greeting",
        instructions="You are the coder. Commit nothing yourself.",
        ticket_key="octo/hello#12",
    )
    run.workspace.mkdir()
    agent = Command()
    invocation = agent.invocation(run, binary=sys.executable)
    parser = agent.parser()
    texts: list[str] = []

    def on_line(line: str) -> StopReason | None:
        texts.extend(event.text or "" for event in parser.feed(line))
        return None

    outcome = await supervise(
        invocation.argv,
        cwd=run.workspace,
        env=invocation.env,
        stdin=invocation.stdin,
        on_stdout_line=on_line,
        wall_seconds=10,
        stall_seconds=10,
        kill_grace_seconds=0.3,
    )
    assert outcome.stop_reason is StopReason.EXITED
    assert outcome.exit_code == exit_status
    result = parser.finish(outcome.exit_code, outcome.stderr_tail)
    return texts, (run.workspace / "hello.txt").read_text(), result


async def test_real_run_edits_a_file(tmp_path: Path) -> None:
    texts, hello, result = await run_editor(tmp_path, 0)
    assert hello == "Hello, octo/hello#12!\n"
    assert texts == [
        "task: Fix the greeting",
        "stdin matches: True",
        "harness: You are the coder",
        "edited hello.txt for octo/hello#12",
    ]
    assert result.status is RunStatus.SUCCEEDED
    assert result.summary is not None
    assert result.summary.endswith("edited hello.txt for octo/hello#12")


async def test_real_run_failing_is_an_agent_error(tmp_path: Path) -> None:
    _, hello, result = await run_editor(tmp_path, 4)
    assert hello.startswith("Hello")
    assert result.status is RunStatus.AGENT_ERROR
    assert result.error == "exited with status 4"
