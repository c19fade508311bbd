"""Driving one real agent CLI once, outside the runner: shared by the agent tests."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from runner.agents.base import Agent, AgentRun, Outcome, StreamParser
from runner.contract import AgentConfig, AgentEvent, EventKind, Limits


@dataclass
class Finished:
    events: list[AgentEvent]
    outcome: Outcome
    parser: StreamParser
    seconds: float


def of_kind(finished: Finished, kind: EventKind) -> list[AgentEvent]:
    return [event for event in finished.events if event.kind is kind]


def skill_repo(tmp_path: Path, skills_dir: str, skill_md: str) -> Path:
    """A git repository with one committed README and a skill `run-tests` under
    `skills_dir`, where the CLI looks for skills."""
    repo = tmp_path / "repo"
    skill = repo / skills_dir / "run-tests"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text(skill_md)
    (repo / "README.md").write_text("# demo\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    return repo


def run_real(
    agent: Agent,
    binary: str,
    workspace: Path,
    config: AgentConfig,
    *,
    prompt: str,
    instructions: str,
    session_id: str | None = None,
    timeout: float = 60,
) -> Finished:
    """Run the CLI with the agent module's own invocation and parse what it printed."""
    run = AgentRun(
        workspace=workspace,
        home=workspace.parent / "home",  # kept between runs, as per ticket: sessions live here
        prompt=prompt,
        instructions=instructions,
        prompt_file=workspace.parent / "prompt.md",
        config=config,
        ticket_key="octo/hello#1",
        limits=Limits(),
        session_id=session_id,
    )
    invocation = agent.invocation(run, binary)
    parser = agent.parser()
    started = time.monotonic()
    done = subprocess.run(
        invocation.argv,
        cwd=workspace,
        env=invocation.env,
        input=invocation.stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.monotonic() - started
    events = [e for line in done.stdout.decode().splitlines() for e in parser.feed(line)]
    outcome = parser.finish(done.returncode, done.stderr.decode()[-2000:])
    return Finished(events, outcome, parser, seconds)
