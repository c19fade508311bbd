"""What the engine does with a finished or lost run (DESIGN §4): report every gate as a
check run, then open the PR and wait for review, hand over to the next relay stage, retry
with backoff and the failure in the next prompt, or give up after the last attempt.

Taking a result in (`runs.state` to finished) and deciding on it happen in one
transaction, so a result is acted on exactly once however many workers see it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.errors import AdapterError
from bot.config.repo import RepoConfig, stage_for
from bot.config.states import State
from bot.config.workflow import Workflow
from bot.effects.annotations import annotations_from_output
from bot.effects.kinds import EffectKind
from bot.effects.outbox import add_effect, revision_key
from bot.engine.blockers import backoff
from bot.engine.budgets import run_ended
from bot.engine.commands.ask import ASK, answer
from bot.engine.context import Engine, Followups, load
from bot.engine.decision import Decision
from bot.engine.questions import asked
from bot.engine.runs.events import collect_events
from bot.engine.runs.spec import GATES_ONLY_AGENT, work_branch
from bot.engine.runs.tracking import HANDED_BACK, fetch_result
from bot.engine.status_comment import quoted
from bot.engine.untrusted import fence
from bot.errors import ConfigUnavailable
from bot.tables.mirror import Ticket
from bot.tables.stats import RunOver, count_run
from bot.tables.workflow import Run, RunState
from harness_store.db import reading
from runner.contract import HookResult, RunResult, RunStatus

log = structlog.get_logger(__name__)

LOST_MESSAGE = (
    "The runner stopped sending heartbeats (its machine or process went away); the run is "
    "lost and the ticket goes back to the queue."
)
MAX_FAILURE = 12_000
NO_CHANGES = (
    "The agent finished without changing anything, so there is nothing to review. Make the "
    "change the ticket asks for; the work is only done when it is committed."
)


async def take_result(engine: Engine, run_id: str) -> Followups | None:
    """Persist the run's events and act on its result, if it has one: what follows (None
    when there was nothing to act on)."""
    await collect_events(engine.deps.redis, engine.deps.sessions, run_id)
    result = await fetch_result(engine.deps.redis, run_id)
    if result is None or result.error_class == HANDED_BACK:
        return None
    return await finish_run(engine, run_id, result)


async def finish_run(engine: Engine, run_id: str, result: RunResult | None) -> Followups | None:
    """Record the run as finished (`result`) or lost (None) and decide: what follows; None
    when it was already finished or lost (someone else acted on it), or when the repository's
    config cannot be read now (the cron comes back for it)."""
    async with reading(engine.deps.sessions) as session:
        run = await session.get(Run, run_id)
        if run is None:
            return None
        loaded = await load(session, run.ticket_id, lock=False)
    config = None
    if loaded is not None and loaded.repo is not None and loaded.repo.installation_id:
        try:
            config = (await engine.config_of(loaded.repo)).config
        except (ConfigUnavailable, AdapterError) as error:
            # Deciding without the config would give up on the ticket (no workflow, no
            # attempts left): the result waits in Redis and the cron takes it in later.
            log.warning("result_waits_for_config", run_id=run_id, error=str(error))
            return None
    followups = Followups(decision=f"result:{run_id}")
    async with engine.deps.sessions() as session, session.begin():
        over = await mark_over(session, run_id, result)
        if over is None:
            return None
        fresh = await load(session, run.ticket_id)
        if fresh is not None:
            await _decide(Decision(session, engine, fresh, config, followups), run, result)
        # The dashboard's rollups, last: their rows of the day are shared by every run that
        # ends that day, so they stay locked only until this commits.
        await count_run(session, over)
    log.info(
        "run_taken",
        run_id=run_id,
        status=result.status.value if result else "lost",
        ticket_id=run.ticket_id,
    )
    return followups


async def mark_over(session: AsyncSession, run_id: str, result: RunResult | None) -> RunOver | None:
    """Mark the run finished with `result` (lost: None): what the dashboard's rollups count
    of it (bot.tables.stats.count_run); None when it was already over."""
    open_states = (RunState.QUEUED, RunState.RUNNING)
    if result is None:
        values: dict[str, Any] = {"state": RunState.LOST, "finished_at": func.now()}
    else:
        values = {
            "state": RunState.FINISHED,
            "status": result.status.value,
            "result": result.to_wire(),
            "cost_usd": result.cost_usd,
            "finished_at": result.finished_at,
            "started_at": func.coalesce(Run.started_at, result.started_at),
        }
    changed = await session.execute(
        update(Run)
        .where(Run.id == run_id, Run.state.in_(open_states))
        .values(**values)
        .returning(
            Run.ticket_id,
            Run.workflow,
            Run.spec["_provider"].astext,
            Run.harness_version_id,
            Run.queued_at,
        )
        .execution_options(synchronize_session=False)
    )
    row = changed.first()
    if row is None:
        return None
    ticket_id, workflow, provider, version_id, queued_at = row
    return RunOver(
        ticket_id=ticket_id,
        workflow=workflow,
        provider=provider,
        harness_version_id=version_id,
        queued_at=queued_at,
        outcome=result.status.value if result is not None else RunState.LOST.value,
        cost_usd=result.cost_usd if result is not None else None,
        failed_gates=[hook.name for hook in result.gate_failures] if result is not None else [],
    )


async def _decide(decision: Decision, run: Run, result: RunResult | None) -> None:
    loaded, config, followups = decision.loaded, decision.config, decision.followups
    row = loaded.state
    status = result.status.value if result is not None else "lost"
    cost = (result.cost_usd or 0.0) if result is not None else 0.0
    summary = f"run {run.id} {status}" + (f" (${cost:.2f})" if cost else "")
    decision.note("run", summary, run_id=run.id, status=status, cost_usd=cost)
    if run.workflow == ASK:  # a question, not a stage: answered, nothing moves
        await answer(decision, run, result)
        if loaded.state is not None:
            loaded.state.cost_usd = (loaded.state.cost_usd or 0.0) + cost
        followups.dispatch_due = True
        return
    if row is None:
        return
    row.cost_usd = (row.cost_usd or 0.0) + cost
    await run_ended(decision, result)
    if result is not None and result.session_id:
        row.session_id = result.session_id
    # A gates-only run starts from the work branch on the remote and adds nothing to it.
    gates_only = (run.spec or {}).get("agent", {}).get("argv") == list(GATES_ONLY_AGENT.argv)
    if result is not None:
        await _report_checks(decision, run, result, gates_only)
        row.checks = [
            {"name": f"openase/{hook.name}", "passed": hook.passed, "gate": hook.on_failure}
            for hook in result.hook_results
            if hook.phase == "on_complete"
        ]
    else:
        # Should the lost run's job ever run again (its runner comes back), it stops at once.
        followups.cancel[run.id] = "the run was declared lost and retried elsewhere"
    if row.run_id != run.id or row.state != State.IN_PROGRESS:
        decision.note("run", "the ticket had moved on; result not acted on")
        followups.dispatch_due = True
        return
    workflow = config.workflow(run.workflow) if config is not None else None
    followups.dispatch_due = True  # a slot is free
    if result is not None and result.status is RunStatus.NEEDS_INPUT and workflow is not None:
        await asked(decision, workflow, run, result)
        return
    if (
        result is not None
        and result.succeeded
        and not result.pushed
        and not gates_only
        and row.pr_number is None
        and workflow is not None
        and workflow.finish == State.IN_REVIEW
    ):
        failure = NO_CHANGES
    elif result is not None and result.succeeded and workflow is not None and config is not None:
        await _succeeded(decision, config, workflow, run, result)
        return
    else:
        failure = LOST_MESSAGE if result is None else describe(result)
    await _failed(decision, workflow, run, failure, result)


async def _succeeded(
    decision: Decision, config: RepoConfig, workflow: Workflow, run: Run, result: RunResult
) -> None:
    loaded, followups = decision.loaded, decision.followups
    ticket, repo = loaded.ticket, loaded.repo
    assert repo is not None
    assert loaded.state is not None
    if workflow.finish != State.IN_REVIEW:
        following = stage_for(config, workflow.finish, ticket.labels)
        await decision.transition(
            workflow.finish,
            reason=f"{workflow.name} done; {following.name if following else 'no workflow'} next",
            run_id=None,
            workflow=following.name if following else None,
            attempt=0,
            last_failure=None,
            session_id=None,  # the next stage's agent starts its own session
            head_sha=result.head_sha,
            next_attempt_at=None,
        )
        followups.dispatch.add(ticket.id)
        return
    harness = (run.spec or {}).get("harness") or {}
    body = "\n".join(
        [
            _ticket_line(ticket),
            "",
            (result.summary or "").strip()[:20_000] or "(the agent left no summary)",
            "",
            "| | |",
            "|---|---|",
            f"| Workflow | `{workflow.name}` |",
            f"| Harness | `{harness.get('name')}@{harness.get('version')}` |",
            f"| Attempt | {loaded.state.attempt} of {workflow.max_attempts} |",
            f"| Cost | ${loaded.state.cost_usd:,.2f} |",
            f"| Run | {decision.engine.run_url(run.id)} |",
        ]
    )
    await add_effect(
        decision.session,
        key=f"pr:{ticket.id}:{run.id}",
        kind=EffectKind.PULL_REQUEST,
        payload={
            "repo": repo.full_name,
            "head": work_branch(ticket),
            "base": repo.default_branch or "main",
            "title": _pr_title(ticket),
            "body": body,
            "ticket": ticket.id,
        },
        ticket_id=ticket.id,
        installation_id=repo.installation_id,
    )
    await decision.transition(
        State.IN_REVIEW,
        reason=f"{workflow.name} succeeded and its gates passed",
        run_id=None,
        head_sha=result.head_sha,
        approved=loaded.state.approved and loaded.state.head_sha == result.head_sha,
        last_failure=None,
        next_attempt_at=None,
        waiting=None,
    )
    if loaded.state.pr_number is not None:
        followups.merge_checks.add(ticket.id)


async def _failed(
    decision: Decision,
    workflow: Workflow | None,
    run: Run,
    failure: str,
    result: RunResult | None,
) -> None:
    loaded, followups = decision.loaded, decision.followups
    row = loaded.state
    assert row is not None
    max_attempts = workflow.max_attempts if workflow is not None else row.attempt
    if row.attempt < max_attempts and workflow is not None:
        lost = result is None
        delay = (
            timedelta(0)
            if lost
            else backoff(row.attempt, timedelta(seconds=workflow.limits.backoff_seconds))
        )
        when = datetime.now(UTC) + delay
        await decision.transition(
            workflow.pickup,
            reason=f"attempt {row.attempt} {'lost' if lost else 'failed'}; "
            f"next in {int(delay.total_seconds())} s",
            run_id=None,
            last_failure=failure,
            next_attempt_at=when,
            workflow=workflow.name,
        )
        followups.later[loaded.ticket.id] = when
        return
    await decision.transition(
        State.FAILED,
        reason=f"attempt {row.attempt} of {max_attempts} failed; giving up",
        run_id=None,
        last_failure=failure,
    )
    mark = fence(failure)
    await decision.comment(
        key=f"comment:{loaded.ticket.id}:gave-up:{run.id}",
        body=(
            f"❌ **OpenASE gave up** after {row.attempt} attempt(s) of the "
            f"`{run.workflow}` workflow. The last one failed with:\n\n"
            f"{mark}\n{failure[-6000:]}\n{mark}\n\n"
            "Move the ticket back to `todo` (or comment `/retry`) to try again."
        ),
    )


def describe(result: RunResult) -> str:
    """The failure as the next attempt's prompt and the status comment show it."""
    if result.status == RunStatus.GATES_FAILED and result.gate_failures:
        parts = [_gate_text(hook) for hook in result.gate_failures]
        return "\n\n".join(parts)[-MAX_FAILURE:]
    text = f"The run ended with {result.status.value}"
    if result.error_class:
        text += f" ({result.error_class})"
    if result.error:
        text += f": {result.error}"
    if result.summary:
        text += f"\n\nThe agent's last message:\n{result.summary.strip()[-4000:]}"
    return text[-MAX_FAILURE:]


def _gate_text(hook: HookResult) -> str:
    how = "timed out" if hook.timed_out else f"exited with {hook.exit_code}"
    return (
        f"The gate `{hook.name}` ({hook.phase}) {how} after {hook.duration_s:.1f} s. "
        f"Its output ends with:\n{hook.output_tail.strip()[-4000:]}"
    )


async def _report_checks(decision: Decision, run: Run, result: RunResult, gates_only: bool) -> None:
    """One check run per blocking gate on the pushed commit, and `openase` for the ticket."""
    loaded = decision.loaded
    repo = loaded.repo
    known = gates_only or (loaded.state is not None and result.head_sha == loaded.state.head_sha)
    # GitHub only takes check runs for commits it has: pushed now, or the PR's head already.
    if repo is None or not result.head_sha or not (result.pushed or known):
        return
    details = decision.engine.run_url(run.id)
    gates = [
        hook
        for hook in result.hook_results
        if hook.phase == "on_complete" and hook.on_failure == "block"
    ]
    for hook in gates:
        name = f"openase/{hook.name}"
        conclusion = "success" if hook.passed else ("timed_out" if hook.timed_out else "failure")
        await _check_effect(
            decision,
            run_id=run.id,
            sha=result.head_sha,
            name=name,
            payload={
                "repo": repo.full_name,
                "head_sha": result.head_sha,
                "name": name,
                "external_id": f"{run.id}:{hook.name}",
                "status": "completed",
                "conclusion": conclusion,
                "title": f"{hook.name}: {'passed' if hook.passed else 'failed'}",
                "summary": f"`{hook.name}` exited with {hook.exit_code} after "
                f"{hook.duration_s:.1f} s (attempt {run.attempt}).",
                "text": f"```\n{hook.output_tail}\n```" if hook.output_tail else "",
                "annotations": annotations_from_output(hook.output_tail) if not hook.passed else [],
                "details_url": details,
            },
        )
    ok = result.succeeded
    conclusion, title = ("success", "Gates passed") if ok else ("failure", f"Run {result.status}")
    summary = (result.summary or "")[:60_000] or "The agent finished and every gate passed."
    if not ok:
        summary = describe(result)[:60_000]
    if result.status is RunStatus.NEEDS_INPUT:
        # Not a failure: a person must act (GitHub shows "Action required" with the link).
        conclusion, title = "action_required", "The agent asks a question"
        summary = f"The agent waits for an answer on the ticket:\n\n{quoted(result.question or '')}"
    await _check_effect(
        decision,
        run_id=run.id,
        sha=result.head_sha,
        name="openase",
        payload={
            "repo": repo.full_name,
            "head_sha": result.head_sha,
            "name": "openase",
            "external_id": f"{run.id}:openase",
            "status": "completed",
            "conclusion": conclusion,
            "title": title,
            "summary": summary[:60_000],
            "details_url": details,
        },
    )


async def _check_effect(
    decision: Decision,
    *,
    run_id: str,
    sha: str,
    name: str,
    payload: dict[str, Any],
) -> None:
    repo = decision.loaded.repo
    assert repo is not None
    await add_effect(
        decision.session,
        key=revision_key(f"check:{sha}:{name}", run_id),
        kind=EffectKind.CHECK_RUN,
        payload=payload,
        ticket_id=decision.ticket.id,
        installation_id=repo.installation_id,
    )
    decision.followups.outbox.add(repo.installation_id)


def _ticket_line(ticket: Ticket) -> str:
    """How the PR names its ticket: GitHub's closing keyword, or a link to the Linear or
    Jira issue (whose own GitHub integrations also pick up the key)."""
    if ticket.number is not None:
        return f"Closes #{ticket.number}"
    tracker = {"linear": "Linear", "jira": "Jira"}.get(ticket.source, ticket.source)
    link = f"[{ticket.key}]({ticket.html_url})" if ticket.html_url else ticket.key
    return f"{tracker}: {link}"


def _pr_title(ticket: Ticket) -> str:
    if ticket.number is not None:
        return ticket.title or ticket.key
    return f"{ticket.key}: {ticket.title}" if ticket.title else ticket.key
