"""The gates to merge (DESIGN §4): `in_review -> merging` only when the PR is approved (or
the workflow needs no approval) and every check run on its head commit, ours and other
CI's, concluded green; `merging -> done` when GitHub merged it.

GitHub is asked about the checks outside any transaction; the move to `merging` then
re-checks, under the ticket's row lock, that nothing changed meanwhile (same state, same
head). The merge itself is an outbox effect at that head sha: GitHub refuses it (409) if
the branch moved after the checks were read.
"""

from __future__ import annotations

import structlog
from sqlalchemy import select

from adapters.base import CodeHost
from bot.config.states import State
from bot.effects.kinds import EffectKind
from bot.effects.outbox import add_effect
from bot.engine.context import Decided, Engine, Followups, load
from bot.engine.decision import Decision, workflow_of
from bot.tables.workflow import EffectStatus, OutboxEffect

log = structlog.get_logger(__name__)

GREEN = frozenset({"success", "neutral", "skipped"})


async def consider_merge(engine: Engine, ticket_id: int) -> Decided:
    """Start the merge if every gate is open; what stopped it otherwise (one word)."""
    async with engine.deps.sessions() as session:
        loaded = await load(session, ticket_id, lock=False)
        pending_checks = await session.scalar(
            select(OutboxEffect.id)
            .where(
                OutboxEffect.ticket_id == ticket_id,
                OutboxEffect.kind == EffectKind.CHECK_RUN,
                OutboxEffect.status == EffectStatus.PENDING,
            )
            .limit(1)
        )
    if loaded is None or loaded.state is None or loaded.repo is None:
        return Decided("untracked")
    row, repo = loaded.state, loaded.repo
    if row.state != State.IN_REVIEW or row.held:
        return Decided("not_in_review")
    if row.pr_number is None or row.head_sha is None or repo.installation_id is None:
        return Decided("no_pull_request")
    config = (await engine.config_of(repo)).config
    flow = workflow_of(config, row)
    if flow is None or config is None:
        return Decided("no_workflow")
    if flow.approval_required and not row.approved:
        return Decided("needs_approval")
    if pending_checks is not None:
        return Decided("reporting")  # our own check runs are not on GitHub yet
    verdict = await checks_verdict(engine, repo.full_name, row.head_sha, repo.installation_id)
    if verdict is not None:
        return Decided("checks_not_green", await _wait(engine, ticket_id, row.head_sha, verdict))
    followups = Followups(decision=f"merge:{ticket_id}:{row.head_sha}")
    async with engine.deps.sessions() as session, session.begin():
        fresh = await load(session, ticket_id)
        if fresh is None or fresh.state is None:
            return Decided("untracked")
        now = fresh.state
        if now.state != State.IN_REVIEW or now.head_sha != row.head_sha or now.held:
            return Decided("moved")
        await add_effect(
            session,
            key=f"merge:{ticket_id}:{row.head_sha}",
            kind=EffectKind.MERGE,
            payload={
                "repo": repo.full_name,
                "number": row.pr_number,
                "method": flow.merge_method,
                "sha": row.head_sha,
                "commit_title": f"{fresh.ticket.title} (#{row.pr_number})",
            },
            ticket_id=ticket_id,
            installation_id=repo.installation_id,
        )
        await Decision(session, engine, fresh, config, followups).transition(
            State.MERGING, reason="approved and every check is green", waiting=None
        )
    return Decided("merging", followups)


async def checks_verdict(engine: Engine, repo: str, sha: str, installation_id: int) -> str | None:
    """None when every check run and commit status on `sha` is green; else what is not."""
    github: CodeHost = engine.github
    waiting: list[str] = []
    failed: list[str] = []
    for run in await github.check_runs(repo, sha, installation_id):
        if run.status != "completed":
            waiting.append(run.name)
        elif run.conclusion not in GREEN:
            failed.append(f"{run.name} ({run.conclusion})")
    for status in await github.commit_statuses(repo, sha, installation_id):
        if status.state == "pending":
            waiting.append(status.context)
        elif status.state != "success":
            failed.append(f"{status.context} ({status.state})")
    if failed:
        return "⛔ Not merging: " + ", ".join(sorted(failed)) + " did not pass."
    if waiting:
        return "⏳ Waiting for checks to finish: " + ", ".join(sorted(waiting)) + "."
    return None


async def _wait(engine: Engine, ticket_id: int, sha: str, why: str) -> Followups:
    followups = Followups()
    async with engine.deps.sessions() as session, session.begin():
        loaded = await load(session, ticket_id)
        if loaded is None or loaded.state is None or loaded.repo is None:
            return followups
        row = loaded.state
        if row.state != State.IN_REVIEW or row.head_sha != sha or row.waiting == why:
            return followups
        config = (await engine.config_of(loaded.repo)).config
        await Decision(session, engine, loaded, config, followups).transition(
            row.state, reason=why, waiting=why
        )
    return followups
