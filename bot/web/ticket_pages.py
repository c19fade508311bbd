"""`/tickets` (the board by workflow state) and `/tickets/{id}` (one ticket: its state, PR,
checks, runs, activity log and pinned harness).

The board shows tickets the engine tracks (a `ticket_states` row), newest change first in
each column, at most COLUMN_LIMIT per column; `?repo=OWNER/NAME&source=` filter it. The
cards are built by `Card.of` for the page and for the live stream alike (bot.web.live_events),
so a card moved by live.js looks like one the server rendered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from bot.api.request import deps_of
from bot.api.tickets import REPO_NAME, SOURCES
from bot.config.states import State
from bot.tables.mirror import Comment, PullRequest, Repository, Ticket
from bot.tables.workflow import Activity, Run, TicketState
from bot.web.markdown import render_markdown
from bot.web.pages import Refused, bad_request, html_endpoint, not_found, page, reader
from bot.web.ticket_actions import action_context, said
from bot.web.ticket_keys import TRACKER_KEY, http_url, positive_id, ticket_path
from bot.web.ticket_live import fingerprint
from harness_store.store import pinned_harness
from runner.contract import HookResult

COLUMN_LIMIT = 100
ACTIVITY_PAGE = 200
COMMENTS_SHOWN = 50  # the newest; the tracker has them all
RUNS_LIMIT = 50
BOARD_STATES: tuple[str, ...] = tuple(state.value for state in State)


# -- the board ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoardFilters:
    repo: str | None = None
    source: str | None = None

    @classmethod
    def of(cls, request: Request) -> BoardFilters:
        """The filters in the query string; a malformed one is a 400 page."""
        repo = request.query_params.get("repo", "").strip() or None
        source = request.query_params.get("source", "").strip() or None
        if repo is not None and not REPO_NAME.fullmatch(repo):
            raise bad_request(request, "repo must look like OWNER/NAME, e.g. octo-org/octo-repo.")
        if source is not None and source not in SOURCES:
            raise bad_request(request, f"source must be one of: {', '.join(SOURCES)}.")
        return cls(repo, source)

    def conditions(self) -> list[ColumnElement[bool]]:
        where = []
        if self.repo is not None:
            # Matches the functional index on lower(full_name): GitHub names are case-insensitive.
            where.append(func.lower(Repository.full_name) == self.repo.lower())
        if self.source is not None:
            where.append(Ticket.source == self.source)
        return where

    def query(self, **extra: str) -> str:
        values = {"repo": self.repo or "", "source": self.source or "", **extra}
        return urlencode({name: value for name, value in values.items() if value})


@dataclass(frozen=True)
class Card:
    id: int
    key: str
    title: str
    repo: str | None
    source: str
    state: str
    attempt: int
    held: bool
    needs_input: bool
    since: str | None = None  # ISO time it entered its state (how long it has been running)
    waiting: str | None = None  # what it waits for, as the status comment says
    failure: str | None = None  # the first line of why its last attempt failed
    pr_number: int | None = None
    pr_url: str | None = None
    # The gates of its latest finished run: (name without "openase/", passed).
    checks: tuple[tuple[str, bool], ...] = ()

    @classmethod
    def of(
        cls,
        ticket: Ticket,
        state: TicketState | None,
        repo: str | None,
        repo_url: str | None = None,
    ) -> Card:
        """A ticket's card; one nobody started (no workflow state) is in the backlog."""
        if state is None:
            return cls(
                id=ticket.id,
                key=ticket.key,
                title=ticket.title,
                repo=repo,
                source=ticket.source,
                state=State.BACKLOG.value,
                attempt=0,
                held=False,
                needs_input=False,
            )
        failure = (state.last_failure or "").strip().splitlines()
        home = http_url(repo_url)
        return cls(
            id=ticket.id,
            key=ticket.key,
            title=ticket.title,
            repo=repo,
            source=ticket.source,
            state=state.state,
            attempt=state.attempt,
            held=state.held,
            needs_input=state.needs_input,
            since=state.updated_at.isoformat() if state.updated_at else None,
            waiting=state.waiting[:200] if state.waiting else None,
            failure=failure[0][:200] if failure and state.state in ("todo", "failed") else None,
            pr_number=state.pr_number,
            pr_url=f"{home}/pull/{state.pr_number}" if home and state.pr_number else None,
            checks=_card_checks(state.checks),
        )

    @property
    def url(self) -> str:
        return ticket_path(self.source, self.key, self.id)

    @property
    def checks_passed(self) -> int:
        return sum(passed for _, passed in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "url": self.url}


def _card_checks(stored: list[dict[str, Any]] | None) -> tuple[tuple[str, bool], ...]:
    checks = []
    for check in (stored or [])[:20]:
        if isinstance(check, dict) and isinstance(check.get("name"), str):
            checks.append((check["name"].removeprefix("openase/"), check.get("passed") is True))
    return tuple(checks)


@dataclass(frozen=True)
class Column:
    state: str
    cards: list[Card]
    total: int

    @property
    def label(self) -> str:
        return state_label(self.state)


async def database_now(session: AsyncSession) -> datetime:
    now: datetime = (await session.execute(select(func.now()))).scalar_one()
    return now


def state_label(state: str) -> str:
    return state.replace("_", " ").capitalize()


def cards_query(filters: BoardFilters) -> Select[Ticket, TicketState, str, str | None]:
    """Tickets with their workflow state and repository name and URL, filtered."""
    return (
        select(Ticket, TicketState, Repository.full_name, Repository.html_url)
        .join(TicketState, TicketState.ticket_id == Ticket.id)
        .outerjoin(Repository, Repository.id == Ticket.repository_id)
        .where(*filters.conditions())
    )


async def board_columns(session: AsyncSession, filters: BoardFilters) -> list[Column]:
    """Every canonical state's column (empty ones too), then custom stages in use. Open
    tickets the engine never took up (no workflow state) are in the backlog."""
    column = func.coalesce(TicketState.state, State.BACKLOG.value)
    ranked = (
        select(
            Ticket.id.label("ticket_id"),
            func.row_number()
            .over(
                partition_by=column,
                order_by=(
                    func.coalesce(TicketState.updated_at, Ticket.updated_at).desc(),
                    Ticket.id.desc(),
                ),
            )
            .label("rank"),
            func.count().over(partition_by=column).label("total"),
        )
        .outerjoin(TicketState, TicketState.ticket_id == Ticket.id)
        .outerjoin(Repository, Repository.id == Ticket.repository_id)
        .where(
            *filters.conditions(),
            or_(TicketState.ticket_id.is_not(None), Ticket.state == "open"),
        )
        .subquery()
    )
    statement = (
        select(Ticket, TicketState, Repository.full_name, Repository.html_url, ranked.c.total)
        .join(ranked, ranked.c.ticket_id == Ticket.id)
        .outerjoin(TicketState, TicketState.ticket_id == Ticket.id)
        .outerjoin(Repository, Repository.id == Ticket.repository_id)
        .where(ranked.c.rank <= COLUMN_LIMIT)
        .order_by(ranked.c.rank)
    )
    cards: dict[str, list[Card]] = {state: [] for state in BOARD_STATES}
    totals: dict[str, int] = {}
    for ticket, state, repo, repo_url, total in (await session.execute(statement)).all():
        card = Card.of(ticket, state, repo, repo_url)
        cards.setdefault(card.state, []).append(card)
        totals[card.state] = total
    return [Column(state, found, totals.get(state, 0)) for state, found in cards.items()]


@html_endpoint
async def tickets_board(request: Request) -> Response:
    try:
        reader(request)
        filters = BoardFilters.of(request)
    except Refused as refused:
        return refused.response
    async with deps_of(request).sessions() as session:
        # The stream continues from the database's clock at this read (see live_events).
        since = await database_now(session)
        columns = await board_columns(session, filters)
        repos = (
            await session.scalars(
                select(Repository.full_name)
                .where(Repository.active.is_(True))
                .order_by(func.lower(Repository.full_name))
                .limit(500)
            )
        ).all()
    context = {
        "title": "Tickets",
        "columns": columns,
        "filters": filters,
        "sources": SOURCES,
        "repos": repos,
        "column_limit": COLUMN_LIMIT,
        "events_url": "/tickets/events?" + filters.query(since=since.isoformat()),
        "empty": not any(column.total for column in columns),
    }
    return page(request, "tickets.html", context)


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
