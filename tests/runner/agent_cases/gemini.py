"""Gemini CLI's case for the agent contract tests: its recorded stream-json output, and what
its module and the pinned CLI must make of a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.agents.base import Outcome
from runner.agents.gemini import DEFAULT_MODEL, Gemini
from runner.contract import AgentConfig, EventKind, RunStatus, Usage
from tests.fakes.model_server import RecordedRequest, Step, ToolCall
from tests.fakes.model_server.gemini import turns_so_far
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
    error_message,
)

# Recorded from gemini 0.61.0 against the scripted server (temporary paths shortened).
SESSION = "e8c1eece-f99b-4b08-a31e-7cf8099a4759"
INIT = (
    '{"type":"init","timestamp":"2026-11-22T07:22:58.491Z","session_id":'
    '"e8c1eece-f99b-4b08-a31e-7cf8099a4759","model":"gemini-2.5-pro"}'
)
PROMPT_ECHO = (
    '{"type":"message","timestamp":"2026-11-22T07:22:58.493Z","role":"user","content":"Write '
    'hello.txt saying hi."}'
)
WRITE_RUN = [
    INIT,
    PROMPT_ECHO,
    '{"type":"message","timestamp":"2026-11-22T07:22:58.618Z","role":"assistant","content":'
    '"Writing ","delta":true}',
    '{"type":"message","timestamp":"2026-11-22T07:22:58.620Z","role":"assistant","content":'
    '"the file.","delta":true}',
    '{"type":"tool_use","timestamp":"2026-11-22T07:22:58.827Z","tool_name":"write_file",'
    '"tool_id":"write_file__write_file_1795332178626_0","parameters":{"file_path":"hello.txt",'
    '"content":"hi\\n"}}',
    '{"type":"tool_result","timestamp":"2026-11-22T07:22:58.961Z","tool_id":'
    '"write_file__write_file_1795332178626_0","status":"success"}',
    '{"type":"tool_use","timestamp":"2026-11-22T07:22:59.004Z","tool_name":"read_file",'
    '"tool_id":"read_file__read_file_1795332178996_0","parameters":{"file_path":"missing.txt"}}',
    '{"type":"tool_result","timestamp":"2026-11-22T07:22:59.012Z","tool_id":'
    '"read_file__read_file_1795332178996_0","status":"error","output":"File not found.",'
    '"error":{"type":"file_not_found","message":"File not found: /tmp/gm/repo/missing.txt"}}',
    '{"type":"message","timestamp":"2026-11-22T07:22:59.045Z","role":"assistant","content":'
    '"Wrote he","delta":true}',
    '{"type":"message","timestamp":"2026-11-22T07:22:59.046Z","role":"assistant","content":'
    '"llo.txt.","delta":true}',
    '{"type":"result","timestamp":"2026-11-22T07:22:59.051Z","status":"success","stats":'
    '{"total_tokens":360,"input_tokens":300,"output_tokens":60,"cached":0,"input":300,'
    '"duration_ms":559,"tool_calls":2,"models":{"gemini-2.5-pro":{"total_tokens":360,'
    '"input_tokens":300,"output_tokens":60,"cached":0,"input":300}}}}',
]
ZERO_STATS = (
    '"stats":{"total_tokens":0,"input_tokens":0,"output_tokens":0,"cached":0,"input":0,'
    '"duration_ms":0,"tool_calls":0}'
)
SERVER_ERROR_RESULT = (  # exit code 244: HTTP 500 mod 256
    '{"type":"result","timestamp":"2026-11-22T07:23:07.747Z","status":"error","error":'
    '{"type":"unknown","message":"[API Error: {\\"error\\":{\\"code\\":500,\\"message\\":'
    '\\"scripted failure (HTTP 500)\\",\\"status\\":\\"INTERNAL\\"}}]"},' + ZERO_STATS + "}"
)
QUOTA_RESULT = (  # exit code 173: HTTP 429
    '{"type":"result","timestamp":"2026-11-22T07:19:33.774Z","status":"error","error":'
    '{"type":"unknown","message":"[API Error: scripted failure (HTTP 429)]\\nPlease wait and '
    "try again later. To increase your limits, request a quota increase through AI Studio, "
    'or switch to another /auth method"},' + ZERO_STATS + "}"
)
UNREACHABLE_RESULT = (  # exit code 1
    '{"type":"result","timestamp":"2026-11-22T07:21:56.472Z","status":"error","error":'
    '{"type":"unknown","message":"[API Error: exception TypeError: fetch failed sending '
    'request]"},' + ZERO_STATS + "}"
)
MAX_TURNS_RESULT = (  # exit code 53
    '{"type":"result","timestamp":"2026-11-22T07:23:25.997Z","status":"error","error":'
    '{"type":"FatalTurnLimitedError","message":"Reached max session turns for this session. '
    'Increase the number of turns by specifying maxSessionTurns in settings.json."},"stats":'
    '{"total_tokens":120,"input_tokens":100,"output_tokens":20,"cached":0,"input":100,'
    '"duration_ms":0,"tool_calls":1}}'
)

AGENT = AgentCase(
    cli="gemini",
    agent_class=Gemini,
    default_binary="gemini",
    skills_dir=".gemini/skills",
    config=AgentConfig(cli="gemini"),
    argv_cases=(
        ArgvCase(
            "headless yolo with the harness in HOME",
            AgentConfig(cli="gemini", model="gemini-x", extra_args=("--x",)),
            binary="/opt/gemini",
            run={"session_id": "11111111-1111-4111-8111-111111111111"},
            argv=lambda tmp: [
                "/opt/gemini",
                "-m",
                "gemini-x",
                "-o",
                "stream-json",
                "--yolo",
                "--session-id",
                "11111111-1111-4111-8111-111111111111",
                "--x",
                "-p",
                "",
            ],
            written={"home/.gemini/GEMINI.md": "You are the coder harness."},
        ),
        ArgvCase(
            "resume wins over a fresh session id and the model has a default",
            AgentConfig(cli="gemini", resume_session_id="old-session"),
            binary="gemini",
            run={"session_id": "new"},
            argv=lambda tmp: [
                "gemini",
                "-m",
                DEFAULT_MODEL,
                "-o",
                "stream-json",
                "--yolo",
                "--resume",
                "old-session",
                "-p",
                "",
            ],
        ),
    ),
    own_env=lambda run: {"GEMINI_CLI_TRUST_WORKSPACE": "true"},
    provider_env={"GEMINI_API_KEY": "run-key", "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:1"},
)


def _with_stats(line: str, **stats: int) -> str:
    data = json.loads(line)
    data["stats"].update(stats)
    return json.dumps(data)


def _with_error(line: str, error: dict[str, Any]) -> str:
    data = json.loads(line)
    data["error"] = error
    return json.dumps(data)


FAILED_CALL_EVENTS = [(EventKind.SESSION, None), (EventKind.USAGE, None), (EventKind.RESULT, True)]
WRITE_RUN_EVENTS = [
    (EventKind.SESSION, None),
    (EventKind.TEXT, None),
    (EventKind.TOOL_CALL, None),
    (EventKind.TOOL_RESULT, False),
    (EventKind.TOOL_CALL, None),
    (EventKind.TOOL_RESULT, True),
    (EventKind.TEXT, None),
    (EventKind.USAGE, None),
    (EventKind.RESULT, False),
]

OUTPUT = OutputCase(
    cli="gemini",
    recorded_run=RecordedRun(
        WRITE_RUN,
        kinds=[kind for kind, _ in WRITE_RUN_EVENTS],
        session_id=SESSION,
        summary="Wrote hello.txt.",
        usage=Usage(input_tokens=300, output_tokens=60),
        cost_usd=None,  # Gemini CLI reports no cost
    ),
    cached_usage=(
        _with_stats(WRITE_RUN[-1], input_tokens=300, cached=200, input=100),
        Usage(input_tokens=100, output_tokens=60, cache_read_tokens=200),
    ),
    reported_failures=(
        *(
            Ending(
                f"a failed model call: {name}",
                [INIT, PROMPT_ECHO, result],
                exit_code=exit_code,
                stderr="Attempt 1 failed ... Max attempts reached\n",
                events=FAILED_CALL_EVENTS,
                outcome=Outcome(
                    RunStatus.API_ERROR, error=error_message(result), error_class="api_error"
                ),
            )
            for name, result, exit_code in [
                ("server error", SERVER_ERROR_RESULT, 244),
                ("quota", QUOTA_RESULT, 173),
                ("unreachable", UNREACHABLE_RESULT, 1),
            ]
        ),
        Ending(
            "an error result that is not the API",
            [
                INIT,
                _with_error(
                    SERVER_ERROR_RESULT,
                    {"type": "TypeError", "message": "[API Error: x is not a function]"},
                ),
            ],
            exit_code=1,
            stderr="",
            events=FAILED_CALL_EVENTS,
            outcome=Outcome(
                RunStatus.AGENT_ERROR,
                error="[API Error: x is not a function]",
                error_class="agent_error",
            ),
        ),
        Ending(
            "max session turns keeps the last words as summary",
            [*WRITE_RUN[:6], MAX_TURNS_RESULT],
            exit_code=53,
            stderr="",
            events=[*WRITE_RUN_EVENTS[:4], (EventKind.USAGE, None), (EventKind.RESULT, True)],
            outcome=Outcome(
                RunStatus.MAX_TURNS,
                summary="Writing the file.",
                error=error_message(MAX_TURNS_RESULT),
                error_class="max_turns",
            ),
        ),
    ),
    unexplained_endings=(
        Ending(
            "no result",
            WRITE_RUN[:3],
            exit_code=137,
            stderr="",
            events=[(EventKind.SESSION, None)],  # the text waits for its turn to end
            outcome=Outcome(
                RunStatus.AGENT_ERROR,
                error="gemini exited with code 137 without a result",
                error_class="no_result",
            ),
        ),
        Ending(
            "success with a failing exit code",
            WRITE_RUN,
            exit_code=1,
            stderr="",
            events=WRITE_RUN_EVENTS,
            outcome=Outcome(
                RunStatus.AGENT_ERROR,
                summary="Wrote hello.txt.",
                error="gemini exited with code 1 after reporting success",
                error_class="exit_code",
            ),
        ),
    ),
    noise="Warning: Basic terminal detected (TERM=dumb).",
    unknown=PROMPT_ECHO,
    # The end of a tool's output is kept: that is where a failing command says why.
    long_output=LongOutput(
        json.dumps(
            {"type": "tool_result", "tool_id": "t", "status": "success", "output": "a" * 9000 + "!"}
        ),
        start="[... 4905 earlier characters]\n",
        end="a!",
    ),
    malformed=(
        "Warning: Basic terminal detected (TERM=dumb).",
        "[1, 2]",
        '{"type": "tool_use", "parameters": "not an object"}',
        '{"type": "tool_result", "error": "not an object"}',
        '{"type": "result", "status": "success", "stats": {"input_tokens": "many"}}',
        '{"type": "message", "role": "assistant", "content": null, "delta": true}',
    ),
)


def _write_hello(workspace: Path) -> ScriptedRun:
    write = ToolCall("write_file", {"file_path": "hello.txt", "content": "hi\n"})
    return ScriptedRun(
        steps=[Step(text="Writing the file.", tool_calls=(write,)), Step(text="Wrote hello.txt.")],
        calls=[("write_file", write.input)],
        # Each turn's streamed pieces arrive joined.
        texts=["Writing the file.", "Wrote hello.txt."],
        files={"hello.txt": "hi\n"},
        tool_results=("functionResponse",),
    )


def system_text(body: dict[str, Any]) -> str:
    """The system instruction: the harness from $HOME/.gemini/GEMINI.md, and the skills."""
    return "".join(part.get("text", "") for part in body["systemInstruction"]["parts"])


def _model_in_path(request: RecordedRequest) -> str:
    """POST /v1beta/models/MODEL:streamGenerateContent names its model in the path."""
    return request.path.split("/models/", 1)[1].split(":", 1)[0]


REAL = RealCli(
    cli="gemini",
    npm_name="gemini",
    provider_env=lambda url: {
        "GOOGLE_GEMINI_BASE_URL": url,
        "GEMINI_API_KEY": "k",
        # Skips its relaunch with a larger heap: halves the start-up (5.7 s -> 2.8 s).
        "GEMINI_CLI_NO_RELAUNCH": "true",
    },
    model=None,
    model_seen=DEFAULT_MODEL,
    timeout=90,
    accepts_session_id=True,
    reports_cost=False,
    write_hello=_write_hello,
    command_call=lambda command: ToolCall("run_shell_command", {"command": command}),
    requested_model=_model_in_path,
    tools_offered=lambda body: {
        declaration["name"]
        for tool in body["tools"]
        for declaration in tool.get("functionDeclarations", [])
    },
    instructions=system_text,
    skills=lambda request: system_text(request.body),  # workspace .gemini/skills
    skill_entry=SKILL_DESCRIPTION,
    history=lambda body: list(body["contents"]),
    turns_so_far=turns_so_far,
    resumed_usage=Usage(input_tokens=100, output_tokens=20),  # this run alone, unlike Codex
    run_seconds=45,
    failure_seconds=45,  # one attempt unless the run asks for more
)
