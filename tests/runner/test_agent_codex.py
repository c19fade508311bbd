"""Codex: argv and scrubbed env, the JSONL parser on recorded output, and the real pinned
CLI against the scripted model server."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from pydantic import SecretStr

from runner.agents import agent_for
from runner.agents.base import TOOL_RESULT_LIMIT, Agent, AgentRun, Outcome, StreamParser
from runner.agents.codex import Codex, CodexParser, toml_string
from runner.contract import AgentConfig, AgentEvent, EventKind, Limits, RunStatus, Usage
from tests.agent_clis import agent_cli
from tests.fakes.model_server import ModelServer, Scenario, Step, ToolCall
from tests.fakes.model_server.responses import turns_so_far
from tests.real_agents import Finished, of_kind, run_real, skill_repo

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


def parse(lines: list[str]) -> tuple[CodexParser, list[AgentEvent]]:
    parser = Codex().parser()
    return parser, [event for line in lines for event in parser.feed(line)]


def kinds(events: list[AgentEvent]) -> list[EventKind]:
    return [event.kind for event in events]


def test_a_recorded_run_becomes_session_text_tool_usage_and_result_events() -> None:
    parser, events = parse(WRITE_RUN)

    assert kinds(events) == [
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
    ]
    session, first, call, result, _, failed, patch, patched, last, usage, final = events
    assert session.session_id == THREAD
    assert first.text == "Writing the file."
    assert (call.tool, call.tool_id) == ("shell", "item_1")
    assert call.input == {"command": "/bin/bash -lc \"printf 'hi\\\\n' > hello.txt && echo wrote\""}
    assert (result.tool_id, result.text, result.is_error) == ("item_1", "wrote\n", False)
    assert result.data == {"exit_code": 0}
    assert (failed.text, failed.is_error, failed.data) == ("oops\n", True, {"exit_code": 3})
    changes = [{"path": "/tmp/cx/repo/notes.txt", "kind": "add"}]
    assert (patch.tool, patch.input) == ("apply_patch", {"changes": changes})
    assert (patched.tool_id, patched.is_error, patched.data) == (
        "item_3",
        False,
        {"changes": changes},
    )
    assert last.text == "Wrote hello.txt."
    assert usage.usage == Usage(input_tokens=400, output_tokens=80)
    assert (final.text, final.is_error, final.session_id) == ("Wrote hello.txt.", False, THREAD)
    assert parser.state.session_id == THREAD
    assert parser.state.cost_usd is None  # Codex reports no cost
    assert parser.finish(0, "") == Outcome(status=RunStatus.SUCCEEDED, summary="Wrote hello.txt.")


def test_cached_input_is_split_from_fresh_input() -> None:
    line = json.loads(WRITE_RUN[-1])
    line["usage"].update(input_tokens=1000, cached_input_tokens=600, cache_write_input_tokens=50)
    parser, _ = parse([json.dumps(line)])
    assert parser.state.usage == Usage(
        input_tokens=400, output_tokens=80, cache_read_tokens=600, cache_write_tokens=50
    )


@pytest.mark.parametrize(
    "failure", [SERVER_ERROR_RUN[-1], UNAUTHORIZED_FAILURE, RATE_LIMITED_FAILURE]
)
def test_a_failed_model_call_is_an_api_error(failure: str) -> None:
    parser, events = parse([*SERVER_ERROR_RUN[:-1], failure])

    assert events[-1].kind is EventKind.RESULT
    assert events[-1].is_error is True
    outcome = parser.finish(1, "Reading additional input from stdin...\n")
    assert (outcome.status, outcome.error_class) == (RunStatus.API_ERROR, "api_error")
    assert outcome.error == json.loads(failure)["error"]["message"]


def test_a_failed_turn_that_is_not_the_api_is_an_agent_error() -> None:
    failure = {
        "type": "turn.failed",
        "error": {"message": "Codex ran out of room in the model's context window."},
    }
    parser, _ = parse([WRITE_RUN[0], json.dumps(failure)])
    outcome = parser.finish(1, "")
    assert (outcome.status, outcome.error_class) == (RunStatus.AGENT_ERROR, "agent_error")
    assert outcome.error == "Codex ran out of room in the model's context window."


def test_a_retry_that_recovers_still_succeeds() -> None:
    parser, events = parse([*WRITE_RUN[:2], RECONNECTING, *WRITE_RUN[2:]])
    assert events[1].kind is EventKind.LOG
    assert events[1].is_error is True
    assert parser.finish(0, "").status is RunStatus.SUCCEEDED


def test_an_exit_after_connection_errors_is_an_api_error() -> None:
    parser, _ = parse([*WRITE_RUN[:2], WAITING_FOR_NETWORK, WAITING_FOR_NETWORK])
    outcome = parser.finish(1, "")
    assert outcome.status is RunStatus.API_ERROR
    assert outcome.error is not None
    assert "error sending request" in outcome.error


def test_a_warning_item_is_a_log_and_does_not_fail_the_run() -> None:
    parser, events = parse([WRITE_RUN[0], IGNORED_SETTING, *WRITE_RUN[1:]])
    assert events[1].kind is EventKind.LOG
    assert events[1].text is not None
    assert "experimental_instructions_file" in events[1].text
    assert parser.finish(0, "").status is RunStatus.SUCCEEDED


def test_an_exit_without_a_finished_turn_is_an_agent_error_naming_stderr() -> None:
    parser, _ = parse(WRITE_RUN[:3])
    outcome = parser.finish(2, "error: unexpected argument '--bogus' found\n")
    assert (outcome.status, outcome.error_class) == (RunStatus.AGENT_ERROR, "no_result")
    assert outcome.error == (
        "codex exited with code 2 without finishing its turn: "
        "error: unexpected argument '--bogus' found"
    )
    assert outcome.summary == "Writing the file."


def test_a_finished_turn_without_a_final_message_is_an_agent_error() -> None:
    parser, _ = parse([WRITE_RUN[0], WRITE_RUN[1], WRITE_RUN[-1]])
    outcome = parser.finish(0, "")
    assert outcome.status is RunStatus.AGENT_ERROR
    assert outcome.error == "codex finished without a final message"


def test_a_tool_call_seen_only_completed_still_gets_its_call_event() -> None:
    _, events = parse([WRITE_RUN[4]])
    assert kinds(events) == [EventKind.TOOL_CALL, EventKind.TOOL_RESULT]


def test_long_command_output_keeps_its_end() -> None:
    item = json.loads(WRITE_RUN[4])
    item["item"]["aggregated_output"] = "a" * 10_000 + "THE END"
    _, events = parse([json.dumps(item)])
    text = events[-1].text
    assert text is not None
    assert text.endswith("THE END")
    assert text.startswith("[... 5911 earlier characters]\n")
    assert len(text) < TOOL_RESULT_LIMIT + 40


@pytest.mark.parametrize(
    "line",
    [
        "Reading additional input from stdin...",
        "[1, 2]",
        '{"type": "item.completed", "item": "not an object"}',
        '{"type": "item.completed", "item": {"type": "command_execution", "exit_code": "x"}}',
        '{"type": "turn.completed", "usage": {"input_tokens": "many"}}',
        '{"type": "turn.failed", "error": null}',
        '{"type": "thread.started"}',
    ],
)
def test_malformed_lines_never_raise(line: str) -> None:
    events = CodexParser().feed(line)
    assert all(isinstance(event, AgentEvent) for event in events)


def test_lines_that_are_not_json_are_logs_and_unknown_items_are_ignored() -> None:
    parser = CodexParser()
    assert parser.feed("") == []
    (log,) = parser.feed("Reading additional input from stdin...")
    assert (log.kind, log.text) == (EventKind.LOG, "Reading additional input from stdin...")
    reasoning = '{"type":"item.completed","item":{"id":"i","type":"reasoning","text":"hmm"}}'
    assert parser.feed(reasoning) == []


# --- argv and env -------------------------------------------------------------------------

ALLOWED_ENV = {"PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR"} | {
    "HOME",
    "TMPDIR",
    "TERM",
    "NO_COLOR",
    "CODEX_HOME",
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


def test_the_module_is_the_codex_agent() -> None:
    agent: Agent = agent_for("codex")
    parser: StreamParser = agent.parser()
    assert isinstance(agent, Codex)
    assert (agent.cli, agent.default_binary, agent.skills_dir) == (
        "codex",
        "codex",
        ".codex/skills",
    )
    assert parser.state.session_id is None


def test_argv_configures_provider_model_and_harness_with_the_prompt_on_stdin(
    tmp_path: Path,
) -> None:
    config = AgentConfig(
        cli="codex",
        model="gpt-5.5",
        env={
            "OPENAI_BASE_URL": SecretStr("http://127.0.0.1:1/v1"),
            "OPENAI_API_KEY": SecretStr("sk-run"),
        },
        extra_args=("--x",),
    )

    invocation = Codex().invocation(agent_run(tmp_path, config), "/opt/codex")

    assert invocation.argv == [
        "/opt/codex",
        "exec",
        "--json",
        "--skip-git-repo-check",
        "-C",
        str(tmp_path / "repo"),
        "--dangerously-bypass-approvals-and-sandbox",
        "-c",
        "features.plugins=false",
        "-c",
        "analytics.enabled=false",
        "-c",
        "check_for_update_on_startup=false",
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
    ]
    assert invocation.stdin == b"Write hello.txt"
    assert (tmp_path / "home" / ".codex").is_dir()
    assert (tmp_path / "home" / "tmp").is_dir()


def test_resume_names_the_thread_and_unset_options_are_left_out(tmp_path: Path) -> None:
    config = AgentConfig(cli="codex", resume_session_id="01a2-thread", max_turns=3)
    run = agent_run(tmp_path, config, instructions="", session_id="ignored-fresh-id")

    argv = Codex().invocation(run, "codex").argv

    assert argv[-3:] == ["resume", "01a2-thread", "-"]
    assert not any(
        arg.startswith(("model", "developer_instructions", "model_provider")) for arg in argv
    )
    assert "ignored-fresh-id" not in argv  # Codex picks its own thread ids


def test_the_provider_takes_retries_from_the_run_and_needs_no_key(tmp_path: Path) -> None:
    config = AgentConfig(
        cli="codex",
        env={
            "OPENAI_BASE_URL": SecretStr("http://127.0.0.1:1/v1"),
            "CODEX_MAX_RETRIES": SecretStr("3"),
        },
    )
    argv = Codex().invocation(agent_run(tmp_path, config), "codex").argv
    (provider,) = [arg for arg in argv if arg.startswith("model_providers.")]
    table = tomllib.loads(provider.replace("model_providers.openase=", "provider = ", 1))
    assert table["provider"] == {
        "name": "OpenASE",
        "base_url": "http://127.0.0.1:1/v1",
        "wire_api": "responses",
        "request_max_retries": 3,
        "stream_max_retries": 3,
    }


@pytest.mark.parametrize(
    "text",
    [
        "true",
        "[section]\nkey = 1",
        'say "hi" \\ back\\slash',
        "tabs\tand\r\nnewlines, \x00 nul, \x1b escape, \x7f delete",
        "unicode é 😀 and a leading -dash",
    ],
)
def test_toml_strings_survive_codex_config_parsing(text: str) -> None:
    assert tomllib.loads(f"value = {toml_string(text)}")["value"] == text


def test_env_holds_only_codex_home_and_provider_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENASE_GITHUB_WEBHOOK_SECRET", "whsec-leak")
    monkeypatch.setenv("OPENASE_GITHUB_PRIVATE_KEY", "-----BEGIN leak")
    monkeypatch.setenv("DATABASE_URL", "postgresql://leak")
    monkeypatch.setenv("OPENAI_API_KEY", "runner-own-key-leak")
    monkeypatch.setenv("CODEX_HOME", "/root/.codex-leak")
    monkeypatch.setenv("GH_TOKEN", "ghs_leak")
    config = AgentConfig(cli="codex", env={"OPENAI_API_KEY": SecretStr("run-key")})

    env = Codex().invocation(agent_run(tmp_path, config), "codex").env

    assert set(env) <= ALLOWED_ENV | set(config.env)
    assert not any("leak" in value for value in env.values())
    assert env["OPENAI_API_KEY"] == "run-key"
    assert env["HOME"] == str(tmp_path / "home")
    assert env["CODEX_HOME"] == str(tmp_path / "home" / ".codex")


def test_the_fake_server_counts_a_turn_once_however_its_tool_outputs_interleave() -> None:
    def call(call_id: str) -> dict[str, str]:
        return {"type": "function_call", "call_id": call_id, "name": "exec_command"}

    def output(call_id: str) -> dict[str, str]:
        return {"type": "function_call_output", "call_id": call_id, "output": "ok"}

    user = {"type": "message", "role": "user", "content": []}
    assistant = {"type": "message", "role": "assistant", "content": []}
    history = [
        user,
        *(call("call_000_00"), output("call_000_00"), call("call_000_01"), output("call_000_01")),
        {"type": "reasoning", "summary": []},
        assistant,
        call("call_001_00"),
        output("call_001_00"),
        assistant,
        user,  # a resumed thread's next prompt
    ]
    assert [turns_so_far({"input": history[:n]}) for n in (1, 5, 9, 10, 11)] == [0, 1, 2, 3, 3]


# --- the real CLI -------------------------------------------------------------------------

MODEL = "gpt-5.5"  # in Codex's catalog, so it offers the usual tools (apply_patch among them)
HARNESS = "HARNESS-4c1d: you are the coder; finish with a one-line summary.\n[not = toml]"
PROMPT = "-Write hello.txt saying hi."  # a leading dash must not read as an option
SKILL_DESCRIPTION = "Run the repository's test suite with pytest and report failures."
TIMEOUT = 60  # an unreachable model server makes Codex wait forever


@pytest.fixture(scope="module")
def codex() -> str:
    return str(agent_cli("codex"))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A git repository with one skill where Codex looks for them."""
    return skill_repo(
        tmp_path,
        ".codex/skills",
        f"---\nname: run-tests\ndescription: {SKILL_DESCRIPTION}\n---\nRun `pytest -q`.\n",
    )


def run_codex(
    codex: str,
    server: ModelServer,
    workspace: Path,
    *,
    prompt: str = PROMPT,
    resume_session_id: str | None = None,
) -> Finished:
    agent_config = AgentConfig(
        cli="codex",
        model=MODEL,
        env={"OPENAI_BASE_URL": SecretStr(f"{server.url}/v1"), "OPENAI_API_KEY": SecretStr("sk")},
        resume_session_id=resume_session_id,
    )
    return run_real(
        Codex(),
        codex,
        workspace,
        agent_config,
        prompt=prompt,
        instructions=HARNESS,
        timeout=TIMEOUT,
    )


def developer_texts(body: dict[str, object]) -> list[str]:
    items = body["input"]
    assert isinstance(items, list)
    return [
        part["text"]
        for item in items
        if item.get("role") == "developer"
        for part in item["content"]
    ]


def test_real_codex_runs_a_command_and_a_patch_and_sees_harness_prompt_and_skills(
    codex: str, workspace: Path
) -> None:
    command = ToolCall("exec_command", {"cmd": "printf 'hi\\n' > hello.txt"})
    patch = ToolCall(
        "apply_patch", {}, raw="*** Begin Patch\n*** Add File: notes.txt\n+a note\n*** End Patch\n"
    )
    scenario = Scenario(
        steps=[
            Step(text="Writing the file.", tool_calls=(command,)),
            Step(tool_calls=(patch,)),
            Step(text="Wrote hello.txt."),
        ]
    )

    with ModelServer(scenario) as server:
        finished = run_codex(codex, server, workspace)

    assert finished.outcome == Outcome(status=RunStatus.SUCCEEDED, summary="Wrote hello.txt.")
    assert (workspace / "hello.txt").read_text() == "hi\n"
    assert (workspace / "notes.txt").read_text() == "a note\n"
    first, second, third = server.model_requests()
    assert first.body["model"] == MODEL
    tools = {tool.get("name") for tool in first.body["tools"]}
    assert {"exec_command", "apply_patch"} <= tools
    # The harness is a developer message of its own, after Codex's own instructions.
    assert HARNESS in developer_texts(first.body)
    assert PROMPT in first.text
    assert f"- run-tests: {SKILL_DESCRIPTION}" in first.text  # workspace .codex/skills
    assert "call_000_00" in second.text  # the command's output went back to the model
    assert "call_001_00" in third.text
    calls = of_kind(finished, EventKind.TOOL_CALL)
    assert [call.tool for call in calls] == ["shell", "apply_patch"]
    results = of_kind(finished, EventKind.TOOL_RESULT)
    assert [(r.tool_id, r.is_error) for r in results] == [(c.tool_id, False) for c in calls]
    assert [e.text for e in of_kind(finished, EventKind.TEXT)] == [
        "Writing the file.",
        "Wrote hello.txt.",
    ]
    (session,) = of_kind(finished, EventKind.SESSION)
    (final,) = of_kind(finished, EventKind.RESULT)
    assert (final.text, final.session_id) == ("Wrote hello.txt.", session.session_id)
    assert finished.parser.state.usage == Usage(input_tokens=300, output_tokens=60)
    assert finished.seconds < 30


def test_real_codex_resumes_its_thread(codex: str, workspace: Path) -> None:
    scenario = Scenario(steps=[Step(text="First answer."), Step(text="Second answer.")])

    with ModelServer(scenario) as server:
        first = run_codex(codex, server, workspace)
        thread = first.parser.state.session_id
        assert thread is not None
        second = run_codex(codex, server, workspace, prompt="And now?", resume_session_id=thread)

    assert first.outcome.summary == "First answer."
    assert second.outcome == Outcome(status=RunStatus.SUCCEEDED, summary="Second answer.")
    assert second.parser.state.session_id == thread
    resumed = server.model_requests()[-1]
    assert PROMPT in resumed.text  # the first run's history came back
    assert "First answer." in resumed.text
    assert "And now?" in resumed.text
    # Codex reports the thread's totals, the first run included.
    assert second.parser.state.usage == Usage(input_tokens=200, output_tokens=40)


def test_real_codex_api_failure_is_an_api_error_without_retries(
    codex: str, workspace: Path
) -> None:
    with ModelServer(Scenario(fail_status=500)) as server:
        finished = run_codex(codex, server, workspace)

    assert finished.outcome.status is RunStatus.API_ERROR
    assert finished.outcome.error_class == "api_error"
    assert len(server.model_requests()) == 1  # retries are off by default
    assert finished.seconds < 10


def test_the_parser_gives_up_on_an_api_it_keeps_failing_to_reach() -> None:
    from runner.agents.codex import OFFLINE_LIMIT, CodexParser

    offline = json.dumps(
        {"type": "error", "message": "Reconnecting... waiting for network (Connection failed)"}
    )
    parser = CodexParser()
    for _ in range(OFFLINE_LIMIT - 1):
        parser.feed(offline)
    parser.feed(json.dumps({"type": "turn.started"}))  # progress resets the count
    for _ in range(OFFLINE_LIMIT - 1):
        parser.feed(offline)
    assert parser.state.gave_up is None
    parser.feed(offline)
    assert parser.state.gave_up is not None
    assert parser.state.gave_up.startswith("the model API is unreachable: Reconnecting")
