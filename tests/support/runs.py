"""A run of the runner against a local bare remote: its RunSpec, small agent scripts that
behave like real (or misbehaving) CLIs, and executing it; shared by the runner's tests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from runner.contract import (
    AgentConfig,
    AgentEvent,
    HarnessRef,
    Hooks,
    Limits,
    RepoRef,
    RunResult,
    RunSpec,
    SandboxPolicy,
    SkillSpec,
    TicketRef,
)
from runner.events import CallbackEventSink
from runner.execute import Cancellation, execute
from runner.sandbox.confine import Sandbox
from runner.workspace import Workspace

HARNESS = "You are the coder harness v7. Done means tests pass."


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


def spec_for(
    remote: Path,
    argv: list[str],
    *,
    hooks: Hooks | None = None,
    limits: Limits | None = None,
    skills: tuple[SkillSpec, ...] = (),
    cli: str = "command",
    binary: str | None = None,
    run_id: str = "run-1",
    **extra: Any,
) -> RunSpec:
    return RunSpec.model_validate(
        {
            "run_id": run_id,
            "ticket": TicketRef(key="acme/api#7", number=7, title="Add hello"),
            "repo": RepoRef(full_name="acme/api", clone_url=str(remote)),
            "base_branch": "main",
            "work_branch": "openase/7-add-hello",
            "prompt": "Create hello.txt",
            "harness": HarnessRef(name="coder", version=7, text=HARNESS),
            "skills": skills,
            "agent": AgentConfig.model_validate({"cli": cli, "argv": argv, "binary": binary}),
            "hooks": hooks or Hooks(),
            "limits": limits or Limits(),
            # The runner's mechanics (git, limits, hooks) are tested unconfined, as a
            # workflow with `sandbox: off` runs; tests/runner/sandbox/ pass
            # `sandbox=SandboxPolicy(...)` and a machine Sandbox to run them confined.
            "sandbox": SandboxPolicy(enabled=False),
            **extra,
        }
    )


async def run(
    tmp_path: Path,
    spec: RunSpec,
    cancellation: Cancellation | None = None,
    *,
    sandbox: Sandbox | None = None,
) -> tuple[RunResult, list[AgentEvent]]:
    events: list[AgentEvent] = []
    result = await execute(
        spec,
        workspace=Workspace(tmp_path / "ws"),
        sink=CallbackEventSink(spec.run_id, events.append),
        cancellation=cancellation,
        machine="m1",
        sandbox=sandbox,
    )
    return result, events


PARTIAL_THEN = """
import pathlib, sys, time, signal
pathlib.Path("partial.txt").write_text("half done\\n")
print("wrote partial", flush=True)
mode = sys.argv[1]
if mode == "sleep":
    time.sleep(600)
elif mode == "chatty":
    while True:
        print("still working", flush=True)
        time.sleep(0.05)
elif mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(0.1)
"""
