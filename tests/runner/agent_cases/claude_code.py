"""Claude Code's case for the agent contract tests: its recorded stream-json output, and what
its module and the pinned CLI must make of a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.agents.base import TOOL_RESULT_LIMIT, Outcome
from runner.agents.claude_code import QUIET_ENV, ClaudeCode
from runner.contract import AgentConfig, EventKind, RunStatus, Usage
from tests.fakes.model_server import Step, ToolCall
from tests.fakes.model_server.anthropic import turns_so_far
from tests.runner.agent_cases.base import (
    SKILL_DESCRIPTION,
    AgentCase,
    ArgvCase,
    Ending,
    LongOutput,
    OutputCase,
    RealCli,
    RecordedRun,
    ScriptedRun,
)

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

PRINT_MODE = [
    "-p",
    "--output-format",
    "stream-json",
    "--verbose",
    "--include-partial-messages",
    "--permission-mode",
    "acceptEdits",
    "--allowedTools",
    "Bash Read Edit Write Glob Grep",
]

AGENT = AgentCase(
    cli="claude_code",
    agent_class=ClaudeCode,
    default_binary="claude",
    skills_dir=".claude/skills",
    config=AgentConfig(cli="claude_code"),
    argv_cases=(
        ArgvCase(
            "every option",
            AgentConfig(cli="claude_code", model="claude-x", max_turns=7, extra_args=("--a",)),
            binary="/opt/claude",
            run={"session_id": "11111111-1111-1111-1111-111111111111"},
            argv=lambda tmp: [
                "/opt/claude",
                *PRINT_MODE,
                "--max-turns",
                "7",
                "--model",
                "claude-x",
                "--append-system-prompt=You are the coder harness.",
                "--session-id",
                "11111111-1111-1111-1111-111111111111",
                "--a",
            ],
        ),
        ArgvCase(
            "resume wins over a fresh session id and unset options are left out",
            AgentConfig(cli="claude_code", resume_session_id="old-session"),
            binary="claude",
            run={"session_id": "new-session", "instructions": ""},
            argv=lambda tmp: ["claude", *PRINT_MODE, "--resume", "old-session"],
        ),
    ),
    own_env=lambda run: dict(QUIET_ENV),
    provider_env={
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:1",
        "ANTHROPIC_API_KEY": "run-key",
        "CLAUDE_CODE_MAX_RETRIES": "2",  # the run's setting wins over the module's "0"
    },
)


def _result(line: str) -> str:
    text: str = json.loads(line)["result"]
    return text


def _with_usage(line: str, usage: dict[str, int]) -> str:
    data = json.loads(line)
    data["usage"] = usage
    return json.dumps(data)


def _tool_result_line(content: list[dict[str, Any]]) -> str:
    block = {"type": "tool_result", "tool_use_id": "t1", "content": content}
    return json.dumps({"type": "user", "message": {"role": "user", "content": [block]}})


OUTPUT = OutputCase(
    cli="claude_code",
    recorded_run=RecordedRun(
        WRITE_RUN,
        kinds=[
            EventKind.SESSION,
            EventKind.TOOL_CALL,
            EventKind.USAGE,
            EventKind.TOOL_RESULT,
            EventKind.TEXT,
            EventKind.USAGE,
            EventKind.RESULT,
        ],
        session_id=SESSION,
        summary="All done.",
        # The result's totals, with the output tokens streamed after each block's line.
        usage=Usage(input_tokens=200, output_tokens=40),
        cost_usd=0.0016,
    ),
    cached_usage=(
        _with_usage(
            WRITE_RUN[-1],
            {
                "input_tokens": 5,
                "output_tokens": 7,
                "cache_read_input_tokens": 11,
                "cache_creation_input_tokens": 13,
            },
        ),
        Usage(input_tokens=5, output_tokens=7, cache_read_tokens=11, cache_write_tokens=13),
    ),
    reported_failures=(
        Ending(
            "an API failure reported as success with is_error",
            API_ERROR_RUN,
            exit_code=1,
            stderr="",
            events=[(EventKind.SESSION, None), (EventKind.TEXT, True), (EventKind.RESULT, True)],
            outcome=Outcome(
                RunStatus.API_ERROR, error=_result(API_ERROR_RUN[-1]), error_class="api_error"
            ),
        ),
        Ending(
            "the wording alone marks an API failure",
            [CONNECTION_REFUSED_RESULT],
            exit_code=1,
            stderr="",
            events=[(EventKind.RESULT, True)],
            outcome=Outcome(
                RunStatus.API_ERROR,
                error=_result(CONNECTION_REFUSED_RESULT),
                error_class="api_error",
            ),
        ),
        Ending(
            "an error result that is not the API",
            [BAD_RESUME_RESULT],
            exit_code=1,
            stderr="No conversation found with session ID: 6139...",
            events=[(EventKind.RESULT, True)],
            outcome=Outcome(
                RunStatus.AGENT_ERROR,
                error="No conversation found with session ID: 6139ade3-71b1-4844-b40b-b098e6c47f39",
                error_class="agent_error",
            ),
        ),
        Ending(
            "max turns keeps the last words as summary",
            [INIT, BASH_RUN_MIDDLE[0], MAX_TURNS_RESULT],
            exit_code=1,
            stderr="",
            events=[
                (EventKind.SESSION, None),
                (EventKind.TEXT, None),
                (EventKind.USAGE, None),
                (EventKind.RESULT, True),
            ],
            outcome=Outcome(
                RunStatus.MAX_TURNS,
                summary="Let me run it.",
                error="Reached maximum number of turns (1)",
                error_class="max_turns",
            ),
        ),
    ),
    unexplained_endings=(
        Ending(
            "no result line names stderr",
            [INIT],
            exit_code=1,
            stderr="error: unknown option '--no-such-flag'\n",
            events=[(EventKind.SESSION, None)],
            outcome=Outcome(
                RunStatus.AGENT_ERROR,
                error="claude exited with code 1 without a result: "
                "error: unknown option '--no-such-flag'",
                error_class="no_result",
            ),
        ),
        Ending(
            "success with a failing exit code",
            WRITE_RUN,
            exit_code=2,
            stderr="",
            events=[
                (EventKind.SESSION, None),
                (EventKind.TOOL_CALL, None),
                (EventKind.USAGE, None),
                (EventKind.TOOL_RESULT, False),
                (EventKind.TEXT, None),
                (EventKind.USAGE, None),
                (EventKind.RESULT, False),
            ],
            outcome=Outcome(
                RunStatus.AGENT_ERROR,
                summary="All done.",
                error="claude exited with code 2 after reporting success",
                error_class="exit_code",
            ),
        ),
    ),
    noise="Warning: something printed by a hook",
    unknown='{"type": "rate_limit_event", "rate_limit_info": {}}',
    # Claude Code's module keeps the start; the text blocks of the content are joined.
    long_output=LongOutput(
        _tool_result_line([{"type": "text", "text": "a" * 10_000}, {"type": "image"}]),
        start="a" * TOOL_RESULT_LIMIT,
        end="[... 5904 more characters]",
    ),
    malformed=(
        "Warning: something printed by a hook",
        "[1, 2, 3]",
        '{"type": "assistant", "message": {"content": "not a list of blocks"}}',
        '{"type": "assistant", "message": {"content": [{"type": "text", "text": 3}]}}',
        '{"type": "user", "message": {"content": [{"type": "tool_result", "content": 5}]}}',
    ),
)


def _write_hello(workspace: Path) -> ScriptedRun:
    write = ToolCall("Write", {"file_path": str(workspace / "hello.txt"), "content": "hi\n"})
    return ScriptedRun(
        steps=[Step(text="Writing the file.", tool_calls=(write,)), Step(text="Wrote hello.txt.")],
        calls=[("Write", write.input)],
        texts=["Writing the file.", "Wrote hello.txt."],
        files={"hello.txt": "hi\n"},
        tool_results=("toolu_000_00",),
    )


REAL = RealCli(
    cli="claude_code",
    npm_name="claude",
    provider_env=lambda url: {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "sk"},
    model=None,
    model_seen="claude-opus-5-5",  # the pinned release's default
    timeout=60,
    accepts_session_id=True,
    reports_cost=True,
    write_hello=_write_hello,
    command_call=lambda command: ToolCall("Bash", {"command": command, "description": "run it"}),
    requested_model=lambda request: str(request.body["model"]),
    tools_offered=lambda body: {tool["name"] for tool in body["tools"]},
    instructions=lambda body: "\n".join(block.get("text", "") for block in body["system"]),
    # Skills in .claude/skills are listed in print mode, with name and description.
    skills=lambda request: request.text,
    skill_entry=f"- run-tests: {SKILL_DESCRIPTION}",
    history=lambda body: list(body["messages"]),
    turns_so_far=turns_so_far,
    resumed_usage=Usage(input_tokens=100, output_tokens=20),
    run_seconds=30,
    failure_seconds=15,  # CLAUDE_CODE_MAX_RETRIES=0: no retries
)
