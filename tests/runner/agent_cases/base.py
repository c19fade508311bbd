"""The shapes of a CLI's case for the agent contract tests, and the helpers those tests and
the per-CLI ones share: a run to invoke, recorded output to parse, a real CLI to drive."""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from runner.agents import agent_for
from runner.agents.base import Agent, AgentRun, Outcome, StreamParser
from runner.contract import AgentCli, AgentConfig, AgentEvent, EventKind, Limits, Usage
from tests.fakes.model_server import ModelServer, RecordedRequest, Step, ToolCall
from tests.support.agent_clis import CliName, agent_cli
from tests.support.real_agents import Finished, run_real, skill_repo

# --- the agent module: identity, argv and env ----------------------------------------------


@dataclass(frozen=True)
class ArgvCase:
    """One run handed to an agent module, and the command line it must build from it."""

    name: str
    config: AgentConfig
    binary: str
    argv: Callable[[Path], list[str]]  # the test's tmp_path -> the expected argv
    run: Mapping[str, Any] = field(default_factory=dict)  # AgentRun fields unlike agent_run's
    # What the module leaves under tmp_path besides home/tmp: text, or None for a folder.
    written: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentCase:
    cli: AgentCli
    agent_class: type[Agent]
    default_binary: str
    skills_dir: str
    config: AgentConfig  # the least a run of this agent configures
    argv_cases: tuple[ArgvCase, ...]
    own_env: Callable[[AgentRun], dict[str, str]]  # what the module adds to the scrubbed env
    provider_env: Mapping[str, str]  # a run's provider settings (AgentConfig.env)


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


# --- the parser: recorded output ------------------------------------------------------------

Events = list[tuple[EventKind, bool | None]]  # each event's kind and is_error


@dataclass(frozen=True)
class RecordedRun:
    """A successful run as the CLI printed it, and what its parser must keep of it."""

    lines: list[str]
    kinds: list[EventKind]
    session_id: str
    summary: str
    usage: Usage
    cost_usd: float | None


@dataclass(frozen=True)
class Ending:
    """How a run's output ended, and the outcome its parser must make of that end."""

    name: str
    lines: list[str]
    exit_code: int
    stderr: str
    events: Events
    outcome: Outcome


@dataclass(frozen=True)
class LongOutput:
    line: str  # a tool result far over TOOL_RESULT_LIMIT
    start: str  # what its event's text starts with
    end: str  # and ends with


@dataclass(frozen=True)
class OutputCase:
    cli: AgentCli
    recorded_run: RecordedRun
    cached_usage: tuple[str, Usage]  # a line whose usage holds cached input, and its count
    reported_failures: tuple[Ending, ...]  # the CLI's own result says what went wrong
    unexplained_endings: tuple[Ending, ...]  # the exit says more than the output does
    noise: str  # a line the CLI prints that is not JSON
    unknown: str  # a JSON line that means nothing for a run report
    long_output: LongOutput
    malformed: tuple[str, ...]  # lines that must not make the parser raise


def error_message(line: str) -> str:
    """The message of the error a recorded line reports."""
    message: str = json.loads(line)["error"]["message"]
    return message


def parse(cli: AgentCli, lines: list[str]) -> tuple[StreamParser, list[AgentEvent]]:
    parser = agent_for(cli).parser()
    return parser, [event for line in lines for event in parser.feed(line)]


def kinds(events: list[AgentEvent]) -> list[EventKind]:
    return [event.kind for event in events]


# --- the real CLI against the scripted model server -----------------------------------------

HARNESS = "HARNESS-4c1d: you are the coder; finish with a one-line summary.\n[not = toml]"
PROMPT = "-Write hello.txt saying hi."  # a leading dash must not read as an option
SKILL_DESCRIPTION = "Run the repository's test suite with pytest and report failures."
SKILL_BODY = "SKILL-BODY-91c2: run `pytest -q` and summarise the failures."


@dataclass(frozen=True)
class ScriptedRun:
    """A scripted conversation in which the model has the CLI write hello.txt."""

    steps: list[Step]
    calls: list[tuple[str, dict[str, Any]]]  # (tool, input) of the TOOL_CALL events it makes
    texts: list[str]  # its TEXT events; the last is the summary
    files: dict[str, str]  # what it leaves in the workspace
    tool_results: tuple[str, ...]  # what shows in each later request that a tool's result came back


@dataclass(frozen=True)
class RealCli:
    cli: AgentCli
    npm_name: CliName
    provider_env: Callable[[str], dict[str, str]]  # the model server's URL -> AgentConfig.env
    model: str | None  # AgentConfig.model
    model_seen: str  # the model its requests name
    timeout: float
    accepts_session_id: bool  # else it picks its own
    reports_cost: bool
    write_hello: Callable[[Path], ScriptedRun]  # the workspace -> the conversation
    command_call: Callable[[str], ToolCall]  # the model asks its shell tool to run a command
    requested_model: Callable[[RecordedRequest], str]
    tools_offered: Callable[[dict[str, Any]], set[str]]
    instructions: Callable[[dict[str, Any]], Container[str]]  # where the harness must be
    skills: Callable[[RecordedRequest], str]  # where the skill list must be
    skill_entry: str  # how the skill shows in that list
    history: Callable[[dict[str, Any]], list[Any]]  # the conversation a request carries
    turns_so_far: Callable[[dict[str, Any]], int]  # model turns in that conversation
    resumed_usage: Usage  # what a resumed run of one turn after a run of one turn reports
    run_seconds: float  # a scripted run takes less
    failure_seconds: float  # an API failure ends a run sooner


def skill_workspace(tmp_path: Path, cli: AgentCli) -> Path:
    """A git repository with one skill where the CLI looks for them."""
    skill_md = f"---\nname: run-tests\ndescription: {SKILL_DESCRIPTION}\n---\n{SKILL_BODY}\n"
    return skill_repo(tmp_path, agent_for(cli).skills_dir, skill_md)


def run_cli(
    real: RealCli,
    server: ModelServer,
    workspace: Path,
    *,
    prompt: str = PROMPT,
    session_id: str | None = None,
    resume_session_id: str | None = None,
    max_turns: int | None = None,
) -> Finished:
    """One run of the pinned CLI, with the harness, against `server`."""
    config = AgentConfig(
        cli=real.cli,
        model=real.model,
        env={name: SecretStr(value) for name, value in real.provider_env(server.url).items()},
        resume_session_id=resume_session_id,
        max_turns=max_turns,
    )
    return run_real(
        agent_for(real.cli),
        str(agent_cli(real.npm_name)),
        workspace,
        config,
        prompt=prompt,
        instructions=HARNESS,
        session_id=session_id,
        timeout=real.timeout,
    )
