"""`/tickets/{id}` and its human-key twins (one ticket: its description, comments, state,
PR, checks, runs, activity log, pinned harness, and the actions on it). The board is
bot/web/board.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from bot.api.request import deps_of
from bot.api.tickets import REPO_NAME
from bot.tables.mirror import Comment, PullRequest, Repository, Ticket
from bot.tables.workflow import Activity, Run, TicketState
from bot.web.board import state_label
from bot.web.markdown import render_markdown
from bot.web.pages import Refused, bad_request, html_endpoint, not_found, page, reader
from bot.web.ticket_actions import action_context, said
from bot.web.ticket_keys import TRACKER_KEY, http_url, positive_id, ticket_path
from bot.web.ticket_live import fingerprint
from harness_store.store import pinned_harness
from runner.contract import HookResult

ACTIVITY_PAGE = 200
COMMENTS_SHOWN = 50  # the newest; the tracker has them all
RUNS_LIMIT = 50


# -- one ticket --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    gate: str  # block | warn | ignore


def run_checks(run: Run | None) -> list[Check]:
    """The on_complete hooks of a run's result: the gates GitHub shows as check runs."""
    if run is None or not run.result:
        return []
    checks = []
    for raw in run.result.get("hook_results") or []:
        try:
            hook = HookResult.model_validate(raw)
        except ValueError:
            continue  # a result of an older runner: nothing to show
        if hook.phase == "on_complete":
            checks.append(Check(f"openase/{hook.name}", hook.passed, hook.on_failure))
    return checks


@html_endpoint
async def ticket_page(request: Request) -> Response:
    try:
        reader(request)
        ticket_id = positive_id(request, "The ticket id", request.path_params["id"])
        return await _ticket_response(request, ticket_id)
    except Refused as refused:
        return refused.response


async def ticket_by_github_key(request: Request) -> Response:
    """/tickets/{owner}/{name}/{number}: a GitHub issue's page by its repository and number."""
    try:
        reader(request)
        full_name = f"{request.path_params['owner']}/{request.path_params['name']}"
        if not REPO_NAME.fullmatch(full_name):
            raise bad_request(request, f"{full_name[:200]!r} is not a repository (owner/name).")
        number = positive_id(request, "The issue number", request.path_params["number"])
        async with deps_of(request).sessions() as session:
            ticket_id = await session.scalar(
                select(Ticket.id)
                .join(Repository, Repository.id == Ticket.repository_id)
                .where(
                    func.lower(Repository.full_name) == full_name.lower(),
                    Ticket.source == "github",
                    Ticket.number == number,
                )
            )
        if ticket_id is None:
            raise not_found(request, f"There is no ticket {full_name}#{number}.")
        return await _ticket_response(request, ticket_id)
    except Refused as refused:
        return refused.response


async def ticket_by_tracker_key(request: Request) -> Response:
    """/tickets/linear/ENG-12, /tickets/jira/PROJ-7: a tracker issue's page by its key."""
    try:
        reader(request)
        source, key = request.path_params["source"], request.path_params["key"]
        if source not in ("linear", "jira"):
            raise not_found(request, f"There are no {source[:40]!r} tickets (linear or jira).")
        if not TRACKER_KEY.fullmatch(key):
            raise bad_request(request, f"{key[:60]!r} is not an issue key (like ENG-12).")
        async with deps_of(request).sessions() as session:
            ticket_id = await session.scalar(
                select(Ticket.id).where(Ticket.source == source, Ticket.key == key.upper())
            )
        if ticket_id is None:
            raise not_found(request, f"There is no {source.capitalize()} ticket {key}.")
        return await _ticket_response(request, ticket_id)
    except Refused as refused:
        return refused.response


async def _ticket_response(request: Request, ticket_id: int) -> Response:
    """The ticket page of `ticket_id` (raises Refused for a bad `after` or no such ticket)."""
    after_text = request.query_params.get("after")
    after = positive_id(request, "after", after_text) if after_text else 0
    async with deps_of(request).sessions() as session:
        context = await _ticket_context(request, session, ticket_id, after)
    return page(request, "ticket.html", context)


async def _ticket_context(
    request: Request, session: AsyncSession, ticket_id: int, after: int
) -> dict[str, Any]:
    row = (
        await session.execute(
            select(Ticket, Repository)
            .outerjoin(Repository, Repository.id == Ticket.repository_id)
            .where(Ticket.id == ticket_id)
        )
    ).one_or_none()
    if row is None:
        raise not_found(request, f"There is no ticket {ticket_id}.")
    ticket, repo = row
    state = await session.get(TicketState, ticket_id)
    runs = list(
        (
            await session.scalars(
                select(Run)
                .where(Run.ticket_id == ticket_id)
                .order_by(Run.queued_at.desc(), Run.id.desc())
                .limit(RUNS_LIMIT + 1)
            )
        ).all()
    )
    checked = next((run for run in runs if run.result), None)
    activity = list(
        (
            await session.scalars(
                select(Activity)
                .where(Activity.ticket_id == ticket_id, Activity.id > after)
                .order_by(Activity.id)
                .limit(ACTIVITY_PAGE + 1)
            )
        ).all()
    )
    more_activity = len(activity) > ACTIVITY_PAGE
    activity = activity[:ACTIVITY_PAGE]
    comments = list(
        (
            await session.scalars(
                select(Comment)
                .where(Comment.ticket_id == ticket_id, Comment.deleted.is_(False))
                .order_by(Comment.external_created_at.desc().nulls_last(), Comment.id.desc())
                .limit(COMMENTS_SHOWN + 1)
            )
        ).all()
    )
    url = ticket_path(ticket.source, ticket.key, ticket.id)
    return {
        **action_context(request),
        "outcome": await said(request, session, ticket_id),
        "events_url": f"/tickets/{ticket_id}/events",
        "fingerprint": await fingerprint(session, ticket_id),
        "title": f"{ticket.key} {ticket.title}".strip(),
        "ticket": ticket,
        "ticket_url": url,
        # Written by anyone who can open an issue: rendered, then sanitised (nh3).
        "body": render_markdown(ticket.body) if ticket.body.strip() else None,
        "comments": [
            (comment, render_markdown(comment.body))
            for comment in reversed(comments[:COMMENTS_SHOWN])
        ],
        "more_comments": len(comments) > COMMENTS_SHOWN,
        "tracker_url": http_url(ticket.html_url),
        "repo": repo,
        "repo_url": http_url(repo.html_url) if repo is not None else None,
        "state": state,
        "state_label": state_label(state.state) if state is not None else None,
        "pull_request": await _pull_request(session, repo, state),
        "harness": await pinned_harness(session, ticket_id),
        "runs": runs[:RUNS_LIMIT],
        "more_runs": len(runs) > RUNS_LIMIT,
        "checked_run": checked,
        "checks": run_checks(checked),
        "activity": activity,
        "activity_after": after,
        "more_activity_url": (f"{url}?after={activity[-1].id}#activity" if more_activity else None),
    }


async def _pull_request(
    session: AsyncSession, repo: Repository | None, state: TicketState | None
) -> dict[str, Any] | None:
    """The PR opened for the ticket: its link, and its title and state when mirrored."""
    if state is None or state.pr_number is None or repo is None:
        return None
    mirrored = await session.scalar(
        select(PullRequest).where(
            PullRequest.repository_id == repo.id, PullRequest.number == state.pr_number
        )
    )
    base = http_url(repo.html_url)
    url = http_url(mirrored.html_url if mirrored is not None else None) or (
        f"{base}/pull/{state.pr_number}" if base else None
    )
    return {
        "number": state.pr_number,
        "url": url,
        "title": mirrored.title if mirrored is not None else None,
        "state": (
            ("merged" if mirrored.merged else mirrored.state) if mirrored is not None else None
        ),
    }
