"""The RunSpec of a claimed ticket (DESIGN §6): its harness rendered for this attempt
(a `/harness` pin first; a retry keeps the version its stage started with), its skills,
the provider's agent, the workflow's hooks and limits, the ticket's one work branch, and
a prompt that carries what a reviewer asked for.

What third parties wrote (the ticket's title and description, a review, the gates' output of
the last attempt) goes into the prompt only, fenced as untrusted input; the harness is given
trusted facts alone (issue #15)."""

from __future__ import annotations

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.control import Provider, run_limits, sandbox_policy
from bot.config.workflow import Workflow
from bot.engine.context import Loaded
from bot.engine.untrusted import Untrusted, untrusted
from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import Run
from harness_store.models import HarnessVersion, SkillVersion
from harness_store.render import RepositoryVars, TicketVars, render_harness
from harness_store.store import (
    current,
    current_skills,
    get_version,
    pinned_harness,
    require_current,
)
from runner.contract import (
    AgentConfig,
    HarnessRef,
    RepoRef,
    RunSpec,
    SkillFile,
    SkillSpec,
    TicketRef,
)

# The no-op agent of a gates-only run: the runner commits nothing and runs the gates.
GATES_ONLY_AGENT = AgentConfig(cli="command", argv=("true",))
PROVIDER_KEY = "_provider"  # beside the stored spec: whose env a resend fills in
TITLE_LIMIT = 1_000  # characters of a ticket's title in a prompt
BODY_LIMIT = 30_000  # of its description (GitHub allows 65,536)
FAILURE_LIMIT = 12_000  # of the last attempt's failure, its end kept
ASK_A_HUMAN = "ask-a-human"  # the built-in skill every agent run gets (runner/questions.py)


async def build_spec(
    session: AsyncSession,
    loaded: Loaded,
    repo: Repository,
    workflow: Workflow,
    provider: Provider,
    run_id: str,
    token: str,
    machine: str | None = None,
    *,
    attempt: int | None = None,
) -> tuple[RunSpec, int, list[int]]:
    """The run's spec, its harness version id and its skills' version ids; `attempt` is the
    run's attempt when the row does not say it yet (a spec built before the claim)."""
    row, ticket = loaded.state, loaded.ticket
    assert row is not None
    attempt = row.attempt if attempt is None else attempt
    harness = await _harness(session, ticket.id, workflow, attempt)
    skills = await current_skills(session, workflow.skills)
    if not row.gates_only and ASK_A_HUMAN not in workflow.skills:
        # Every agent may ask a person (bot.engine.questions); a store without the built-in
        # (deleted by hand) runs without it rather than not at all.
        asking = await current(session, SkillVersion, ASK_A_HUMAN)
        skills += [asking] if asking is not None else []
    ticket_vars = TicketVars(
        key=ticket.key,
        number=ticket.number,
        url=ticket.html_url,
        labels=tuple(ticket.labels),
    )
    repo_vars = RepositoryVars(
        full_name=repo.full_name,
        default_branch=repo.default_branch or "main",
        clone_url=repo.clone_url or "",
    )
    text = render_harness(
        harness.content, ticket=ticket_vars, repository=repo_vars, attempt=attempt
    )
    agent = provider.agent_config()
    if row.gates_only:
        agent = GATES_ONLY_AGENT
    elif row.feedback and row.session_id:
        # Only where the session is: another machine's agent would not find it, and the
        # prompt carries what the review or the answer says either way.
        held_by = await session_machine(session, ticket.id, row.session_id)
        if held_by in (None, machine):
            agent = agent.model_copy(update={"resume_session_id": row.session_id})
    spec = RunSpec(
        run_id=run_id,
        ticket=TicketRef(
            key=ticket.key,
            number=ticket.number,
            title=ticket.title,
            body=ticket.body,
            url=ticket.html_url,
            labels=tuple(ticket.labels),
        ),
        repo=RepoRef(
            full_name=repo.full_name,
            clone_url=repo.clone_url or f"https://github.com/{repo.full_name}.git",
            default_branch=repo.default_branch or "main",
        ),
        base_branch=repo.default_branch or "main",
        work_branch=work_branch(ticket),
        prompt=prompt_for(ticket, row.feedback),
        harness=HarnessRef(
            name=harness.name, version=harness.version, version_id=harness.id, text=text
        ),
        skills=tuple(_skill_spec(skill) for skill in skills),
        agent=agent,
        hooks=workflow.hooks,
        limits=run_limits(workflow, provider),
        sandbox=sandbox_policy(provider, workflow),
        attempt=attempt,
        # A retry, or a Retry after giving up, learns why; the runner adds it to the prompt.
        previous_failure=failure_input(row.last_failure),
        git_token=SecretStr(token),
    )
    return spec, harness.id, [skill.id for skill in skills]


async def session_machine(session: AsyncSession, ticket_id: int, session_id: str) -> str | None:
    """The machine whose run of the ticket reported the agent session `session_id` (its
    per-ticket HOME keeps the session); None when no run says so."""
    found = await session.scalar(
        select(Run.machine)
        .where(Run.ticket_id == ticket_id, Run.result["session_id"].astext == session_id)
        .order_by(Run.queued_at.desc())
        .limit(1)
    )
    return str(found) if found is not None else None


async def _harness(
    session: AsyncSession, ticket_id: int, workflow: Workflow, attempt: int
) -> HarnessVersion:
    """A `/harness` pin wins (a person chose it for this ticket, for every stage); then, on
    a retry, the version the stage's first attempt was given (a publish meanwhile does not
    change the contract mid-stage); else the workflow's pinned version or the current one."""
    pinned = await pinned_harness(session, ticket_id)
    if pinned is not None:
        return pinned
    if attempt > 1:
        earlier = await session.scalar(
            select(HarnessVersion)
            .join(Run, Run.harness_version_id == HarnessVersion.id)
            .where(
                Run.ticket_id == ticket_id,
                Run.workflow == workflow.name,
                HarnessVersion.name == workflow.harness.name,
            )
            .order_by(Run.queued_at.desc())
            .limit(1)
        )
        if earlier is not None:
            return earlier
    if workflow.harness.version is not None:
        return await get_version(
            session, HarnessVersion, workflow.harness.name, workflow.harness.version
        )
    return await require_current(session, HarnessVersion, workflow.harness.name)


def _skill_spec(skill: SkillVersion) -> SkillSpec:
    files = tuple(SkillFile(path=path, content=text) for path, text in sorted(skill.files.items()))
    return SkillSpec(name=skill.name, version=skill.version, version_id=skill.id, files=files)


def work_branch(ticket: Ticket) -> str:
    """One branch per ticket, kept across attempts and relay stages."""
    if ticket.number is not None:
        return f"openase/{ticket.number}"
    slug = "".join(c if c.isalnum() else "-" for c in ticket.key.lower()).strip("-")
    return f"openase/{slug[:60]}"


def prompt_for(ticket: Ticket, feedback: str | None) -> str:
    """The task of this run: the ticket's own words as untrusted input, then what came
    since, if anything: a review (`reviews`), a `/retry`'s guidance or the answer to the
    agent's question (`questions`), each under its own heading, fenced where people wrote it."""
    where = f" ({ticket.html_url})" if ticket.html_url else ""
    parts = [
        f"Work on ticket {ticket.key}{where} as your instructions say. What it asks for is "
        "in its title and description, below.",
        "",
        untrusted(ticket_input(ticket)),
    ]
    if feedback:
        parts += ["", feedback]
    return "\n".join(parts)


def ticket_input(ticket: Ticket) -> list[Untrusted]:
    """The ticket's title and description, labelled with their author."""
    by = f" by @{ticket.author_login}" if ticket.author_login else ""
    return [
        Untrusted(f"ticket title{by}", ticket.title, limit=TITLE_LIMIT),
        Untrusted(f"ticket description{by}", ticket.body, limit=BODY_LIMIT),
    ]


def failure_input(failure: str | None) -> str | None:
    """The last attempt's failure (its gates' output, or why it stopped), fenced."""
    if not failure:
        return None
    label = "how the previous attempt failed (gate output: the repository's code printed it)"
    return untrusted([Untrusted(label, failure, limit=FAILURE_LIMIT, keep="end")])
