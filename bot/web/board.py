"""`/tickets`: the board, one column per workflow state, and its cards.

Every canonical state has a column (empty ones too), then custom stages in use; open
tickets nobody started (no workflow state) are in Backlog with those the engine put there.
Each column shows its COLUMN_LIMIT most recently changed cards and says how many there
are; `?repo=OWNER/NAME&source=` filter it. A card is built by `Card.from_row` from
`card_columns()` for the page and for the live stream alike (bot.web.live_events), so a card
moved by live.js looks like one the server rendered.

Two statements whatever the board holds: the columns' totals (one GROUP BY), then the cards,
each state's newest read from `ix_ticket_states_state_updated_at` (a UNION ALL of one
limited branch per state in use) — never every ticket numbered and sorted. A card reads
the columns it shows, not the ticket's body or the run's output.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    SQLColumnExpression,
    exists,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from bot.api.request import deps_of
from bot.api.tickets import REPO_NAME, SOURCES
from bot.config.states import State
from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import TicketState
from bot.web.pages import Refused, bad_request, html_endpoint, page, reader
from bot.web.ticket_keys import http_url, ticket_path

COLUMN_LIMIT = 50
BOARD_STATES: tuple[str, ...] = tuple(state.value for state in State)
_FIELD_LIMIT = 200  # characters of a card's waiting and failure lines


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


def card_columns() -> tuple[SQLColumnExpression[Any], ...]:
    """What a card shows, and no more (`Card.from_row` reads them in this order)."""
    failure = func.split_part(func.btrim(TicketState.last_failure, " \t\r\n"), "\n", 1)
    return (
        Ticket.id,
        Ticket.key,
        Ticket.title,
        Ticket.source,
        TicketState.state,
        TicketState.attempt,
        TicketState.held,
        TicketState.needs_input,
        TicketState.updated_at,
        func.left(TicketState.waiting, _FIELD_LIMIT),
        func.left(failure, _FIELD_LIMIT),
        TicketState.pr_number,
        TicketState.checks,
        Repository.full_name,
        Repository.html_url,
        # Not shown: when it last changed, for ordering (a backlog ticket has no state row).
        func.coalesce(TicketState.updated_at, Ticket.updated_at),
    )


def cards_query(filters: BoardFilters) -> Select[Any]:
    """Tickets the engine tracks, as card columns, filtered."""
    return (
        select(*card_columns())
        .join(TicketState, TicketState.ticket_id == Ticket.id)
        .outerjoin(Repository, Repository.id == Ticket.repository_id)
        .where(*filters.conditions())
    )


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
    # What it waits on, linked: the tickets blocking it, the machines page. (text, path)
    waiting_links: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_row(cls, row: Row[Any] | Sequence[Any]) -> Card:
        """A card from `card_columns()`; one nobody started (no state) is in the backlog."""
        (
            ticket_id,
            key,
            title,
            source,
            state,
            attempt,
            held,
            needs_input,
            changed,
            waiting,
            failure,
            pr_number,
            checks,
            repo,
            repo_url,
        ) = tuple(row)[:15]
        if state is None:
            return cls(ticket_id, key, title, repo, source, State.BACKLOG.value, 0, False, False)
        home = http_url(repo_url)
        return cls(
            id=ticket_id,
            key=key,
            title=title,
            repo=repo,
            source=source,
            state=state,
            attempt=attempt,
            held=held,
            needs_input=needs_input,
            since=changed.isoformat() if changed else None,
            waiting=waiting or None,
            waiting_links=_waiting_links(waiting),
            failure=(failure or None) if state in ("todo", "failed") else None,
            pr_number=pr_number,
            pr_url=f"{home}/pull/{pr_number}" if home and pr_number else None,
            checks=_card_checks(checks),
        )

    @property
    def url(self) -> str:
        return ticket_path(self.source, self.key, self.id)

    def running_for(self, now: datetime) -> str:
        """How long it has been in its state, as a card says it: "4 min", "2 h 5 min"."""
        if not self.since:
            return ""
        minutes = max(0, int((now - datetime.fromisoformat(self.since)).total_seconds() // 60))
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes} min" if hours else f"{minutes} min"

    @property
    def checks_passed(self) -> int:
        return sum(passed for _, passed in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "url": self.url}


_TICKET_REF = re.compile(r"\b([A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100})#([0-9]{1,10})\b")


def _waiting_links(waiting: str | None) -> tuple[tuple[str, str], ...]:
    """Links for what a ticket waits on, read from the words the engine wrote: the issues
    blocking it ("Waiting for acme/api#3 to close first") and the runners it needs."""
    if not waiting:
        return ()
    links = [
        (f"{name}#{number}", ticket_path("github", f"{name}#{number}", 0))
        for name, number in _TICKET_REF.findall(waiting)[:5]
    ]
    if "runner" in waiting.casefold() or "machine" in waiting.casefold():
        links.append(("machines", "/machines"))
    return tuple(links)


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


async def _totals(session: AsyncSession, filters: BoardFilters) -> dict[str, int]:
    """Cards per column: the tracked tickets by state, plus the open ones nobody started
    (Backlog). Without filters the first part reads ticket_states alone, never the wide
    tickets rows; the second walks ix_tickets_state's open tickets."""
    tracked = select(TicketState.state, func.count()).group_by(TicketState.state)
    untracked = (
        select(literal(State.BACKLOG.value), func.count())
        .select_from(Ticket)
        .where(
            Ticket.state == "open",
            ~exists().where(TicketState.ticket_id == Ticket.id),
        )
    )
    if filters.repo is not None or filters.source is not None:
        tracked = (
            tracked.join(Ticket, Ticket.id == TicketState.ticket_id)
            .outerjoin(Repository, Repository.id == Ticket.repository_id)
            .where(*filters.conditions())
        )
        untracked = untracked.outerjoin(Repository, Repository.id == Ticket.repository_id).where(
            *filters.conditions()
        )
    totals: dict[str, int] = {}
    for state, count in await session.execute(union_all(tracked, untracked)):
        totals[state] = totals.get(state, 0) + count
    return {state: count for state, count in totals.items() if count}


async def board_columns(session: AsyncSession, filters: BoardFilters) -> list[Column]:
    """Every canonical state's column (empty ones too), then custom stages in use."""
    totals = await _totals(session, filters)
    branches = [
        cards_query(filters)
        .where(TicketState.state == state)
        .order_by(TicketState.updated_at.desc(), TicketState.ticket_id.desc())
        .limit(COLUMN_LIMIT)
        for state in sorted(totals)
    ]
    if totals.get(State.BACKLOG.value):
        # Open tickets the engine never took up, newest change first (ix_tickets_updated_at_id).
        branches.append(
            select(*card_columns())
            .outerjoin(TicketState, TicketState.ticket_id == Ticket.id)
            .outerjoin(Repository, Repository.id == Ticket.repository_id)
            .where(*filters.conditions(), TicketState.ticket_id.is_(None), Ticket.state == "open")
            .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
            .limit(COLUMN_LIMIT)
        )
    cards: dict[str, list[tuple[datetime, int, Card]]] = {state: [] for state in BOARD_STATES}
    if branches:
        for row in await session.execute(union_all(*branches)):
            card = Card.from_row(row)
            cards.setdefault(card.state, []).append((row[15], card.id, card))
    columns = []
    for state, found in cards.items():
        # The backlog merges two branches: newest change first, as in every column.
        found.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
        shown = [card for _, _, card in found[:COLUMN_LIMIT]]
        columns.append(Column(state, shown, totals.get(state, 0)))
    return columns


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
        "now": since,
        "events_url": "/tickets/events?" + filters.query(since=since.isoformat()),
        "empty": not any(column.total for column in columns),
    }
    return page(request, "tickets.html", context)
