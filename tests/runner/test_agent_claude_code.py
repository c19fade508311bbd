"""Claude Code: argv and scrubbed env, the stream-json parser on recorded output, and the
real pinned CLI against the scripted model server."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from runner.agents.base import TOOL_RESULT_LIMIT, Agent, AgentRun, Outcome, StreamParser
from runner.agents.claude_code import QUIET_ENV, ClaudeCode, ClaudeCodeParser
from runner.contract import AgentConfig, AgentEvent, EventKind, Limits, RunStatus, Usage
from tests.agent_clis import agent_cli
from tests.fakes.model_server import ModelServer, Scenario, Step, ToolCall
from tests.real_agents import Finished, of_kind, run_real, skill_repo

# Recorded from claude 2.1.330 against the scripted server (bulky fields the parser does not
# read, such as slash_commands, modelUsage and subagent_stats, were dropped).
SESSION = "9d6da2e7-64d2-45eb-ac6c-65ab039a2030"
INIT = (
    '{"type": "system", "subtype": "init", "cwd": "/tmp/cc/repo", "session_id": '
    '"9d6da2e7-64d2-45eb-ac6c-65ab039a2030", "tools": ["Bash", "Edit", "Read", "Skill", '
    '"Write"], "model": "claude-opus-5-5", "permissionMode": "acceptEdits", "apiKeySource": '
    '"ANTHROPIC_API_KEY", "claude_code_version": "2.1.330"}'
)
WRITE_RUN = [
    INIT,
    '{"type": "assistant", "message": {"id": "msg_000", "type": "message", "role": '
    '"assistant", "model": "claude-opus-5-5", "content": [{"type": "tool_use", "id": '
    '"toolu_000_00", "name": "Write", "input": {"file_path": "/tmp/cc/repo/hello.txt", '
    '"content": "hi\\n"}}], "stop_reason": null, "stop_sequence": null, "usage": '
    '{"input_tokens": 100, "output_tokens": 1}}, "parent_tool_use_id": null, "session_id": '
    '"9d6da2e7-64d2-45eb-ac6c-65ab039a2030"}',
    '{"type": "user", "message": {"role": "user", "content": [{"tool_use_id": "toolu_000_00", '
    '"type": "tool_result", "content": "File created successfully at: /tmp/cc/repo/hello.txt '
    '(file state is current in your context — no need to Read it back)"}]}, '
    '"parent_tool_use_id": null, "session_id": "9d6da2e7-64d2-45eb-ac6c-65ab039a2030", '
    '"tool_use_result": {"type": "create", "filePath": "/tmp/cc/repo/hello.txt", "content": '
    '"hi\\n", "structuredPatch": [], "originalFile": null, "userModified": false}}',
    '{"type": "assistant", "message": {"id": "msg_001", "type": "message", "role": '
    '"assistant", "model": "claude-opus-5-5", "content": [{"type": "text", "text": "All '
    'done."}], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 100, '
    '"output_tokens": 1}}, "parent_tool_use_id": null, "session_id": '
    '"9d6da2e7-64d2-45eb-ac6c-65ab039a2030"}',
    '{"duration_api_ms": 99, "stop_reason": "end_turn", "session_id": '
    '"9d6da2e7-64d2-45eb-ac6c-65ab039a2030", "total_cost_usd": 0.0016, "usage": '
    '{"input_tokens": 200, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, '
    '"output_tokens": 40}, "permission_denials": [], "terminal_reason": "completed", '
    '"is_error": false, "num_turns": 2, "subtype": "success", "api_error_status": null, '
    '"result": "All done.", "type": "result", "duration_ms": 499}',
]
# One message with a text and two tool calls: each block is its own line, usage repeated.
BASH_RUN_MIDDLE = [
    '{"type": "assistant", "message": {"id": "msg_000", "type": "message", "role": '
    '"assistant", "model": "claude-opus-5-5", "content": [{"type": "text", "text": "Let me run '
    'it."}], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 100, '
    '"output_tokens": 1}}, "parent_tool_use_id": null, "session_id": '
    '"ed016f54-67a2-4cab-b251-423bd862cae4"}',
    '{"type": "assistant", "message": {"id": "msg_000", "type": "message", "role": '
    '"assistant", "model": "claude-opus-5-5", "content": [{"type": "tool_use", "id": '
    '"toolu_000_00", "name": "Bash", "input": {"command": "echo out; exit 3", "description": '
    '"x"}}], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 100, '
    '"output_tokens": 1}}, "parent_tool_use_id": null, "session_id": '
    '"ed016f54-67a2-4cab-b251-423bd862cae4"}',
    '{"type": "assistant", "message": {"id": "msg_000", "type": "message", "role": '
    '"assistant", "model": "claude-opus-5-5", "content": [{"type": "tool_use", "id": '
    '"toolu_000_01", "name": "Read", "input": {"file_path": "/tmp/cc/repo/hello.txt"}}], '
    '"stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 100, '
    '"output_tokens": 1}}, "parent_tool_use_id": null, "session_id": '
    '"ed016f54-67a2-4cab-b251-423bd862cae4"}',
    '{"type": "user", "message": {"role": "user", "content": [{"type": "tool_result", '
    '"content": "Exit code 3\\nout", "is_error": true, "tool_use_id": "toolu_000_00"}]}, '
    '"parent_tool_use_id": null, "session_id": "ed016f54-67a2-4cab-b251-423bd862cae4", '
    '"tool_use_result": "Error: Exit code 3\\nout"}',
]
API_ERROR_RUN = [
    INIT,
    '{"type": "assistant", "message": {"id": "aa74e5f2-e86a-4dec-8b3a-94b94fcf198a", "model": '
    '"<synthetic>", "role": "assistant", "stop_reason": "stop_sequence", "stop_sequence": "", '
    '"type": "message", "usage": {"input_tokens": 0, "output_tokens": 0, '
    '"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}, "content": [{"type": '
    '"text", "text": "API Error: 500 scripted failure (HTTP 500). This is a server-side issue, '
    "usually temporary — try again in a moment. If it persists, check your inference gateway "
    '(127.0.0.1:35601)."}]}, "parent_tool_use_id": null, "session_id": '
    '"a153e8d3-9660-48ca-ac30-4e201c1fd902", "error": "server_error", "is_api_error_message": '
    'true, "api_error_status": 500, "api_error_type": "api_error"}',
    '{"duration_api_ms": 0, "stop_reason": "stop_sequence", "session_id": '
    '"a153e8d3-9660-48ca-ac30-4e201c1fd902", "total_cost_usd": 0, "usage": {"input_tokens": 0, '
    '"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}, '
    '"permission_denials": [], "terminal_reason": "api_error", "is_error": true, "num_turns": '
    '1, "subtype": "success", "api_error_status": 500, "api_error_type": "api_error", "result": '
    '"API Error: 500 scripted failure (HTTP 500). This is a server-side issue, usually '
    "temporary — try again in a moment. If it persists, check your inference gateway "
    '(127.0.0.1:35601).", "type": "result", "duration_ms": 341}',
]
# The model server down: no status, and the wording is all that names the cause.
CONNECTION_REFUSED_RESULT = (
    '{"type": "result", "subtype": "success", "is_error": true, "num_turns": 1, "result": '
    '"API Error: Connection refused — a firewall or proxy may be blocking it (ECONNREFUSED)", '
    '"session_id": "3b01d231-9bef-4b3e-9ce7-5570ab7ea288", "total_cost_usd": 0, '
    '"api_error_status": null}'
)
MAX_TURNS_RESULT = (
    '{"duration_api_ms": 59, "stop_reason": "tool_use", "session_id": '
    '"239bdbc4-56fd-4705-9b73-a9386e744fbf", "total_cost_usd": 0.0008, "usage": '
    '{"input_tokens": 100, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, '
    '"output_tokens": 20}, "permission_denials": [], "terminal_reason": "max_turns", '
    '"is_error": true, "num_turns": 2, "subtype": "error_max_turns", "errors": ["Reached '
    'maximum number of turns (1)"], "type": "result", "duration_ms": 402}'
)
BAD_RESUME_RESULT = (
    '{"type": "result", "subtype": "error_during_execution", "duration_ms": 0, '
    '"duration_api_ms": 0, "is_error": true, "num_turns": 0, "stop_reason": null, '
    '"session_id": "6139ade3-71b1-4844-b40b-b098e6c47f39", "total_cost_usd": 0, "usage": '
    '{"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, '
    '"output_tokens": 0}, "permission_denials": [], "errors": ["No conversation found with '
    'session ID: 6139ade3-71b1-4844-b40b-b098e6c47f39"]}'
)


def parse(lines: list[str]) -> tuple[ClaudeCodeParser, list[AgentEvent]]:
    parser = ClaudeCode().parser()
    return parser, [event for line in lines for event in parser.feed(line)]


def kinds(events: list[AgentEvent]) -> list[EventKind]:
    return [event.kind for event in events]


def test_a_recorded_run_becomes_session_tool_and_result_events() -> None:
    parser, events = parse(WRITE_RUN)

    assert kinds(events) == [
        EventKind.SESSION,
        EventKind.TOOL_CALL,
        EventKind.USAGE,
        EventKind.TOOL_RESULT,
        EventKind.TEXT,
        EventKind.USAGE,
        EventKind.RESULT,
    ]
    session, call, _, result, text, usage, final = events
    assert session.session_id == SESSION
    assert (call.tool, call.tool_id) == ("Write", "toolu_000_00")
    assert call.input == {"file_path": "/tmp/cc/repo/hello.txt", "content": "hi\n"}
    assert result.tool_id == "toolu_000_00"
    assert result.is_error is False
    assert result.text is not None
    assert result.text.startswith("File created successfully")
    assert text.text == "All done."
    assert usage.usage == Usage(input_tokens=200, output_tokens=2)
    # The result's totals include the output tokens streamed after each block's line.
    assert final.usage == Usage(input_tokens=200, output_tokens=40)
    assert (final.text, final.cost_usd, final.session_id) == ("All done.", 0.0016, SESSION)
    assert final.data["num_turns"] == 2
    assert parser.state.usage == Usage(input_tokens=200, output_tokens=40)
    assert (parser.state.cost_usd, parser.state.final_text) == (0.0016, "All done.")
    assert parser.state.session_id == SESSION
    assert parser.finish(0, "") == Outcome(status=RunStatus.SUCCEEDED, summary="All done.")


def test_blocks_of_one_message_count_its_usage_once_and_failed_tools_are_errors() -> None:
    _, events = parse([INIT, *BASH_RUN_MIDDLE])

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


def test_cache_tokens_map_to_cache_read_and_write() -> None:
    line = json.loads(WRITE_RUN[-1])
    line["usage"] = {
        "input_tokens": 5,
        "output_tokens": 7,
        "cache_read_input_tokens": 11,
        "cache_creation_input_tokens": 13,
    }
    parser, _ = parse([json.dumps(line)])
    assert parser.state.usage == Usage(
        input_tokens=5, output_tokens=7, cache_read_tokens=11, cache_write_tokens=13
    )


def test_an_api_failure_reported_as_success_with_is_error_is_an_api_error() -> None:
    parser, events = parse(API_ERROR_RUN)

    assert kinds(events) == [EventKind.SESSION, EventKind.TEXT, EventKind.RESULT]
    assert events[1].is_error is True
    outcome = parser.finish(1, "")
    assert outcome.status is RunStatus.API_ERROR
    assert outcome.error_class == "api_error"
    assert outcome.error is not None
    assert outcome.error.startswith("API Error: 500")


def test_the_wording_alone_marks_an_api_failure() -> None:
    parser, _ = parse([CONNECTION_REFUSED_RESULT])
    assert parser.finish(1, "").status is RunStatus.API_ERROR


def test_an_error_result_that_is_not_the_api_is_an_agent_error() -> None:
    parser, events = parse([BAD_RESUME_RESULT])

    assert events[0].text == (
        "No conversation found with session ID: 6139ade3-71b1-4844-b40b-b098e6c47f39"
    )
    outcome = parser.finish(1, "No conversation found with session ID: 6139...")
    assert (outcome.status, outcome.error_class) == (RunStatus.AGENT_ERROR, "agent_error")
    assert outcome.error == events[0].text


def test_max_turns_keeps_the_last_words_as_summary() -> None:
    parser, events = parse([INIT, BASH_RUN_MIDDLE[0], MAX_TURNS_RESULT])

    assert events[-1].text == "Reached maximum number of turns (1)"
    outcome = parser.finish(1, "")
    assert (outcome.status, outcome.error_class) == (RunStatus.MAX_TURNS, "max_turns")
    assert outcome.error == "Reached maximum number of turns (1)"
    assert outcome.summary == "Let me run it."


def test_no_result_line_is_an_agent_error_naming_stderr() -> None:
    parser, _ = parse([INIT])
    outcome = parser.finish(1, "error: unknown option '--no-such-flag'\n")
    assert (outcome.status, outcome.error_class) == (RunStatus.AGENT_ERROR, "no_result")
    assert outcome.error == (
        "claude exited with code 1 without a result: error: unknown option '--no-such-flag'"
    )


def test_success_with_a_failing_exit_code_is_an_agent_error() -> None:
    parser, _ = parse(WRITE_RUN)
    outcome = parser.finish(2, "")
    assert (outcome.status, outcome.error_class) == (RunStatus.AGENT_ERROR, "exit_code")


@pytest.mark.parametrize(
    "line",
    [
        "Warning: something printed by a hook",
        "[1, 2, 3]",
        '{"type": "assistant", "message": {"content": "not a list of blocks"}}',
        '{"type": "assistant", "message": {"content": [{"type": "text", "text": 3}]}}',
        '{"type": "user", "message": {"content": [{"type": "tool_result", "content": 5}]}}',
    ],
)
def test_malformed_lines_never_raise(line: str) -> None:
    parser = ClaudeCodeParser()
    events = parser.feed(line)
    assert all(isinstance(event, AgentEvent) for event in events)


def test_lines_that_are_not_json_are_logs_and_unknown_types_are_ignored() -> None:
    parser = ClaudeCodeParser()
    assert parser.feed("  ") == []
    (log,) = parser.feed("Warning: something printed by a hook")
    assert (log.kind, log.text) == (EventKind.LOG, "Warning: something printed by a hook")
    assert parser.feed('{"type": "rate_limit_event", "rate_limit_info": {}}') == []


def test_long_tool_output_is_truncated_and_text_blocks_joined() -> None:
    block = {
        "type": "tool_result",
        "tool_use_id": "t1",
        "content": [{"type": "text", "text": "a" * 10_000}, {"type": "image"}],
    }
    line = json.dumps({"type": "user", "message": {"role": "user", "content": [block]}})
    (event,) = ClaudeCodeParser().feed(line)
    assert event.text is not None
    assert event.text.startswith("a" * TOOL_RESULT_LIMIT)
    assert event.text.endswith("[... 5904 more characters]")


# --- argv and env -------------------------------------------------------------------------

ALLOWED_ENV = {"PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR"} | {
    "HOME",
    "TMPDIR",
    "TERM",
    "NO_COLOR",
    *QUIET_ENV,
}


def agent_run(tmp_path: Path, config: AgentConfig, **overrides: object) -> AgentRun:
    fields: dict[str, object] = {
        "workspace": tmp_path / "repo",
        "home": tmp_path / "home",
        "prompt": "Write hello.txt",
        "instructions": "You are the coder harness.",
        "prompt_file": tmp_path / "prompt.md",
        "config": config,
        "ticket_key": "octo/hello#1",
        "limits": Limits(),
    }
    fields.update(overrides)
    return AgentRun(**fields)  # type: ignore[arg-type]


def test_the_module_is_an_agent() -> None:
    agent: Agent = ClaudeCode()
    parser: StreamParser = agent.parser()
    assert (agent.cli, agent.default_binary, agent.skills_dir) == (
        "claude_code",
        "claude",
        ".claude/skills",
    )
    assert parser.state.session_id is None


def test_argv_runs_print_mode_with_the_harness_and_the_prompt_on_stdin(tmp_path: Path) -> None:
    config = AgentConfig(cli="claude_code", model="claude-x", max_turns=7, extra_args=("--a",))
    run = agent_run(tmp_path, config, session_id="11111111-1111-1111-1111-111111111111")

    invocation = ClaudeCode().invocation(run, "/opt/claude")

    assert invocation.argv == [
        "/opt/claude",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "acceptEdits",
        "--allowedTools",
        "Bash Read Edit Write Glob Grep",
        "--max-turns",
        "7",
        "--model",
        "claude-x",
        "--append-system-prompt=You are the coder harness.",
        "--session-id",
        "11111111-1111-1111-1111-111111111111",
        "--a",
    ]
    assert invocation.stdin == b"Write hello.txt"
    assert (tmp_path / "home" / "tmp").is_dir()


def test_resume_wins_over_a_fresh_session_id_and_unset_options_are_left_out(
    tmp_path: Path,
) -> None:
    config = AgentConfig(cli="claude_code", resume_session_id="old-session")
    run = agent_run(tmp_path, config, session_id="new-session", instructions="")

    argv = ClaudeCode().invocation(run, "claude").argv

    assert argv[argv.index("--resume") + 1] == "old-session"
    assert "--session-id" not in argv
    assert not {"--max-turns", "--model"} & set(argv)
    assert not any(arg.startswith("--append-system-prompt") for arg in argv)


def test_env_holds_only_quiet_flags_and_provider_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENASE_GITHUB_WEBHOOK_SECRET", "whsec-leak")
    monkeypatch.setenv("OPENASE_GITHUB_PRIVATE_KEY", "-----BEGIN leak")
    monkeypatch.setenv("DATABASE_URL", "postgresql://leak")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "runner-own-key-leak")
    monkeypatch.setenv("GH_TOKEN", "ghs_leak")
    config = AgentConfig(
        cli="claude_code",
        env={
            "ANTHROPIC_BASE_URL": SecretStr("http://127.0.0.1:1"),
            "ANTHROPIC_API_KEY": SecretStr("run-key"),
            "CLAUDE_CODE_MAX_RETRIES": SecretStr("2"),
        },
    )

    env = ClaudeCode().invocation(agent_run(tmp_path, config), "claude").env

    assert set(env) <= ALLOWED_ENV | set(config.env)
    assert not any("leak" in value for value in env.values())
    assert env["ANTHROPIC_API_KEY"] == "run-key"
    assert env["CLAUDE_CODE_MAX_RETRIES"] == "2"  # the run's settings win over our default
    assert env["HOME"] == str(tmp_path / "home")
    assert env["TMPDIR"] == str(tmp_path / "home" / "tmp")
    for name in ("DISABLE_TELEMETRY", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"):
        assert env[name] == "1"


def test_without_provider_settings_retries_are_off(tmp_path: Path) -> None:
    env = ClaudeCode().invocation(agent_run(tmp_path, AgentConfig(cli="claude_code")), "c").env
    assert env["CLAUDE_CODE_MAX_RETRIES"] == "0"
    assert "ANTHROPIC_API_KEY" not in env


# --- the real CLI -------------------------------------------------------------------------

HARNESS = "HARNESS-7f3a: you are the coder; finish with a one-line summary."
SKILL_DESCRIPTION = "Run the repository's test suite with pytest and report failures."
SKILL_BODY = "SKILL-BODY-91c2: run `pytest -q` and summarise the failures."


@pytest.fixture(scope="module")
def claude() -> str:
    return str(agent_cli("claude"))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A git repository with one skill where Claude Code looks for them."""
    return skill_repo(
        tmp_path,
        ".claude/skills",
        f"---\nname: run-tests\ndescription: {SKILL_DESCRIPTION}\n---\n{SKILL_BODY}\n",
    )


def run_claude(
    claude: str,
    server: ModelServer,
    workspace: Path,
    *,
    prompt: str = "Write hello.txt saying hi.",
    session_id: str | None = None,
    resume_session_id: str | None = None,
    max_turns: int | None = None,
) -> Finished:
    agent_config = AgentConfig(
        cli="claude_code",
        env={"ANTHROPIC_BASE_URL": SecretStr(server.url), "ANTHROPIC_API_KEY": SecretStr("sk")},
        max_turns=max_turns,
        resume_session_id=resume_session_id,
    )
    return run_real(
        ClaudeCode(),
        claude,
        workspace,
        agent_config,
        prompt=prompt,
        instructions=HARNESS,
        session_id=session_id,
    )


def test_real_claude_writes_a_file_and_sees_harness_prompt_and_skills(
    claude: str, workspace: Path
) -> None:
    target = workspace / "hello.txt"
    write = ToolCall("Write", {"file_path": str(target), "content": "hi\n"})
    scenario = Scenario(steps=[Step(tool_calls=(write,)), Step(text="Wrote hello.txt.")])
    session = str(uuid.uuid4())

    with ModelServer(scenario) as server:
        finished = run_claude(claude, server, workspace, session_id=session, max_turns=5)

    assert finished.outcome == Outcome(status=RunStatus.SUCCEEDED, summary="Wrote hello.txt.")
    assert target.read_text() == "hi\n"
    first, second = server.model_requests()
    assert HARNESS in json.dumps(first.body["system"])
    assert "Write hello.txt saying hi." in first.text
    # Skills in .claude/skills are discovered in print mode; the model sees name and summary.
    assert f"- run-tests: {SKILL_DESCRIPTION}" in first.text
    assert "toolu_000_00" in second.text  # the tool result went back to the model
    (call,) = of_kind(finished, EventKind.TOOL_CALL)
    assert (call.tool, call.input) == ("Write", write.input)
    (result,) = of_kind(finished, EventKind.TOOL_RESULT)
    assert (result.tool_id, result.is_error) == (call.tool_id, False)
    assert [e.session_id for e in of_kind(finished, EventKind.SESSION)] == [session]
    (final,) = of_kind(finished, EventKind.RESULT)
    assert (final.text, final.session_id) == ("Wrote hello.txt.", session)
    assert finished.parser.state.usage == Usage(input_tokens=200, output_tokens=40)
    assert finished.parser.state.cost_usd is not None


def test_real_claude_loads_a_skill_body_when_the_model_asks_for_it(
    claude: str, workspace: Path
) -> None:
    scenario = Scenario(steps=[Step(tool_calls=(ToolCall("Skill", {"skill": "run-tests"}),))])

    with ModelServer(scenario) as server:
        finished = run_claude(claude, server, workspace, max_turns=5)

    assert finished.outcome.status is RunStatus.SUCCEEDED
    assert SKILL_BODY in server.model_requests()[1].text


def test_real_claude_fails_fast_on_an_api_error(claude: str, workspace: Path) -> None:
    with ModelServer(Scenario(fail_status=500)) as server:
        finished = run_claude(claude, server, workspace)

    assert finished.outcome.status is RunStatus.API_ERROR
    assert finished.outcome.error_class == "api_error"
    assert len(server.model_requests()) == 1  # CLAUDE_CODE_MAX_RETRIES=0: no retries
    assert finished.seconds < 15


def test_real_claude_stops_at_max_turns(claude: str, workspace: Path) -> None:
    bash = ToolCall("Bash", {"command": "echo one >> turns.txt", "description": "count"})
    scenario = Scenario(steps=[Step(text="Turn one.", tool_calls=(bash,))] * 5)

    with ModelServer(scenario) as server:
        finished = run_claude(claude, server, workspace, max_turns=1)

    assert finished.outcome.status is RunStatus.MAX_TURNS
    assert finished.outcome.summary == "Turn one."
    assert (workspace / "turns.txt").read_text() == "one\n"
    assert len(server.model_requests()) == 1


def test_real_claude_resumes_a_session_with_its_history(claude: str, workspace: Path) -> None:
    session = str(uuid.uuid4())
    scenario = Scenario(steps=[Step(text="FIRST-ANSWER"), Step(text="SECOND-ANSWER")])

    with ModelServer(scenario) as server:
        first = run_claude(claude, server, workspace, prompt="FIRST-PROMPT", session_id=session)
        second = run_claude(
            claude, server, workspace, prompt="SECOND-PROMPT", resume_session_id=session
        )

    assert first.outcome.summary == "FIRST-ANSWER"
    assert second.outcome == Outcome(status=RunStatus.SUCCEEDED, summary="SECOND-ANSWER")
    assert second.parser.state.session_id == session
    _, resumed = server.model_requests()
    roles = [message["role"] for message in resumed.body["messages"]]
    assert roles.count("assistant") == 1
    assert "FIRST-PROMPT" in resumed.text
    assert "FIRST-ANSWER" in resumed.text
    assert "SECOND-PROMPT" in json.dumps(resumed.body["messages"][-1])


def test_os_environ_secrets_are_not_seen_by_the_real_cli(
    claude: str, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENASE_GITHUB_WEBHOOK_SECRET", "whsec-must-not-leak")
    bash = ToolCall("Bash", {"command": "env > seen-env.txt", "description": "dump env"})

    with ModelServer(Scenario(steps=[Step(tool_calls=(bash,))])) as server:
        finished = run_claude(claude, server, workspace, max_turns=3)

    assert finished.outcome.status is RunStatus.SUCCEEDED
    seen = (workspace / "seen-env.txt").read_text()
    assert "whsec-must-not-leak" not in seen
    assert os.environ["OPENASE_GITHUB_WEBHOOK_SECRET"] == "whsec-must-not-leak"
