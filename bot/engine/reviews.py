"""The engine's side of pull requests (DESIGN §4): a merged PR finishes its ticket, new
commits pushed by a human re-run the gates, a writer's review approves it or sends it
back to the agent with the review's text and diff comments in the prompt, fenced as
untrusted input (each labelled with its author and place)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.base import PullRequestChanged, PullRequestReviewed
from bot.config.states import TERMINAL, State
from bot.engine.access import WRITE_PERMISSIONS, GitHubPermissions
from bot.engine.context import BOT, Engine, load
from bot.engine.decision import Decision, Reacting, note
from bot.engine.untrusted import Untrusted, untrusted
from bot.tables.mirror import Repository, Ticket, TicketPullRequest
from bot.tables.workflow import TicketState

REVIEW_COMMENTS_MAX = 50
REVIEW_BODY_LIMIT = 10_000  # characters of a review's text in the prompt
REVIEW_COMMENT_LIMIT = 4_000  # of each of its comments on the diff


async def tickets_of_pull(
    session: AsyncSession, repo_id: int, number: int, pr_id: int
) -> list[int]:
    """Tickets whose PR this is: ours (by number) or linked by "Closes #N" or branch name."""
    ours = (
        await session.scalars(
            select(TicketState.ticket_id)
            .join(Ticket, Ticket.id == TicketState.ticket_id)
            .where(Ticket.repository_id == repo_id, TicketState.pr_number == number)
        )
    ).all()
    linked = (
        await session.scalars(
            select(TicketPullRequest.ticket_id).where(TicketPullRequest.pull_request_id == pr_id)
        )
    ).all()
    return sorted(set(ours) | set(linked))


async def tickets_at(session: AsyncSession, repo_id: int, sha: str) -> list[int]:
    rows = await session.scalars(
        select(TicketState.ticket_id)
        .join(Ticket, Ticket.id == TicketState.ticket_id)
        .where(
            Ticket.repository_id == repo_id,
            TicketState.head_sha == sha,
            TicketState.state == State.IN_REVIEW,
        )
    )
    return list(rows.all())


async def pull_request_changed(r: Reacting, event: PullRequestChanged) -> None:
    session, engine, followups = r.session, r.engine, r.followups
    pr = event.pull_request
    if event.action not in ("closed", "synchronize"):
        return
    for ticket_id in await tickets_of_pull(session, pr.repo.id, pr.number, pr.id):
        loaded = await load(session, ticket_id)
        if loaded is None or loaded.state is None or loaded.repo is None:
            continue
        row = loaded.state
        if row.state in TERMINAL:
            continue
        if event.action == "closed" and pr.merged:
            decision = await Decision.on(session, engine, loaded, followups)
            await decision.transition(
                State.DONE, reason=f"PR #{pr.number} merged", pr_number=row.pr_number or pr.number
            )
            await decision.close_issue()
        elif event.action == "closed":
            note(session, ticket_id, "state", f"PR #{pr.number} closed without merging")
        elif (
            row.state == State.IN_REVIEW
            and row.pr_number == pr.number
            and pr.head_sha
            and pr.head_sha != row.head_sha
        ):
            decision = await Decision.on(session, engine, loaded, followups)
            await rerun_gates(decision, f"new commits on PR #{pr.number}")


async def rerun_gates(decision: Decision, why: str) -> None:
    """Run the gates (no agent) again on the work branch's head."""
    flow = decision.flow
    if flow is None:
        return
    await decision.send_back(flow, reason=f"{why}: re-running the gates", gates_only=True)


async def reviewed(r: Reacting, event: PullRequestReviewed) -> None:
    session, engine, followups = r.session, r.engine, r.followups
    pr = event.pull_request
    if event.author_type == BOT:
        return
    for ticket_id in await tickets_of_pull(session, pr.repo.id, pr.number, pr.id):
        loaded = await load(session, ticket_id)
        if loaded is None or loaded.state is None or loaded.repo is None:
            continue
        row, repo = loaded.state, loaded.repo
        if row.state not in (State.IN_REVIEW, State.MERGING) or repo.installation_id is None:
            continue
        who = event.author_login or "someone"
        if event.action == "dismissed" or event.state == "dismissed":
            if row.approved:
                decision = await Decision.on(session, engine, loaded, followups)
                await decision.transition(
                    row.state, reason=f"review by @{who} dismissed", approved=False
                )
            continue
        if event.action != "submitted":
            continue
        # The same answer (and cache) the slash commands use: reviews approve or spend too.
        access = GitHubPermissions(
            engine.github, repo.full_name, repo.installation_id, cache=engine.permissions
        )
        if await access.permission(who) not in WRITE_PERMISSIONS:
            note(session, ticket_id, "review", f"review by @{who} ignored: no write access")
            continue
        decision = await Decision.on(session, engine, loaded, followups)
        if event.state == "approved":
            await decision.transition(row.state, reason=f"approved by @{who}", approved=True)
            followups.merge_checks.add(ticket_id)
            continue
        comments = await _review_comments(engine, repo, pr.number, event.review_id)
        if event.state != "changes_requested" and not comments and not event.body.strip():
            continue
        if row.state != State.IN_REVIEW:
            continue
        feedback = _feedback(who, event.state, event.body, comments)
        flow = decision.flow
        if flow is None:
            continue
        await decision.send_back(
            flow,
            reason=f"@{who} asked for changes",
            feedback=feedback,
            last_failure=None,
        )


async def _review_comments(
    engine: Engine, repo: Repository, number: int, review_id: int
) -> list[tuple[str, str]]:
    """(`path:line`, text) of each comment the review left on the diff."""
    assert repo.installation_id is not None
    comments = await engine.github.review_comments(
        repo.full_name, number, review_id, repo.installation_id, limit=REVIEW_COMMENTS_MAX
    )
    found = []
    for comment in comments:
        where = comment.path
        if comment.line:
            where += f":{comment.line}"
        found.append((where, comment.body.strip()))
    return found


def _feedback(who: str, state: str, body: str, comments: list[tuple[str, str]]) -> str:
    """The review for the next prompt: who and how (ours), then its words (theirs, fenced)."""
    pieces: list[Untrusted] = []
    if body.strip():
        pieces.append(Untrusted(f"review by @{who}", body.strip(), limit=REVIEW_BODY_LIMIT))
    pieces += [
        Untrusted(f"review comment by @{who} on {where}", text, limit=REVIEW_COMMENT_LIMIT)
        for where, text in comments
    ]
    head = f"## Review feedback to address\n\n@{who} reviewed the pull request "
    head += f"({state.replace('_', ' ')})."
    return f"{head}\n\n{untrusted(pieces)}" if pieces else f"{head} The review has no text."
