"""One run, start to end: RunSpec in, RunResult out.

prepare worktree -> on_claim -> materialise skills -> on_start -> agent (under limits)
-> remove skills -> commit what exists -> on_complete gates -> push -> on_done | on_error |
on_cancel.

Work is committed and pushed whatever ended the agent (limit, cancel, failure), so a
partial branch is never lost; the result says why the run ended. Gates judge the very
commit that is pushed.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from runner.agent_outcome import judge
from runner.agents import agent_for
from runner.agents.base import Agent, AgentRun, Outcome, StreamParser, scrubbed_env
from runner.contract import (
    QUESTION_FILE_ENV,
    AgentEvent,
    EventKind,
    HookPhase,
    HookResult,
    RunResult,
    RunSpec,
    RunStatus,
    Usage,
)
from runner.events import EventSink
from runner.git import GitError
from runner.hooks import run_hooks
from runner.materialise import Materialised, cleanup, materialise_skills
from runner.pricing import Meter
from runner.process import AgentStartError, ProcessOutcome, StopReason, supervise
from runner.questions import prepare, question_file, read_question, with_question
from runner.sandbox.bwrap import program_roots
from runner.sandbox.confine import RunSandbox, Sandbox
from runner.workspace import Workspace, Worktree

log = structlog.get_logger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Cancellation:
    """Set by whoever stops a run (a Redis signal, an arq abort, runner shutdown)."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = "canceled"
    # The result's error_class: "canceled" (asked for), "aborted" (arq abort) or
    # "runner_shutdown" (the job goes back to the queue: not a final outcome).
    error_class: str = "canceled"

    def cancel(self, reason: str, error_class: str = "canceled") -> None:
        if not self.event.is_set():
            self.reason = reason
            self.error_class = error_class
            self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()


def compose_prompt(spec: RunSpec) -> str:
    """The task for this attempt; a failed attempt's output follows so the agent can fix it."""
    if not spec.previous_failure:
        return spec.prompt
    return (
        f"{spec.prompt}\n\n## The previous attempt (#{spec.attempt - 1}) failed\n\n"
        f"Fix what made it fail; this is what the gates reported:\n\n{spec.previous_failure}\n"
    )


def safe_name(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-.")[:100] or "run"


class Run:
    """State of one run while it executes; `execute` is the entry point."""

    def __init__(
        self,
        spec: RunSpec,
        workspace: Workspace,
        sink: EventSink,
        cancellation: Cancellation,
        machine: str | None,
    ) -> None:
        self.spec = spec
        self.confinement: RunSandbox | None = None  # set while a confined run executes
        self.workspace = workspace
        self.sink = sink
        self.cancellation = cancellation
        self.machine = machine
        self.started_at = datetime.now(UTC)
        self.hook_results: list[HookResult] = []
        self.home = workspace.root / "homes" / safe_name(spec.ticket.key)
        self.run_dir = workspace.root / "runs" / safe_name(spec.run_id)
        self.token = spec.git_token.get_secret_value() if spec.git_token else None

    def phase(self, name: str, **data: object) -> None:
        self.sink.emit(AgentEvent(kind=EventKind.PHASE, text=name, data=dict(data)))

    def result(self, status: RunStatus, **fields: object) -> RunResult:
        return RunResult.model_validate(
            {
                "run_id": self.spec.run_id,
                "status": status,
                "branch": self.spec.work_branch,
                "hook_results": tuple(self.hook_results),
                "machine": self.machine,
                "started_at": self.started_at,
                "finished_at": datetime.now(UTC),
                **fields,
            }
        )

    async def hooks(self, phase: HookPhase, worktree: Worktree) -> list[HookResult]:
        specs = self.spec.hooks.phase(phase)
        if not specs:
            return []
        self.phase("hooks", hook_phase=phase)
        base_env = scrubbed_env(self.home, self.spec.agent.model_copy(update={"env": {}}))

        def report(hook: HookResult) -> None:
            state = "passed" if hook.passed else ("timed out" if hook.timed_out else "failed")
            self.sink.emit(
                AgentEvent(
                    kind=EventKind.HOOK,
                    text=f"{phase}/{hook.name} {state} in {hook.duration_s:.1f}s",
                    is_error=not hook.passed,
                    data=hook.model_dump(mode="json"),
                )
            )

        results = await run_hooks(
            phase,
            specs,
            cwd=worktree.path,
            ticket=self.spec.ticket.key,
            workspace=worktree.path,
            attempt=self.spec.attempt,
            base_env=base_env,
            on_result=report,
            confinement=self.confinement,
        )
        self.hook_results.extend(results)
        return results


async def execute(
    spec: RunSpec,
    *,
    workspace: Workspace,
    sink: EventSink,
    cancellation: Cancellation | None = None,
    machine: str | None = None,
    sandbox: Sandbox | None = None,
) -> RunResult:
    """Carry out one run; never raises for anything the run itself did wrong.

    A run whose policy asks for the sandbox (the default) needs `sandbox`, this machine's,
    and one that can confine; without, it is refused with the fix."""
    run = Run(spec, workspace, sink, cancellation or Cancellation(), machine)
    structlog.contextvars.bind_contextvars(run_id=spec.run_id, ticket=spec.ticket.key)
    try:
        if not spec.sandbox.enabled:
            return await _execute(run)
        if sandbox is None or not sandbox.available:
            why = (
                sandbox.refusal()
                if sandbox is not None
                else "this runner was started without a sandbox"
            )
            return run.result(RunStatus.REFUSED, error_class="sandbox_unavailable", error=why)
        run.confinement = RunSandbox(
            sandbox,
            spec.sandbox,
            spec.agent,
            home=run.home,
            run_dir=run.run_dir,
            emit=sink.emit,
        )
        async with run.confinement:
            return await _execute(run)
    except Exception as error:  # a bug of ours must not lose the run's outcome
        log.exception("run_crashed")
        return run.result(
            RunStatus.INFRA_ERROR,
            error_class="runner_error",
            error=f"the runner failed: {type(error).__name__}: {error}",
        )
    finally:
        shutil.rmtree(run.run_dir, ignore_errors=True)
        structlog.contextvars.unbind_contextvars("run_id", "ticket")


async def _execute(run: Run) -> RunResult:
    spec = run.spec
    agent = agent_for(spec.agent.cli)
    binary = _resolve_binary(agent, spec)
    if binary is None:
        name = spec.agent.binary or agent.default_binary
        return run.result(
            RunStatus.INFRA_ERROR,
            error_class="agent_cli_missing",
            error=f"the {spec.agent.cli} agent's CLI {name!r} is not on this machine's PATH",
        )

    run.phase("preparing", repo=spec.repo.full_name, branch=spec.work_branch)
    try:
        worktree = await run.workspace.prepare(
            spec.repo, spec.base_branch, spec.work_branch, run.token
        )
    except (GitError, ValueError) as error:
        return run.result(RunStatus.INFRA_ERROR, error_class="git_prepare_failed", error=str(error))

    blocked = await _gate(run, "on_claim", worktree) or await _gate(run, "on_start", worktree)
    if blocked is not None:
        return await _finish(run, worktree, blocked, Outcome(RunStatus.GATES_FAILED), None)

    materialised = materialise_skills(worktree.path, agent.skills_dir, spec.skills)
    _report_skill_problems(run, materialised)
    try:
        outcome, parser, exit_code = await _run_agent(run, agent, binary, worktree)
    finally:
        cleanup(materialised)
    return await _finish(run, worktree, None, outcome, parser, exit_code)


def _resolve_binary(agent: Agent, spec: RunSpec) -> str | None:
    if spec.agent.cli == "command":
        return spec.agent.argv[0] if spec.agent.argv else ""
    name = spec.agent.binary or agent.default_binary
    return shutil.which(name)


async def _gate(run: Run, phase: HookPhase, worktree: Worktree) -> str | None:
    """Run a phase's hooks; the failing blocking hook's description, or None."""
    for hook in await run.hooks(phase, worktree):
        if hook.blocks:
            return f"{phase} hook {hook.name!r} failed"
    return None


def _report_skill_problems(run: Run, materialised: Materialised) -> None:
    for refused in materialised.refused:
        run.sink.emit(
            AgentEvent(
                kind=EventKind.LOG,
                text=f"skill {refused.name} not materialised: {refused.reason}",
                is_error=True,
            )
        )


async def _run_agent(
    run: Run, agent: Agent, binary: str, worktree: Worktree
) -> tuple[Outcome, StreamParser, int | None]:
    spec = run.spec
    run.home.mkdir(parents=True, exist_ok=True)
    (run.home / "tmp").mkdir(exist_ok=True)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    prompt = compose_prompt(spec)
    prompt_file = run.run_dir / "prompt.md"
    prompt_file.write_text(prompt)
    asked = question_file(run.home)
    prepare(asked)
    agent_run = AgentRun(
        workspace=worktree.path,
        home=run.home,
        prompt=prompt,
        instructions=spec.harness.text,
        prompt_file=prompt_file,
        config=spec.agent,
        ticket_key=spec.ticket.key,
        limits=spec.limits,
        session_id=None if spec.agent.resume_session_id else str(uuid.uuid4()),
    )
    parser = agent.parser(Meter.for_agent(spec.agent, spec.limits.budget_usd))
    try:
        invocation = agent.invocation(agent_run, binary)
    except ValueError as error:
        return (
            Outcome(RunStatus.AGENT_ERROR, error=str(error), error_class="agent_config"),
            parser,
            None,
        )
    limits = spec.limits
    # The agent's own `git commit` needs an identity; its scrubbed env has no git config.
    identity = spec.git_identity
    env = {
        "GIT_AUTHOR_NAME": identity.name,
        "GIT_AUTHOR_EMAIL": identity.email,
        "GIT_COMMITTER_NAME": identity.name,
        "GIT_COMMITTER_EMAIL": identity.email,
        QUESTION_FILE_ENV: str(asked),
        **invocation.env,
    }

    finished = False  # the agent reported its final result: nothing left to save money on

    def on_line(line: str) -> StopReason | None:
        nonlocal finished
        for event in parser.feed(line):
            run.sink.emit(event)
            finished = finished or event.kind is EventKind.RESULT
        state = parser.state
        if state.gave_up is not None:
            return StopReason.CANCELED
        if finished:
            return None
        if limits.budget_usd is not None and (state.cost_usd or 0) >= limits.budget_usd:
            return StopReason.OVER_BUDGET
        if limits.max_tokens is not None and state.usage.total_tokens >= limits.max_tokens:
            return StopReason.OVER_BUDGET
        return None

    def on_stderr(line: str) -> None:
        run.sink.emit(AgentEvent(kind=EventKind.LOG, text=line, data={"stream": "stderr"}))

    run.phase(
        "agent",
        cli=spec.agent.cli,
        harness=f"{spec.harness.name}@{spec.harness.version}",
        sandbox=_sandbox_summary(run),
    )
    started = time.monotonic()
    limit_hit: str | None = None
    try:
        # Any: the same keyword arguments go to supervise() with or without the sandbox.
        supervision: dict[str, Any] = {
            "stdin": invocation.stdin,
            "on_stdout_line": on_line,
            "on_stderr_line": on_stderr,
            "wall_seconds": limits.wall_seconds,
            "stall_seconds": limits.stall_seconds,
            "cancel": run.cancellation.event,
            "kill_grace_seconds": limits.kill_grace_seconds,
        }
        process: ProcessOutcome
        if run.confinement is None:
            process = await supervise(invocation.argv, cwd=worktree.path, env=env, **supervision)
        else:
            confined = await run.confinement.supervise(
                invocation.argv,
                cwd=worktree.path,
                worktree=worktree.path,
                env=env,
                program_roots=program_roots(invocation.argv[0]),
                **supervision,
            )
            process, limit_hit = confined.outcome, confined.limit
    except AgentStartError as error:
        return (
            Outcome(RunStatus.INFRA_ERROR, error=str(error), error_class="agent_start_failed"),
            parser,
            None,
        )
    log.info(
        "agent_finished",
        stop=process.stop_reason.value,
        exit_code=process.exit_code,
        seconds=round(time.monotonic() - started, 2),
    )
    if limit_hit is not None:
        run.sink.emit(
            AgentEvent(
                kind=EventKind.LOG,
                text=f"sandbox: {limit_hit}",
                is_error=True,
                data={"sandbox": "limit"},
            )
        )
    outcome = judge(
        process,
        parser,
        limits,
        limit_hit=limit_hit,
        canceled=run.cancellation.requested,
        cancel_reason=run.cancellation.reason,
        cancel_class=run.cancellation.error_class,
    )
    return with_question(outcome, read_question(asked)), parser, process.exit_code


async def _finish(
    run: Run,
    worktree: Worktree,
    blocked: str | None,
    outcome: Outcome,
    parser: StreamParser | None,
    exit_code: int | None = None,
) -> RunResult:
    """Commit, gate, push, run the closing hooks and build the result."""
    spec = run.spec
    status = outcome.status
    error, error_class = outcome.error, outcome.error_class
    if blocked is not None:
        error, error_class = blocked, "hook_blocked"

    run.phase("committing")
    head_sha: str | None = None
    pushed = False
    try:
        await run.workspace.commit_all(worktree, _commit_message(spec, status), spec.git_identity)
        head_sha = await run.workspace.head_sha(worktree)
    except GitError as git_error:
        status, error, error_class = RunStatus.INFRA_ERROR, str(git_error), "git_commit_failed"

    # Pushed before the gates run, so the control plane can show them in progress on
    # the commit they judge (GitHub only takes check runs for commits it has).
    if spec.push and head_sha is not None and head_sha != worktree.start_sha:
        run.phase("pushing", branch=spec.work_branch)
        try:
            head_sha = await run.workspace.push(worktree, run.token)
            pushed = True
        except GitError as git_error:
            if status is RunStatus.SUCCEEDED:
                status = RunStatus.INFRA_ERROR
            error = f"{error}; " if error else ""
            error += f"push failed: {git_error}"
            error_class = error_class or "git_push_failed"

    if status is RunStatus.SUCCEEDED:
        blocking = [hook.name for hook in spec.hooks.on_complete if hook.on_failure == "block"]
        run.phase("gating", head_sha=head_sha, pushed=pushed, hooks=blocking)
        gates = await run.hooks("on_complete", worktree)
        failed = [hook.name for hook in gates if hook.blocks]
        if failed:
            status = RunStatus.GATES_FAILED
            error = "blocking on_complete hook failed: " + ", ".join(failed)
            error_class = "gates_failed"

    # A run waiting for an answer has not ended its work: no closing hooks until it does.
    if status is not RunStatus.NEEDS_INPUT:
        closing: HookPhase = (
            "on_done"
            if status is RunStatus.SUCCEEDED
            else "on_cancel"
            if status is RunStatus.CANCELED
            else "on_error"
        )
        await run.hooks(closing, worktree)

    state = parser.state if parser is not None else None
    result = run.result(
        status,
        error=error,
        error_class=error_class,
        head_sha=head_sha,
        pushed=pushed,
        usage=state.usage if state else Usage(),
        cost_usd=state.cost_usd if state else None,
        cost_note=state.cost_note if state else None,
        session_id=state.session_id if state else None,
        summary=outcome.summary or (state.final_text if state else None),
        question=outcome.question if status is RunStatus.NEEDS_INPUT else None,
        agent_exit_code=exit_code,
    )
    run.phase("done", status=result.status.value, head_sha=head_sha, pushed=pushed)
    return result


def _sandbox_summary(run: Run) -> str:
    """How the agent runs, for its phase event: 'off', 'open network' or the allowlist."""
    confinement = run.confinement
    if confinement is None:
        return "off"
    if confinement.policy.network == "open":
        return "bubblewrap, open network"
    return "bubblewrap, egress to " + (", ".join(confinement.hosts) or "nothing")


def _commit_message(spec: RunSpec, status: RunStatus) -> str:
    title = spec.ticket.title.strip().splitlines()[0] if spec.ticket.title.strip() else ""
    subject = f"{spec.ticket.key}: {title}" if title else f"{spec.ticket.key}: agent work"
    how = "" if status is RunStatus.SUCCEEDED else f", stopped: {status.value}"
    return (
        f"{subject[:72]}\n\nWork left uncommitted by the agent in OpenASE run {spec.run_id} "
        f"(attempt {spec.attempt}{how})."
    )
