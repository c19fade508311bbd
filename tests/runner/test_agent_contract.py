"""The contract every agent module keeps, checked for each CLI against its case in
tests/runner/agent_cases/: the module's identity, argv and scrubbed env; its parser on the
CLI's recorded output; and the pinned CLI itself against the scripted model server. What
only one CLI does is tested in its own test_agent_<cli>.py."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from runner.agents import agent_for
from runner.agents.base import TOOL_RESULT_LIMIT, Outcome
from runner.contract import AgentEvent, EventKind, RunStatus, Usage
from tests.fakes.model_server import ModelServer, Scenario, Step
from tests.runner.agent_cases import AGENTS, OUTPUTS, REAL_CLIS
from tests.runner.agent_cases.base import (
    HARNESS,
    PROMPT,
    AgentCase,
    ArgvCase,
    Ending,
    OutputCase,
    RealCli,
    agent_run,
    kinds,
    parse,
    run_cli,
    skill_workspace,
)
from tests.support.real_agents import of_kind


def cli_of(case: AgentCase | OutputCase | RealCli) -> str:
    return case.cli


# --- the module: identity, argv and env -----------------------------------------------------


@pytest.mark.parametrize("case", AGENTS, ids=cli_of)
def test_the_registry_gives_the_module(case: AgentCase) -> None:
    agent = agent_for(case.cli)
    assert isinstance(agent, case.agent_class)
    assert (agent.cli, agent.default_binary, agent.skills_dir) == (
        case.cli,
        case.default_binary,
        case.skills_dir,
    )
    assert agent.parser().state.session_id is None


@pytest.mark.parametrize(
    ("case", "argv_case"),
    [
        pytest.param(case, argv_case, id=f"{case.cli}: {argv_case.name}")
        for case in AGENTS
        for argv_case in case.argv_cases
    ],
)
def test_argv_with_the_prompt_on_stdin(
    case: AgentCase, argv_case: ArgvCase, tmp_path: Path
) -> None:
    run = agent_run(tmp_path, argv_case.config, **argv_case.run)

    invocation = agent_for(case.cli).invocation(run, argv_case.binary)

    assert invocation.argv == argv_case.argv(tmp_path)
    assert invocation.stdin == run.prompt.encode()
    assert (run.home / "tmp").is_dir()  # the env's TMPDIR
    assert not run.workspace.exists()  # nothing written into the workspace
    assert argv_case.written.items() <= written_under(tmp_path).items()


def written_under(root: Path) -> dict[str, str | None]:
    """Every path below `root`: a file's text, or None for a folder."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_text()
        for path in root.rglob("*")
    }


# What an agent process inherits from the runner, none of it secret, and what the scrubbed
# env sets for every CLI.
INHERITED = {"PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR"}
SCRUBBED = {"HOME", "TMPDIR", "TERM", "NO_COLOR"}
# The runner's own secrets and provider settings: no agent may see them.
RUNNER_ENV = {
    "OPENASE_GITHUB_WEBHOOK_SECRET": "whsec-leak",
    "OPENASE_GITHUB_PRIVATE_KEY": "-----BEGIN leak",
    "DATABASE_URL": "postgresql://leak",
    "GH_TOKEN": "ghs_leak",
    "GITHUB_TOKEN": "ghs_must_not_leak",
    "ANTHROPIC_API_KEY": "runner-own-key-leak",
    "OPENAI_API_KEY": "runner-own-key-leak",
    "CODEX_HOME": "/root/.codex-leak",
    "GEMINI_API_KEY": "runner-own-key-leak",
    "GOOGLE_API_KEY": "runner-google-leak",
}


@pytest.mark.parametrize("case", AGENTS, ids=cli_of)
def test_env_holds_only_the_clis_own_variables_and_the_runs_provider_settings(
    case: AgentCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in RUNNER_ENV.items():
        monkeypatch.setenv(name, value)
    provider = {name: SecretStr(value) for name, value in case.provider_env.items()}
    run = agent_run(tmp_path, case.config.model_copy(update={"env": provider}))

    env = agent_for(case.cli).invocation(run, case.default_binary).env

    # The run's provider settings win over the module's own defaults.
    expected = {**case.own_env(run), **case.provider_env}
    assert set(env) - INHERITED == SCRUBBED | set(expected)
    assert not any("leak" in value for value in env.values())
    assert expected.items() <= env.items()
    assert (env["HOME"], env["TMPDIR"]) == (str(run.home), str(run.home / "tmp"))


@pytest.mark.parametrize("case", AGENTS, ids=cli_of)
def test_without_provider_settings_the_env_holds_the_modules_defaults_alone(
    case: AgentCase, tmp_path: Path
) -> None:
    run = agent_run(tmp_path, case.config)

    env = agent_for(case.cli).invocation(run, case.default_binary).env

    assert set(env) - INHERITED == SCRUBBED | set(case.own_env(run))
    assert case.own_env(run).items() <= env.items()


# --- the parser on recorded output -----------------------------------------------------------


@pytest.mark.parametrize("output", OUTPUTS, ids=cli_of)
def test_a_recorded_run_gives_its_session_result_usage_and_summary(output: OutputCase) -> None:
    recorded = output.recorded_run
    parser, events = parse(output.cli, recorded.lines)

    assert kinds(events) == recorded.kinds
    session, final = events[0], events[-1]
    assert session.session_id == recorded.session_id
    assert (final.text, final.is_error, final.session_id) == (
        recorded.summary,
        False,
        recorded.session_id,
    )
    assert (final.usage, final.cost_usd) == (recorded.usage, recorded.cost_usd)
    state = parser.state
    assert (state.session_id, state.final_text) == (recorded.session_id, recorded.summary)
    assert (state.usage, state.cost_usd) == (recorded.usage, recorded.cost_usd)
    assert parser.finish(0, "") == Outcome(status=RunStatus.SUCCEEDED, summary=recorded.summary)


@pytest.mark.parametrize("output", OUTPUTS, ids=cli_of)
def test_cached_input_is_counted_apart(output: OutputCase) -> None:
    line, usage = output.cached_usage
    parser, _ = parse(output.cli, [line])
    assert parser.state.usage == usage


def endings(table: Callable[[OutputCase], tuple[Ending, ...]]) -> list[pytest.ParameterSet]:
    return [
        pytest.param(output, ending, id=f"{output.cli}: {ending.name}")
        for output in OUTPUTS
        for ending in table(output)
    ]


@pytest.mark.parametrize(
    ("output", "ending"),
    endings(lambda output: output.reported_failures + output.unexplained_endings),
)
def test_how_a_run_ended_is_classified(output: OutputCase, ending: Ending) -> None:
    parser, events = parse(output.cli, ending.lines)

    assert [(event.kind, event.is_error) for event in events] == ending.events
    assert parser.finish(ending.exit_code, ending.stderr) == ending.outcome


@pytest.mark.parametrize(("output", "ending"), endings(lambda output: output.reported_failures))
def test_a_failure_the_cli_reports_is_named_by_its_result_event(
    output: OutputCase, ending: Ending
) -> None:
    _, events = parse(output.cli, ending.lines)
    assert events[-1].text == ending.outcome.error


@pytest.mark.parametrize("output", OUTPUTS, ids=cli_of)
def test_lines_that_are_not_json_are_logs_and_unknown_ones_are_ignored(
    output: OutputCase,
) -> None:
    parser = agent_for(output.cli).parser()
    assert parser.feed("") == []
    assert parser.feed("  ") == []
    (log,) = parser.feed(output.noise)
    assert (log.kind, log.text) == (EventKind.LOG, output.noise)
    assert parser.feed(output.unknown) == []


@pytest.mark.parametrize("output", OUTPUTS, ids=cli_of)
def test_long_tool_output_is_cut_to_the_limit(output: OutputCase) -> None:
    long_output = output.long_output
    events = agent_for(output.cli).parser().feed(long_output.line)
    (result,) = [event for event in events if event.kind is EventKind.TOOL_RESULT]
    assert result.text is not None
    assert result.text.startswith(long_output.start)
    assert result.text.endswith(long_output.end)
    assert len(result.text) < TOOL_RESULT_LIMIT + 40


# Every CLI's malformed lines, fed to every parser.
MALFORMED = sorted({line for output in OUTPUTS for line in output.malformed})


@pytest.mark.parametrize("case", AGENTS, ids=cli_of)
@pytest.mark.parametrize("line", MALFORMED, ids=[f"line {n}" for n in range(len(MALFORMED))])
def test_malformed_lines_never_raise(case: AgentCase, line: str) -> None:
    events = agent_for(case.cli).parser().feed(line)
    assert all(isinstance(event, AgentEvent) for event in events)


# --- the real CLI -----------------------------------------------------------------------------


@pytest.mark.parametrize("real", REAL_CLIS, ids=cli_of)
def test_real_cli_runs_tools_and_sees_harness_prompt_and_skills(
    real: RealCli, tmp_path: Path
) -> None:
    workspace = skill_workspace(tmp_path, real.cli)
    script = real.write_hello(workspace)
    chosen = str(uuid.uuid4())

    with ModelServer(Scenario(steps=script.steps)) as server:
        finished = run_cli(real, server, workspace, session_id=chosen)

    summary = script.texts[-1]
    assert finished.outcome == Outcome(status=RunStatus.SUCCEEDED, summary=summary)
    assert {name: (workspace / name).read_text() for name in script.files} == script.files
    requests = server.model_requests()
    assert len(requests) == len(script.steps)
    first = requests[0]
    assert real.requested_model(first) == real.model_seen
    used = {call.name for step in script.steps for call in step.tool_calls}
    assert used <= real.tools_offered(first.body)
    assert HARNESS in real.instructions(first.body)
    assert PROMPT in json.dumps(real.history(first.body), ensure_ascii=False)
    assert real.skill_entry in real.skills(first)
    for request, tool_result in zip(requests[1:], script.tool_results, strict=True):
        assert tool_result in request.text  # the tool's result went back to the model
    calls = of_kind(finished, EventKind.TOOL_CALL)
    assert [(call.tool, call.input) for call in calls] == script.calls
    results = of_kind(finished, EventKind.TOOL_RESULT)
    assert [(r.tool_id, r.is_error) for r in results] == [(c.tool_id, False) for c in calls]
    assert [event.text for event in of_kind(finished, EventKind.TEXT)] == script.texts
    session = finished.parser.state.session_id
    assert [event.session_id for event in of_kind(finished, EventKind.SESSION)] == [session]
    # Claude Code and Gemini CLI take the runner's fresh id; Codex picks its own.
    assert (session == chosen) is real.accepts_session_id
    (final,) = of_kind(finished, EventKind.RESULT)
    assert (final.text, final.session_id) == (summary, session)
    assert finished.parser.state.usage == Usage(
        input_tokens=sum(step.input_tokens for step in script.steps),
        output_tokens=sum(step.output_tokens for step in script.steps),
    )
    assert (finished.parser.state.cost_usd is not None) is real.reports_cost
    assert finished.seconds < real.run_seconds


@pytest.mark.parametrize("real", REAL_CLIS, ids=cli_of)
def test_real_cli_resumes_a_session_with_its_history(real: RealCli, tmp_path: Path) -> None:
    workspace = skill_workspace(tmp_path, real.cli)
    scenario = Scenario(steps=[Step(text="First answer."), Step(text="Second answer.")])

    with ModelServer(scenario) as server:
        first = run_cli(real, server, workspace, session_id=str(uuid.uuid4()))
        session = first.parser.state.session_id
        assert session is not None
        second = run_cli(real, server, workspace, prompt="And now?", resume_session_id=session)

    assert first.outcome.summary == "First answer."
    assert second.outcome == Outcome(status=RunStatus.SUCCEEDED, summary="Second answer.")
    assert second.parser.state.session_id == session
    _, resumed = server.model_requests()
    history = real.history(resumed.body)
    assert real.turns_so_far(resumed.body) == 1  # the first run's answer, once
    assert PROMPT in json.dumps(history, ensure_ascii=False)
    assert "First answer." in json.dumps(history, ensure_ascii=False)
    assert "And now?" in json.dumps(history[-1], ensure_ascii=False)
    assert second.parser.state.usage == real.resumed_usage


@pytest.mark.parametrize("real", REAL_CLIS, ids=cli_of)
def test_real_cli_fails_fast_on_an_api_error(real: RealCli, tmp_path: Path) -> None:
    workspace = skill_workspace(tmp_path, real.cli)

    with ModelServer(Scenario(fail_status=500)) as server:
        finished = run_cli(real, server, workspace)

    assert finished.outcome.status is RunStatus.API_ERROR
    assert finished.outcome.error_class == "api_error"
    assert len(server.model_requests()) == 1  # no retries unless the run asks for them
    assert finished.seconds < real.failure_seconds


@pytest.mark.parametrize("real", REAL_CLIS, ids=cli_of)
def test_the_runners_secrets_are_not_seen_by_the_real_cli(
    real: RealCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = skill_workspace(tmp_path, real.cli)
    monkeypatch.setenv("OPENASE_GITHUB_WEBHOOK_SECRET", "whsec-must-not-leak")
    dump_env = real.command_call("env > seen-env.txt")

    with ModelServer(Scenario(steps=[Step(tool_calls=(dump_env,))])) as server:
        finished = run_cli(real, server, workspace, max_turns=3)

    assert finished.outcome.status is RunStatus.SUCCEEDED
    seen = (workspace / "seen-env.txt").read_text()
    assert "HOME=" in seen  # the command ran in the agent's env
    assert "whsec-must-not-leak" not in seen
    assert os.environ["OPENASE_GITHUB_WEBHOOK_SECRET"] == "whsec-must-not-leak"
