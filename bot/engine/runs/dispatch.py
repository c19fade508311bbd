"""Dispatch: a ticket in a pickup state becomes a run on a machine (DESIGN §3.7).

Everything slow or remote (the repo's config, the machine registry, the run's git token)
is read before the claiming transaction; the claim itself is one conditional
UPDATE under the repository's claim lock (`bot.engine.runs.claims`), so several workers dispatching
at once never exceed a limit or start one ticket twice. The RunSpec is sent to the chosen
machine's queue only after the claim commits; a send lost to a crash is repeated by the
engine's cron from the run row (`bot.engine.runs.resend`).

Each run gets a git token of its own (`CodeHost.run_token`): its repository's contents only,
read for `/ask`, and never the installation's token the bot's own API calls use. The
queued job necessarily holds it until a runner takes it; the job expires before the token
does (`RUN_TOKEN_SPARE`), and an expired job is sent again with a new token. The runners
keep no arq results (they would hold the spec), and the run's row keeps its spec without
secrets, so no token outlives its run in Redis.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.errors import AdapterError, RateLimited, RequestRejected
from bot.config.control import Provider
from bot.config.repo import RepoConfig, stage_for
from bot.config.states import State
from bot.config.workflow import Workflow
from bot.engine.blockers import blockers, open_blockers
from bot.engine.budgets import refuse_if_spent
from bot.engine.context import Decided, Engine, Followups, Loaded, load
from bot.engine.decision import Decision
from bot.engine.runs.claims import Limits as ClaimLimits
from bot.engine.runs.claims import claim, room
from bot.engine.runs.exclusive import sole_dispatcher
from bot.engine.runs.machine_controls import controls, in_flight, stopped
from bot.engine.runs.machines import (
    Machine,
    Requirements,
    choose,
    registered,
    why_none,
)
from bot.engine.runs.sending import send
from bot.engine.runs.slots import take_slot
from bot.engine.runs.spec import GATES_ONLY_AGENT, PROVIDER_KEY, build_spec, session_machine
from bot.errors import ConfigUnavailable
from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import Run, RunState, TicketState
from harness_store.db import reading
from harness_store.errors import NotFound, RenderError
from harness_store.store import (
    record_run_versions,
)
from runner.contract import RunSpec

log = structlog.get_logger(__name__)

# States a ticket is never picked up from, whatever the config says.
NOT_PICKUP = frozenset(
    {State.IN_PROGRESS, State.IN_REVIEW, State.MERGING, State.DONE, State.CANCELED, State.FAILED}
)
CONFIG_WAIT = (
    "⚠️ Waiting for a valid `.github/openase.yml` on the default branch (the comment below "
    "says what is wrong with it)."
)


@dataclass(frozen=True)
class Prepared:
    loaded: Loaded
    repo: Repository
    config: RepoConfig
    workflow: Workflow
    provider: Provider
    candidates: list[Machine]  # qualifying runners; the choice is made under the lock
    needs: Requirements


async def dispatch_ticket(engine: Engine, ticket_id: int) -> Decided:
    """Try to start the ticket's next run; what happened, as one word (for logs and tests)."""
    with structlog.contextvars.bound_contextvars(ticket_id=ticket_id):
        async with sole_dispatcher(engine.deps.redis, ticket_id) as sole:
            if not sole:
                return Decided("dispatching")  # another dispatcher is on it right now
            prepared = await _prepare(engine, ticket_id)
            if isinstance(prepared, Decided):
                if prepared.outcome not in ("untracked", "not_pickup", "backoff", "held", "closed"):
                    log.info("dispatch_waits", outcome=prepared.outcome)
                return prepared
            return await _claim_and_send(engine, prepared)


async def _prepare(engine: Engine, ticket_id: int) -> Prepared | Decided:
    async with reading(engine.deps.sessions) as session:
        loaded = await load(session, ticket_id, lock=False)
    if loaded is None or loaded.state is None or loaded.repo is None:
        return Decided("untracked")
    row, ticket, repo = loaded.state, loaded.ticket, loaded.repo
    if row.state in NOT_PICKUP:
        return Decided("not_pickup")
    if row.held:
        return Decided("held")
    if ticket.state != "open":
        return Decided("closed")
    if row.next_attempt_at is not None and row.next_attempt_at > datetime.now(UTC):
        return Decided("backoff")
    try:
        result = await engine.config_of(repo)
    except (ConfigUnavailable, AdapterError) as error:
        # Fails closed: the ticket waits and the cron tries again; the default workflow
        # never stands in for a file that could not be read.
        why = f"⏳ Waiting to read `.github/openase.yml`: {unreadable(error)}."
        return Decided("config_unreadable", await _wait(engine, ticket_id, None, why))
    if result.config is None:
        return Decided(
            "config_invalid", await _report_config(engine, loaded, result.sha, result.problems)
        )
    config = result.config
    workflow = _workflow_for(config, row, ticket)
    if workflow is None:
        return Decided("no_workflow")
    provider = engine.control.providers[workflow.provider]
    refused = await refuse_if_spent(
        engine,
        ticket_id,
        config,
        workflow,
        provider,
        spent=row.cost_usd or 0.0,
        not_pickup=NOT_PICKUP,
    )
    if refused is not None:
        return refused
    async with reading(engine.deps.sessions) as session:
        waiting = await open_blockers(
            session, blockers(ticket.body, repo.full_name), exclude_ticket_id=ticket.id
        )
        prefer = None  # a resumed run goes where the agent's session is, if it can
        if row.feedback and row.session_id and not row.gates_only:
            prefer = await session_machine(session, ticket.id, row.session_id)
    if waiting:
        refs = ", ".join(f"{ref.full_name}#{ref.number}" for ref in waiting)
        return Decided(
            "blocked",
            await _wait(engine, ticket_id, config, f"⏳ Waiting for {refs} to close first."),
        )
    needs = Requirements(
        # A gates-only run needs no agent CLI: every runner has `command`.
        cli=GATES_ONLY_AGENT.cli if row.gates_only else provider.cli,
        labels=frozenset(
            (
                *engine.control.machines.default_labels,
                *provider.machine_labels,
                *workflow.machine_labels,
            )
        ),
        sandboxed=workflow.sandbox == "on",
        prefer=prefer,
    )
    machines = await registered(engine.deps.redis)
    async with engine.deps.sessions() as session:
        sent = await in_flight(session)
        crowded = await _crowded(session, workflow)
        free = await room(
            session, repository_id=repo.id, workflow=workflow.name, limits=_limits(workflow)
        )
        # Paused and draining machines (the machines page); one small query.
        not_taking = stopped(await controls(session, machines, sent))
        await session.commit()  # a drain found over is stored as paused
    if not free:  # the workflow's or the repository's limit is reached
        return Decided("not_claimed")
    candidates = [machine for machine in machines if machine.name not in crowded]
    machine = choose(candidates, needs, in_flight=sent, stopped=not_taking)
    if machine is None:
        reason = why_none(candidates, needs, stopped=not_taking)
        return Decided(
            "no_machine",
            await _wait(engine, ticket_id, config, f"⏳ Waiting for a runner: {reason}.", row),
        )
    taking = [machine for machine in candidates if machine.name not in not_taking]
    return Prepared(loaded, repo, config, workflow, provider, taking, needs)


def unreadable(error: Exception) -> str:
    """Why the config could not be read, in words that stay the same while it lasts (so the
    status comment changes once, not on every retry)."""
    if isinstance(error, ConfigUnavailable):
        return str(error)
    if isinstance(error, RateLimited):
        return "GitHub's rate limit is spent; trying again once it resets"
    if isinstance(error, RequestRejected):
        return f"GitHub refused to show it (HTTP {error.status}); trying again"
    return "GitHub did not answer; trying again"


def _workflow_for(config: RepoConfig, row: TicketState, ticket: Ticket) -> Workflow | None:
    if row.workflow is not None:
        named = config.workflow(row.workflow)
        if named is not None and named.pickup == row.state:
            return named
    return stage_for(config, row.state, ticket.labels)


def _limits(workflow: Workflow) -> ClaimLimits:
    return ClaimLimits(
        workflow=workflow.limits.concurrency.workflow, repo=workflow.limits.concurrency.repo
    )


async def _crowded(session: AsyncSession, workflow: Workflow) -> set[str]:
    """Machines already running as many of this workflow's tickets as it allows on one."""
    limit = workflow.limits.concurrency.machine
    if limit is None:
        return set()
    rows = await session.execute(
        select(Run.machine, func.count())
        .where(
            Run.state.in_((RunState.QUEUED, RunState.RUNNING)),
            Run.workflow == workflow.name,
            Run.machine.is_not(None),
        )
        .group_by(Run.machine)
    )
    return {str(machine) for machine, count in rows.all() if count >= limit}


async def _wait(
    engine: Engine,
    ticket_id: int,
    config: RepoConfig | None,
    why: str,
    seen: TicketState | None = None,
) -> Followups:
    """Say on the status comment what the ticket waits for (once per new reason). `seen`,
    the row as read a moment ago: when it says so already, nothing is locked to find that
    out again (a burst's waiting tickets are looked at each time a slot frees)."""
    followups = Followups()
    if seen is not None and seen.waiting == why:
        return followups
    async with engine.deps.sessions() as session, session.begin():
        loaded = await load(session, ticket_id)
        if loaded is None or loaded.state is None or loaded.state.waiting == why:
            return followups
        if loaded.state.state in NOT_PICKUP:
            return followups
        await Decision(session, engine, loaded, config, followups).transition(
            loaded.state.state, reason=why, waiting=why
        )
    return followups


async def _report_config(
    engine: Engine, loaded: Loaded, sha: str | None, problems: tuple[object, ...]
) -> Followups:
    """Comment once per config commit on what is wrong with it; the ticket does not run."""
    listed = "\n".join(f"- {problem}" for problem in problems)
    body = (
        "⚠️ **OpenASE cannot run this ticket:** the repository's `.github/openase.yml` "
        f"(at `{(sha or '')[:12]}`) has problems:\n\n{listed}\n\n"
        "Fix the file on the default branch; the ticket starts once it is valid."
    )
    followups = Followups()
    async with engine.deps.sessions() as session, session.begin():
        fresh = await load(session, loaded.ticket.id)
        if fresh is None:
            return followups
        decision = Decision(session, engine, fresh, None, followups)
        if await decision.comment(key=f"config:{loaded.ticket.id}:{sha}", body=body):
            decision.note("config", "invalid config: " + "; ".join(map(str, problems)))
        if fresh.state is not None and fresh.state.waiting != CONFIG_WAIT:
            await decision.transition(
                fresh.state.state,
                reason="waiting for a valid .github/openase.yml",
                waiting=CONFIG_WAIT,
            )
    return followups


# What a spec is built from on the ticket's state row: a spec built before the claim is the
# one the claim's row asks for when these are as they were when it was built.
_SPEC_INPUTS = ("gates_only", "feedback", "session_id", "last_failure")
Built = tuple[RunSpec, int, list[int]] | RenderError | NotFound


async def _build(
    session: AsyncSession,
    prepared: Prepared,
    loaded: Loaded,
    run_id: str,
    attempt: int,
    machine: str | None,
) -> Built:
    """The run's spec (without its git token), or why the harness or a skill cannot be had.

    Before the claim, `machine` is the one holding the agent's session, if any
    (`Requirements.prefer`); `_for_machine` drops the resumption when the run goes elsewhere."""
    try:
        return await build_spec(
            session,
            loaded,
            prepared.repo,
            prepared.workflow,
            prepared.provider,
            run_id,
            "",
            machine,
            attempt=attempt,
        )
    except (RenderError, NotFound) as error:
        return error


def _for_machine(spec: RunSpec, machine: str, prefer: str | None) -> RunSpec:
    """The spec for the chosen machine: an agent session resumes only where it is kept."""
    if prefer is None or machine == prefer or spec.agent.resume_session_id is None:
        return spec
    agent = spec.agent.model_copy(update={"resume_session_id": None})
    return spec.model_copy(update={"agent": agent})


def _unchanged(before: TicketState, after: TicketState, attempt: int) -> bool:
    """Whether the claimed row is the one the spec was built from."""
    return after.attempt == attempt and all(
        getattr(before, name) == getattr(after, name) for name in _SPEC_INPUTS
    )


async def _claim_and_send(engine: Engine, prepared: Prepared) -> Decided:
    loaded, repo, config, workflow = (
        prepared.loaded,
        prepared.repo,
        prepared.config,
        prepared.workflow,
    )
    before = loaded.state
    assert before is not None
    assert repo.installation_id is not None
    pickup = before.state
    run_id = f"t{loaded.ticket.id}-{workflow.name}-{secrets.token_hex(4)}"
    attempt = before.attempt + 1  # the claim's, unless the row changes meanwhile

    async def build_early() -> Built:
        async with engine.deps.sessions() as session:
            return await _build(session, prepared, loaded, run_id, attempt, prepared.needs.prefer)

    # The slow parts before the claim, side by side: the git token (a GitHub call) and the
    # spec (the harness rendered); the claim's transaction holds the claim locks, and every
    # other claim waits for it.
    token, built = await asyncio.gather(
        engine.github.run_token(repo.installation_id, repo.full_name, write=True),
        build_early(),
    )
    followups = Followups(decision=f"claim:{run_id}")
    async with engine.deps.sessions() as session, session.begin():
        # The machine is chosen again under its lock, from the runs committed so far: a
        # burst of dispatches would otherwise all see the same free slots and pile onto one
        # machine's queue while another stands idle (bot.engine.runs.slots).
        machine = await take_slot(session, prepared.candidates, prepared.needs)
        if machine is None:
            return Decided("no_machine")
        claimed = await claim(
            session,
            ticket_id=loaded.ticket.id,
            repository_id=repo.id,
            workflow=workflow.name,
            pickup=pickup,
            run_id=run_id,
            limits=_limits(workflow),
            now=datetime.now(UTC),
        )
        if claimed is None:
            return Decided("not_claimed")
        fresh = await load(session, loaded.ticket.id)
        assert fresh is not None
        assert fresh.state is not None
        decision = Decision(session, engine, fresh, config, followups)
        if not _unchanged(before, fresh.state, attempt):
            # Changed between the read and the claim (rare): built again from the claimed row.
            built = await _build(
                session, prepared, fresh, run_id, fresh.state.attempt, machine.name
            )
        elif isinstance(built, tuple):
            early, harness_id, skill_ids = built
            early = _for_machine(early, machine.name, prepared.needs.prefer)
            built = (early, harness_id, skill_ids)
        if not isinstance(built, tuple):
            await _refuse(decision, pickup, workflow, str(built))
            return Decided("harness_error", followups)
        spec, harness_id, skill_ids = built
        session.add(
            Run(
                id=run_id,
                ticket_id=fresh.ticket.id,
                workflow=workflow.name,
                attempt=claimed.attempt,
                machine=machine.name,
                state=RunState.QUEUED,
                # Without secrets (no token, the env as '**********'): a resend fills them in.
                spec={**spec.model_dump(mode="json"), PROVIDER_KEY: workflow.provider},
                harness_version_id=harness_id,
            )
        )
        await session.flush()
        await record_run_versions(
            session,
            run_id,
            harness_version_id=harness_id,
            skill_version_ids=skill_ids,
            ticket_id=fresh.ticket.id,
            looked_up=True,  # by the spec's build; the claim holds the ticket's row
        )
        what = "gates only" if fresh.state.gates_only else f"attempt {claimed.attempt}"
        await decision.transition(
            State.IN_PROGRESS,
            reason=f"{pickup} → in_progress: {workflow.name} {what} on {machine.name}",
            # The claim already moved the row; the label (tracker state, card) follows here.
            relabel=True,
            run_id=run_id,
            feedback=None,
            waiting=None,
            gates_only=False,
        )
    spec = spec.model_copy(update={"git_token": SecretStr(token.value)})
    sent = await send(engine.deps.redis, spec, machine.name, token.expires_at)
    log.info("dispatched", run_id=run_id, machine=machine.name, sent=sent)
    return Decided("dispatched", followups)


async def _refuse(decision: Decision, pickup: str, workflow: Workflow, error: str) -> None:
    """The harness or a skill cannot be given to the agent: no run, the ticket fails."""
    message = f"the {workflow.name} workflow cannot start: {error}"
    await decision.transition(State.FAILED, reason=message, run_id=None, last_failure=message)
    row = decision.row
    await decision.comment(
        key=f"comment:{decision.ticket.id}:refused:{row.version if row else 0}",
        body=f"❌ {message[0].upper()}{message[1:]}.\n\nFix it, then move the ticket back to "
        f"`{pickup}`.",
    )
