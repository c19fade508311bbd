"""Gemini CLI: argv, settings and scrubbed env, the stream-json parser on recorded output,
and the real pinned CLI against the scripted model server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from runner.agents import agent_for
from runner.agents.base import TOOL_RESULT_LIMIT, Agent, AgentRun, Outcome, StreamParser
from runner.agents.gemini import DEFAULT_MODEL, REQUIRED_SETTINGS, Gemini, GeminiParser
from runner.contract import AgentConfig, AgentEvent, EventKind, Limits, RunStatus, Usage
from tests.agent_clis import agent_cli
from tests.fakes.model_server import ModelServer, Scenario, Step, ToolCall
from tests.real_agents import Finished, of_kind, run_real, skill_repo

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


def parse(lines: list[str]) -> tuple[GeminiParser, list[AgentEvent]]:
    parser = Gemini().parser()
    return parser, [event for line in lines for event in parser.feed(line)]


def kinds(events: list[AgentEvent]) -> list[EventKind]:
    return [event.kind for event in events]


def test_a_recorded_run_joins_text_deltas_per_turn_and_reports_tools_and_usage() -> None:
    parser, events = parse(WRITE_RUN)

    assert kinds(events) == [
        EventKind.SESSION,
        EventKind.TEXT,
        EventKind.TOOL_CALL,
        EventKind.TOOL_RESULT,
        EventKind.TOOL_CALL,
        EventKind.TOOL_RESULT,
        EventKind.TEXT,
        EventKind.USAGE,
        EventKind.RESULT,
    ]
    session, first, write, written, read, missing, last, usage, final = events
    assert (session.session_id, session.data) == (SESSION, {"model": "gemini-2.5-pro"})
    assert first.text == "Writing the file."
    assert (write.tool, write.tool_id) == ("write_file", "write_file__write_file_1795332178626_0")
    assert write.input == {"file_path": "hello.txt", "content": "hi\n"}
    assert (written.tool_id, written.is_error, written.text) == (write.tool_id, False, None)
    assert (read.tool, missing.tool_id, missing.is_error) == ("read_file", read.tool_id, True)
    assert missing.text == "File not found.\nFile not found: /tmp/gm/repo/missing.txt"
    assert missing.data == {"error_type": "file_not_found"}
    assert last.text == "Wrote hello.txt."
    assert usage.usage == Usage(input_tokens=300, output_tokens=60)
    assert (final.text, final.is_error, final.session_id) == ("Wrote hello.txt.", False, SESSION)
    assert final.data == {"duration_ms": 559, "tool_calls": 2}
    assert parser.state.cost_usd is None  # Gemini CLI reports no cost
    assert parser.finish(0, "") == Outcome(status=RunStatus.SUCCEEDED, summary="Wrote hello.txt.")


def test_cached_input_is_split_from_fresh_input() -> None:
    result = json.loads(WRITE_RUN[-1])
    result["stats"].update(input_tokens=300, cached=200, input=100)
    parser, _ = parse([json.dumps(result)])
    assert parser.state.usage == Usage(input_tokens=100, output_tokens=60, cache_read_tokens=200)


@pytest.mark.parametrize(
    ("result", "exit_code"),
    [(SERVER_ERROR_RESULT, 244), (QUOTA_RESULT, 173), (UNREACHABLE_RESULT, 1)],
)
def test_a_failed_model_call_is_an_api_error(result: str, exit_code: int) -> None:
    parser, events = parse([INIT, PROMPT_ECHO, result])

    assert kinds(events) == [EventKind.SESSION, EventKind.USAGE, EventKind.RESULT]
    message = json.loads(result)["error"]["message"]
    assert (events[-1].text, events[-1].is_error) == (message, True)
    outcome = parser.finish(exit_code, "Attempt 1 failed ... Max attempts reached\n")
    assert outcome == Outcome(status=RunStatus.API_ERROR, error=message, error_class="api_error")


def test_an_error_result_that_is_not_the_api_is_an_agent_error() -> None:
    result = json.loads(SERVER_ERROR_RESULT)
    result["error"] = {"type": "TypeError", "message": "[API Error: x is not a function]"}
    parser, _ = parse([INIT, json.dumps(result)])
    outcome = parser.finish(1, "")
    assert (outcome.status, outcome.error_class) == (RunStatus.AGENT_ERROR, "agent_error")
    assert outcome.error == "[API Error: x is not a function]"


def test_max_session_turns_is_max_turns_with_the_last_words_as_summary() -> None:
    parser, _ = parse([*WRITE_RUN[:6], MAX_TURNS_RESULT])
    outcome = parser.finish(53, "")
    assert (outcome.status, outcome.error_class) == (RunStatus.MAX_TURNS, "max_turns")
    assert outcome.summary == "Writing the file."
    assert outcome.error is not None
    assert outcome.error.startswith("Reached max session turns")


@pytest.mark.parametrize(
    ("exit_code", "stderr", "cause"),
    [
        (41, "Invalid auth method selected.\n", "authentication"),
        (55, "Gemini CLI is not running in a trusted directory.\n", "untrusted workspace"),
        (52, "Invalid configuration in settings.json\n", "configuration"),
    ],
)
def test_refusals_to_start_are_config_errors(exit_code: int, stderr: str, cause: str) -> None:
    outcome = GeminiParser().finish(exit_code, stderr)
    assert (outcome.status, outcome.error_class) == (RunStatus.AGENT_ERROR, "agent_config")
    assert outcome.error == (
        f"gemini refused to start ({cause}, exit {exit_code}): {stderr.strip()}"
    )


def test_no_result_is_an_agent_error_and_cut_off_text_is_kept() -> None:
    parser, events = parse(WRITE_RUN[:3])
    assert kinds(events) == [EventKind.SESSION]  # the text waits for its turn to end
    outcome = parser.finish(137, "")
    assert outcome == Outcome(
        status=RunStatus.AGENT_ERROR,
        error="gemini exited with code 137 without a result",
        error_class="no_result",
    )
    assert parser.state.final_text == "Writing "


def test_success_with_a_failing_exit_code_is_an_agent_error() -> None:
    parser, _ = parse(WRITE_RUN)
    outcome = parser.finish(1, "")
    assert (outcome.status, outcome.error_class) == (RunStatus.AGENT_ERROR, "exit_code")


def test_a_whole_message_and_a_warning_each_stand_alone() -> None:
    parser = GeminiParser()
    whole = '{"type":"message","role":"assistant","content":"All at once."}'
    (text,) = parser.feed(whole)
    assert (text.kind, text.text) == (EventKind.TEXT, "All at once.")
    (warning,) = parser.feed('{"type":"error","severity":"warning","message":"Loop detected"}')
    assert (warning.kind, warning.text, warning.is_error) == (EventKind.LOG, "Loop detected", True)


def test_long_tool_output_keeps_its_end() -> None:
    line = {"type": "tool_result", "tool_id": "t", "status": "success", "output": "a" * 9000 + "!"}
    (event,) = GeminiParser().feed(json.dumps(line))
    assert event.text is not None
    assert event.text.endswith("a!")
    assert event.text.startswith("[... 4905 earlier characters]\n")
    assert len(event.text) < TOOL_RESULT_LIMIT + 40


@pytest.mark.parametrize(
    "line",
    [
        "Warning: Basic terminal detected (TERM=dumb).",
        "[1, 2]",
        '{"type": "tool_use", "parameters": "not an object"}',
        '{"type": "tool_result", "error": "not an object"}',
        '{"type": "result", "status": "success", "stats": {"input_tokens": "many"}}',
        '{"type": "message", "role": "assistant", "content": null, "delta": true}',
    ],
)
def test_malformed_lines_never_raise(line: str) -> None:
    events = GeminiParser().feed(line)
    assert all(isinstance(event, AgentEvent) for event in events)


def test_a_line_that_is_not_json_is_a_log_after_the_pending_text() -> None:
    parser = GeminiParser()
    assert parser.feed(WRITE_RUN[2]) == []
    text, log = parser.feed("Warning: Basic terminal detected (TERM=dumb).")
    assert (text.kind, text.text) == (EventKind.TEXT, "Writing ")
    assert (log.kind, log.text) == (EventKind.LOG, "Warning: Basic terminal detected (TERM=dumb).")


# --- argv, settings and env ---------------------------------------------------------------

ALLOWED_ENV = {"PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR"} | {
    "HOME",
    "TMPDIR",
    "TERM",
    "NO_COLOR",
    "GEMINI_CLI_TRUST_WORKSPACE",
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


def settings_of(home: Path) -> dict[str, object]:
    settings: dict[str, object] = json.loads((home / ".gemini" / "settings.json").read_text())
    return settings


def test_the_module_is_the_gemini_agent() -> None:
    agent: Agent = agent_for("gemini")
    parser: StreamParser = agent.parser()
    assert isinstance(agent, Gemini)
    assert (agent.cli, agent.default_binary, agent.skills_dir) == (
        "gemini",
        "gemini",
        ".gemini/skills",
    )
    assert parser.state.session_id is None


def test_argv_is_headless_yolo_with_the_prompt_on_stdin_and_the_harness_in_home(
    tmp_path: Path,
) -> None:
    config = AgentConfig(cli="gemini", model="gemini-x", extra_args=("--x",))
    run = agent_run(tmp_path, config, session_id="11111111-1111-4111-8111-111111111111")

    invocation = Gemini().invocation(run, "/opt/gemini")

    assert invocation.argv == [
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
    ]
    assert invocation.stdin == b"Write hello.txt"
    home = tmp_path / "home"
    assert (home / ".gemini" / "GEMINI.md").read_text() == "You are the coder harness."
    assert (home / "tmp").is_dir()
    assert not (tmp_path / "repo").exists()  # nothing written into the workspace


def test_resume_wins_over_a_fresh_session_id_and_the_model_has_a_default(tmp_path: Path) -> None:
    config = AgentConfig(cli="gemini", resume_session_id="old-session")
    argv = Gemini().invocation(agent_run(tmp_path, config, session_id="new"), "gemini").argv
    assert argv[argv.index("--resume") + 1] == "old-session"
    assert "--session-id" not in argv
    assert argv[argv.index("-m") + 1] == DEFAULT_MODEL


def test_settings_choose_api_key_auth_one_attempt_and_keep_other_keys(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".gemini").mkdir(parents=True)
    (home / ".gemini" / "settings.json").write_text(
        json.dumps(
            {
                "security": {"auth": {"selectedType": "oauth-personal"}, "folderTrust": {}},
                "model": {"maxSessionTurns": 9},
                "ui": {"theme": "Dracula"},
            }
        )
    )

    Gemini().invocation(agent_run(tmp_path, AgentConfig(cli="gemini")), "gemini")

    settings = settings_of(home)
    assert settings == {
        "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {}},
        "model": {},  # an earlier run's turn limit does not linger
        "ui": {"theme": "Dracula"},
        "privacy": REQUIRED_SETTINGS["privacy"],
        "general": {**REQUIRED_SETTINGS["general"], "maxAttempts": 1},
        "telemetry": {"enabled": False},
    }


def test_settings_take_turns_and_attempts_from_the_run(tmp_path: Path) -> None:
    config = AgentConfig(cli="gemini", max_turns=12, env={"GEMINI_MAX_ATTEMPTS": SecretStr("40")})
    Gemini().invocation(agent_run(tmp_path, config), "gemini")
    settings = settings_of(tmp_path / "home")
    assert settings["model"] == {"maxSessionTurns": 12}
    general = settings["general"]
    assert isinstance(general, dict)
    assert general["maxAttempts"] == 10  # Gemini CLI's ceiling


def test_an_empty_harness_removes_the_one_of_an_earlier_run(tmp_path: Path) -> None:
    config = AgentConfig(cli="gemini")
    Gemini().invocation(agent_run(tmp_path, config), "gemini")
    Gemini().invocation(agent_run(tmp_path, config, instructions=""), "gemini")
    assert not (tmp_path / "home" / ".gemini" / "GEMINI.md").exists()


def test_env_holds_only_the_trust_flag_and_provider_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENASE_GITHUB_WEBHOOK_SECRET", "whsec-leak")
    monkeypatch.setenv("OPENASE_GITHUB_PRIVATE_KEY", "-----BEGIN leak")
    monkeypatch.setenv("DATABASE_URL", "postgresql://leak")
    monkeypatch.setenv("GEMINI_API_KEY", "runner-own-key-leak")
    monkeypatch.setenv("GOOGLE_API_KEY", "runner-google-leak")
    monkeypatch.setenv("GH_TOKEN", "ghs_leak")
    config = AgentConfig(
        cli="gemini",
        env={
            "GEMINI_API_KEY": SecretStr("run-key"),
            "GOOGLE_GEMINI_BASE_URL": SecretStr("http://127.0.0.1:1"),
        },
    )

    env = Gemini().invocation(agent_run(tmp_path, config), "gemini").env

    assert set(env) <= ALLOWED_ENV | set(config.env)
    assert not any("leak" in value for value in env.values())
    assert env["GEMINI_API_KEY"] == "run-key"
    assert env["GEMINI_CLI_TRUST_WORKSPACE"] == "true"
    assert env["HOME"] == str(tmp_path / "home")


# --- the real CLI -------------------------------------------------------------------------

HARNESS = "HARNESS-b83e: you are the coder; finish with a one-line summary."
PROMPT = "-Write hello.txt saying hi."  # a leading dash must not read as an option
SKILL_DESCRIPTION = "Run the repository's test suite with pytest and report failures."
TIMEOUT = 90


@pytest.fixture(scope="module")
def gemini() -> str:
    return str(agent_cli("gemini"))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A git repository with one skill where Gemini CLI looks for them."""
    return skill_repo(
        tmp_path,
        ".gemini/skills",
        f"---\nname: run-tests\ndescription: {SKILL_DESCRIPTION}\n---\nRun `pytest -q`.\n",
    )


def run_gemini(
    gemini: str,
    server: ModelServer,
    workspace: Path,
    *,
    prompt: str = PROMPT,
    session_id: str | None = None,
    resume_session_id: str | None = None,
) -> Finished:
    agent_config = AgentConfig(
        cli="gemini",
        env={
            "GOOGLE_GEMINI_BASE_URL": SecretStr(server.url),
            "GEMINI_API_KEY": SecretStr("k"),
            # Skips its relaunch with a larger heap: halves the start-up (5.7 s -> 2.8 s).
            "GEMINI_CLI_NO_RELAUNCH": SecretStr("true"),
        },
        resume_session_id=resume_session_id,
    )
    return run_real(
        Gemini(),
        gemini,
        workspace,
        agent_config,
        prompt=prompt,
        instructions=HARNESS,
        session_id=session_id,
        timeout=TIMEOUT,
    )


def test_real_gemini_writes_a_file_and_sees_harness_prompt_and_skills(
    gemini: str, workspace: Path
) -> None:
    write = ToolCall("write_file", {"file_path": "hello.txt", "content": "hi\n"})
    scenario = Scenario(
        steps=[Step(text="Writing the file.", tool_calls=(write,)), Step(text="Wrote hello.txt.")]
    )
    session = str(uuid.uuid4())

    with ModelServer(scenario) as server:
        finished = run_gemini(gemini, server, workspace, session_id=session)

    assert finished.outcome == Outcome(status=RunStatus.SUCCEEDED, summary="Wrote hello.txt.")
    assert (workspace / "hello.txt").read_text() == "hi\n"
    first, second = server.model_requests()
    assert f"models/{DEFAULT_MODEL}:streamGenerateContent" in first.path
    system = "".join(part.get("text", "") for part in first.body["systemInstruction"]["parts"])
    assert HARNESS in system  # from $HOME/.gemini/GEMINI.md
    assert SKILL_DESCRIPTION in system  # workspace .gemini/skills
    assert PROMPT in json.dumps(first.body["contents"])
    assert "functionResponse" in second.text  # the tool's result went back to the model
    (call,) = of_kind(finished, EventKind.TOOL_CALL)
    assert (call.tool, call.input) == ("write_file", write.input)
    (result,) = of_kind(finished, EventKind.TOOL_RESULT)
    assert (result.tool_id, result.is_error) == (call.tool_id, False)
    # Each turn's streamed pieces arrive joined.
    assert [e.text for e in of_kind(finished, EventKind.TEXT)] == [
        "Writing the file.",
        "Wrote hello.txt.",
    ]
    assert [e.session_id for e in of_kind(finished, EventKind.SESSION)] == [session]
    (final,) = of_kind(finished, EventKind.RESULT)
    assert (final.text, final.session_id) == ("Wrote hello.txt.", session)
    assert finished.parser.state.usage == Usage(input_tokens=200, output_tokens=40)
    assert finished.seconds < 45


def test_real_gemini_resumes_its_session(gemini: str, workspace: Path) -> None:
    scenario = Scenario(steps=[Step(text="First answer."), Step(text="Second answer.")])
    session = str(uuid.uuid4())

    with ModelServer(scenario) as server:
        first = run_gemini(gemini, server, workspace, session_id=session)
        second = run_gemini(gemini, server, workspace, prompt="And now?", resume_session_id=session)

    assert first.outcome.summary == "First answer."
    assert second.outcome == Outcome(status=RunStatus.SUCCEEDED, summary="Second answer.")
    assert second.parser.state.session_id == session
    resumed = json.dumps(server.model_requests()[-1].body["contents"])
    assert PROMPT in resumed  # the first run's history came back
    assert "First answer." in resumed
    assert "And now?" in resumed
    # Unlike Codex, Gemini CLI counts this run alone.
    assert second.parser.state.usage == Usage(input_tokens=100, output_tokens=20)


def test_real_gemini_api_failure_is_an_api_error_after_one_attempt(
    gemini: str, workspace: Path
) -> None:
    with ModelServer(Scenario(fail_status=500)) as server:
        finished = run_gemini(gemini, server, workspace)

    assert finished.outcome.status is RunStatus.API_ERROR
    assert finished.outcome.error_class == "api_error"
    assert len(server.model_requests()) == 1  # one attempt unless the run asks for more
    assert finished.seconds < 45
