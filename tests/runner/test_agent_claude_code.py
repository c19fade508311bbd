"""Claude Code: what only its module does (usage repeated by every block of a message, the
Write tool's result) and what only its pinned CLI is asked here (loading a skill's body,
stopping at max turns). The contract all agent modules keep is in test_agent_contract.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.contract import EventKind, RunStatus, Usage
from tests.fakes.model_server import ModelServer, Scenario, Step, ToolCall
from tests.runner.agent_cases.base import SKILL_BODY, kinds, parse, run_cli, skill_workspace
from tests.runner.agent_cases.claude_code import BASH_RUN_MIDDLE, INIT, REAL, WRITE_RUN


def test_a_recorded_run_reports_its_tool_and_the_usage_streamed_per_message() -> None:
    _, events = parse("claude_code", WRITE_RUN)

    _, call, _, result, text, usage, final = events
    assert (call.tool, call.tool_id) == ("Write", "toolu_000_00")
    assert call.input == {"file_path": "/tmp/cc/repo/hello.txt", "content": "hi\n"}
    assert result.tool_id == "toolu_000_00"
    assert result.is_error is False
    assert result.text is not None
    assert result.text.startswith("File created successfully")
    assert text.text == "All done."
    assert usage.usage == Usage(input_tokens=200, output_tokens=2)
    assert final.data["num_turns"] == 2


def test_blocks_of_one_message_count_its_usage_once_and_failed_tools_are_errors() -> None:
    _, events = parse("claude_code", [INIT, *BASH_RUN_MIDDLE])

    assert kinds(events) == [
        EventKind.SESSION,
        EventKind.TEXT,
        EventKind.USAGE,
        EventKind.TOOL_CALL,
        EventKind.TOOL_CALL,
        EventKind.TOOL_RESULT,
    ]
    assert events[2].usage == Usage(input_tokens=100, output_tokens=1)
    assert [event.tool for event in events[3:5]] == ["Bash", "Read"]
    assert (events[5].tool_id, events[5].text, events[5].is_error) == (
        "toolu_000_00",
        "Exit code 3\nout",
        True,
    )


# --- the real CLI -------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return skill_workspace(tmp_path, "claude_code")


def test_real_claude_loads_a_skill_body_when_the_model_asks_for_it(workspace: Path) -> None:
    scenario = Scenario(steps=[Step(tool_calls=(ToolCall("Skill", {"skill": "run-tests"}),))])

    with ModelServer(scenario) as server:
        finished = run_cli(REAL, server, workspace, max_turns=5)

    assert finished.outcome.status is RunStatus.SUCCEEDED
    assert SKILL_BODY in server.model_requests()[1].text


def test_real_claude_stops_at_max_turns(workspace: Path) -> None:
    bash = ToolCall("Bash", {"command": "echo one >> turns.txt", "description": "count"})
    scenario = Scenario(steps=[Step(text="Turn one.", tool_calls=(bash,))] * 5)

    with ModelServer(scenario) as server:
        finished = run_cli(REAL, server, workspace, max_turns=1)

    assert finished.outcome.status is RunStatus.MAX_TURNS
    assert finished.outcome.summary == "Turn one."
    assert (workspace / "turns.txt").read_text() == "one\n"
    assert len(server.model_requests()) == 1
