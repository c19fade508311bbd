"""Codex's case for the agent contract tests: its recorded JSONL output, and what its module
and the pinned CLI must make of a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest.mock import ANY

from pydantic import SecretStr

from runner.agents.base import Outcome
from runner.agents.codex import Codex
from runner.contract import AgentConfig, EventKind, RunStatus, Usage
from tests.fakes.model_server import Step, ToolCall
from tests.fakes.model_server.responses import turns_so_far
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

# Recorded from codex 0.169.0 against the scripted server (temporary paths shortened).
THREAD = "01a20222-d9fa-77c1-8ffb-d497ee6e832d"
WRITE_RUN = [
    '{"type":"thread.started","thread_id":"01a20222-d9fa-77c1-8ffb-d497ee6e832d"}',
    '{"type":"turn.started"}',
    '{"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":"Writing '
    'the file."}}',
    '{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":'
    '"/bin/bash -lc \\"printf \'hi\\\\\\\\n\' > hello.txt && echo wrote\\"","aggregated_output"'
    ':"","exit_code":null,"status":"in_progress"}}',
    '{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":'
    '"/bin/bash -lc \\"printf \'hi\\\\\\\\n\' > hello.txt && echo wrote\\"","aggregated_output"'
    ':"wrote\\n","exit_code":0,"status":"completed"}}',
    '{"type":"item.started","item":{"id":"item_2","type":"command_execution","command":'
    '"/bin/bash -lc \'echo oops >&2; exit 3\'","aggregated_output":"","exit_code":null,'
    '"status":"in_progress"}}',
    '{"type":"item.completed","item":{"id":"item_2","type":"command_execution","command":'
    '"/bin/bash -lc \'echo oops >&2; exit 3\'","aggregated_output":"oops\\n","exit_code":3,'
    '"status":"failed"}}',
    '{"type":"item.started","item":{"id":"item_3","type":"file_change","changes":[{"path":'
    '"/tmp/cx/repo/notes.txt","kind":"add"}],"status":"in_progress"}}',
    '{"type":"item.completed","item":{"id":"item_3","type":"file_change","changes":[{"path":'
    '"/tmp/cx/repo/notes.txt","kind":"add"}],"status":"completed"}}',
    '{"type":"item.completed","item":{"id":"item_4","type":"agent_message","text":"Wrote '
    'hello.txt."}}',
    '{"type":"turn.completed","usage":{"input_tokens":400,"cached_input_tokens":0,'
    '"cache_write_input_tokens":0,"output_tokens":80,"reasoning_output_tokens":0}}',
]
HIGH_DEMAND = "We\u2019re currently experiencing high demand, which may cause temporary errors."
SERVER_ERROR_RUN = [  # HTTP 500 with retries off
    '{"type":"thread.started","thread_id":"01a20222-e7d3-7953-bd10-4faa48401324"}',
    '{"type":"turn.started"}',
    json.dumps({"type": "error", "message": HIGH_DEMAND}),
    json.dumps({"type": "turn.failed", "error": {"message": HIGH_DEMAND}}),
]
UNAUTHORIZED_FAILURE = (
    '{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized: scripted '
    'failure (HTTP 401), url: http://127.0.0.1:42553/v1/responses"}}'
)
RATE_LIMITED_FAILURE = (
    '{"type":"turn.failed","error":{"message":"exceeded retry limit, last status: 429 Too '
    'Many Requests"}}'
)
# With retries on, each failed attempt is an `error` event; the turn may still succeed.
RECONNECTING = json.dumps({"type": "error", "message": f"Reconnecting... 1/5 ({HIGH_DEMAND})"})
# The server down: Codex retries without end, reporting this every few seconds.
WAITING_FOR_NETWORK = (
    '{"type":"error","message":"Reconnecting... waiting for network (Connection failed: error '
    'sending request)"}'
)
IGNORED_SETTING = (
    '{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Codex is '
    "ignoring 1 unrecognized configuration setting. Check for typos or deprecated settings.\\n"
    '  session-flags: `experimental_instructions_file` is ignored."}}'
)

MODEL = "gpt-5.5"  # in Codex's catalog, so it offers the usual tools (apply_patch among them)
QUIET_CONFIG = [
    "-c",
    "features.plugins=false",
    "-c",
    "analytics.enabled=false",
    "-c",
    "check_for_update_on_startup=false",
]


def _exec(tmp: Path, binary: str) -> list[str]:
    return [
        binary,
        "exec",
        "--json",
        "--skip-git-repo-check",
        "-C",
        str(tmp / "repo"),
        "--dangerously-bypass-approvals-and-sandbox",
        *QUIET_CONFIG,
    ]


AGENT = AgentCase(
    cli="codex",
    agent_class=Codex,
    default_binary="codex",
    skills_dir=".codex/skills",
    config=AgentConfig(cli="codex"),
    argv_cases=(
        ArgvCase(
            "provider, model and harness as settings",
            AgentConfig(
                cli="codex",
                model="gpt-5.5",
                env={
                    "OPENAI_BASE_URL": SecretStr("http://127.0.0.1:1/v1"),
                    "OPENAI_API_KEY": SecretStr("sk-run"),
                },
                extra_args=("--x",),
            ),
            binary="/opt/codex",
            argv=lambda tmp: [
                *_exec(tmp, "/opt/codex"),
                "-c",
                'model="gpt-5.5"',
                "-c",
                'developer_instructions="You are the coder harness."',
                "-c",
                'model_provider="openase"',
                "-c",
                'model_providers.openase={name="OpenASE",base_url="http://127.0.0.1:1/v1",'
                'wire_api="responses",env_key="OPENAI_API_KEY",request_max_retries=0,'
                "stream_max_retries=0}",
                "--x",
                "-",
            ],
            written={"home/.codex": None},
        ),
        ArgvCase(
            "resume names the thread and unset options are left out",
            AgentConfig(cli="codex", resume_session_id="01a2-thread", max_turns=3),
            binary="codex",
            # Codex picks its own thread ids: a fresh one from the runner is not passed on.
            run={"instructions": "", "session_id": "ignored-fresh-id"},
            argv=lambda tmp: [*_exec(tmp, "codex"), "resume", "01a2-thread", "-"],
        ),
    ),
    own_env=lambda run: {"CODEX_HOME": str(run.home / ".codex")},
    provider_env={"OPENAI_API_KEY": "run-key"},
)


def _with_usage(line: str, **usage: int) -> str:
    data = json.loads(line)
    data["usage"].update(usage)
    return json.dumps(data)


def _with_output(line: str, output: str) -> str:
    data: dict[str, Any] = json.loads(line)
    data["item"]["aggregated_output"] = output
    return json.dumps(data)


CONTEXT_WINDOW_FAILURE = json.dumps(
    {
        "type": "turn.failed",
        "error": {"message": "Codex ran out of room in the model's context window."},
    }
)
FAILED_CALL_EVENTS = [(EventKind.SESSION, None), (EventKind.LOG, True), (EventKind.RESULT, True)]
FAILED_CALL_STDERR = "Reading additional input from stdin...\n"

OUTPUT = OutputCase(
    cli="codex",
    recorded_run=RecordedRun(
        WRITE_RUN,
        kinds=[
            EventKind.SESSION,
            EventKind.TEXT,
            EventKind.TOOL_CALL,
            EventKind.TOOL_RESULT,
            EventKind.TOOL_CALL,
            EventKind.TOOL_RESULT,
            EventKind.TOOL_CALL,
            EventKind.TOOL_RESULT,
            EventKind.TEXT,
            EventKind.USAGE,
            EventKind.RESULT,
        ],
        session_id=THREAD,
        summary="Wrote hello.txt.",
        usage=Usage(input_tokens=400, output_tokens=80),
        cost_usd=None,  # Codex reports no cost
    ),
    cached_usage=(
        _with_usage(
            WRITE_RUN[-1], input_tokens=1000, cached_input_tokens=600, cache_write_input_tokens=50
        ),
        Usage(input_tokens=400, output_tokens=80, cache_read_tokens=600, cache_write_tokens=50),
    ),
    reported_failures=(
        *(
            Ending(
                f"a failed model call: {name}",
                [*SERVER_ERROR_RUN[:-1], failure],
                exit_code=1,
                stderr=FAILED_CALL_STDERR,
                events=FAILED_CALL_EVENTS,
                outcome=Outcome(
                    RunStatus.API_ERROR, error=error_message(failure), error_class="api_error"
                ),
            )
            for name, failure in [
                ("server error", SERVER_ERROR_RUN[-1]),
                ("unauthorized", UNAUTHORIZED_FAILURE),
                ("rate limited", RATE_LIMITED_FAILURE),
            ]
        ),
        Ending(
            "a failed turn that is not the API",
            [WRITE_RUN[0], CONTEXT_WINDOW_FAILURE],
            exit_code=1,
            stderr="",
            events=[(EventKind.SESSION, None), (EventKind.RESULT, True)],
            outcome=Outcome(
                RunStatus.AGENT_ERROR,
                error="Codex ran out of room in the model's context window.",
                error_class="agent_error",
            ),
        ),
    ),
    unexplained_endings=(
        Ending(
            "an exit without a finished turn names stderr",
            WRITE_RUN[:3],
            exit_code=2,
            stderr="error: unexpected argument '--bogus' found\n",
            events=[(EventKind.SESSION, None), (EventKind.TEXT, None)],
            outcome=Outcome(
                RunStatus.AGENT_ERROR,
                summary="Writing the file.",
                error="codex exited with code 2 without finishing its turn: "
                "error: unexpected argument '--bogus' found",
                error_class="no_result",
            ),
        ),
        Ending(
            "a finished turn without a final message",
            [WRITE_RUN[0], WRITE_RUN[1], WRITE_RUN[-1]],
            exit_code=0,
            stderr="",
            events=[(EventKind.SESSION, None), (EventKind.USAGE, None), (EventKind.RESULT, False)],
            outcome=Outcome(
                RunStatus.AGENT_ERROR,
                error="codex finished without a final message",
                error_class="no_result",
            ),
        ),
    ),
    noise="Reading additional input from stdin...",
    unknown='{"type":"item.completed","item":{"id":"i","type":"reasoning","text":"hmm"}}',
    # The end of a command's output is kept: that is where a failing command says why.
    long_output=LongOutput(
        _with_output(WRITE_RUN[4], "a" * 10_000 + "THE END"),
        start="[... 5911 earlier characters]\n",
        end="THE END",
    ),
    malformed=(
        "Reading additional input from stdin...",
        "[1, 2]",
        '{"type": "item.completed", "item": "not an object"}',
        '{"type": "item.completed", "item": {"type": "command_execution", "exit_code": "x"}}',
        '{"type": "turn.completed", "usage": {"input_tokens": "many"}}',
        '{"type": "turn.failed", "error": null}',
        '{"type": "thread.started"}',
    ),
)


def _write_hello(workspace: Path) -> ScriptedRun:
    command = ToolCall("exec_command", {"cmd": "printf 'hi\\n' > hello.txt"})
    patch = ToolCall(
        "apply_patch", {}, raw="*** Begin Patch\n*** Add File: notes.txt\n+a note\n*** End Patch\n"
    )
    notes = {"path": str(workspace / "notes.txt"), "kind": "add"}
    return ScriptedRun(
        steps=[
            Step(text="Writing the file.", tool_calls=(command,)),
            Step(tool_calls=(patch,)),
            Step(text="Wrote hello.txt."),
        ],
        # Codex reports its own tools: the command as its shell ran it, the patch as changes.
        calls=[("shell", {"command": ANY}), ("apply_patch", {"changes": [notes]})],
        texts=["Writing the file.", "Wrote hello.txt."],
        files={"hello.txt": "hi\n", "notes.txt": "a note\n"},
        tool_results=("call_000_00", "call_001_00"),
    )


def developer_texts(body: dict[str, Any]) -> list[str]:
    """The developer messages: the harness is one of its own, after Codex's instructions."""
    return [
        part["text"]
        for item in body["input"]
        if item.get("role") == "developer"
        for part in item["content"]
    ]


REAL = RealCli(
    cli="codex",
    npm_name="codex",
    provider_env=lambda url: {"OPENAI_BASE_URL": f"{url}/v1", "OPENAI_API_KEY": "sk"},
    model=MODEL,
    model_seen=MODEL,
    timeout=60,  # an unreachable model server makes Codex wait forever
    accepts_session_id=False,
    reports_cost=False,
    write_hello=_write_hello,
    command_call=lambda command: ToolCall("exec_command", {"cmd": command}),
    requested_model=lambda request: str(request.body["model"]),
    tools_offered=lambda body: {tool["name"] for tool in body["tools"] if "name" in tool},
    instructions=developer_texts,
    skills=lambda request: request.text,  # workspace .codex/skills
    skill_entry=f"- run-tests: {SKILL_DESCRIPTION}",
    history=lambda body: list(body["input"]),
    turns_so_far=turns_so_far,
    # Codex reports the thread's totals, the first run included.
    resumed_usage=Usage(input_tokens=200, output_tokens=40),
    run_seconds=30,
    failure_seconds=10,  # retries are off by default
)
