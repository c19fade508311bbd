"""`/tickets/list`: every mirrored ticket as a list — searched, filtered, sorted, in pages.

Search is PostgreSQL full-text search over title and body with the `simple` configuration
(no stemming: tickets are full of identifiers like `in_review` or `ENG-12` that a language's
stemmer would mangle), `websearch_to_tsquery` so people type as in a search box ("login
-oauth", quoted phrases). Pages are keysets over the sort order, never OFFSET: page 500 costs
what page 1 does. One statement a page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, Select, and_, exists, func, literal_column, or_, select
from starlette.requests import Request
from starlette.responses import Response

from bot.api.request import deps_of
from bot.api.tickets import REPO_NAME, SOURCES
from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import Run, TicketState
from bot.web.pages import Refused, bad_request, page, reader
from bot.web.ticket_keys import ticket_path

PAGE_SIZE = 50
QUERY_MAX = 200
SORTS = {"updated": "recently updated", "newest": "newest first", "oldest": "oldest first"}
_STATE = re.compile(r"[a-z][a-z0-9_]{0,39}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=/-]{0,63}")
_CURSOR = re.compile(r"(?:(\d{4}-\d\d-\d\dT[0-9:.+]+)_)?(\d{1,19})")


@dataclass(frozen=True)
class ListQuery:
    """The list's query string, validated."""

    q: str = ""
    repo: str = ""
    source: str = ""
    state: str = ""
    label: str = ""
    workflow: str = ""
    machine: str = ""
    sort: str = "updated"
    after: str = ""

    @classmethod
    def of(cls, request: Request) -> ListQuery:
        """The parameters; a malformed one is a 400 page naming it."""
        params = request.query_params
        values = {name: params.get(name, "").strip() for name in cls.__dataclass_fields__}
        values["sort"] = values["sort"] or "updated"
        checks: dict[str, tuple[bool, str]] = {
            "q": (len(values["q"]) <= QUERY_MAX, f"at most {QUERY_MAX} characters"),
            "repo": (REPO_NAME.fullmatch(values["repo"]) is not None, "OWNER/NAME"),
            "source": (values["source"] in SOURCES, "one of " + ", ".join(SOURCES)),
            "state": (_STATE.fullmatch(values["state"]) is not None, "a state like in_review"),
            "label": (0 < len(values["label"]) <= 50, "a label of at most 50 characters"),
            "workflow": (_NAME.fullmatch(values["workflow"]) is not None, "a workflow name"),
            "machine": (_NAME.fullmatch(values["machine"]) is not None, "a machine name"),
            "sort": (values["sort"] in SORTS, "one of " + ", ".join(SORTS)),
            "after": (_CURSOR.fullmatch(values["after"]) is not None, "a page link's cursor"),
        }
        for name, (good, expected) in checks.items():
            if (values[name] or name == "sort") and not good:
                raise bad_request(request, f"{name} must be {expected}; got {values[name][:80]!r}.")
        return cls(**values)

    def link(self, **changes: str) -> str:
        values = {**self.__dict__, **changes}
        kept = {name: value for name, value in values.items() if value}
        if kept.get("sort") == "updated":
            del kept["sort"]
        return "/tickets/list" + (f"?{urlencode(kept)}" if kept else "")


@dataclass(frozen=True)
class Row:
    id: int
    key: str
    title: str
    source: str
    repo: str | None
    state: str | None
    workflow: str | None
    labels: list[str]
    updated_at: datetime

    @property
    def url(self) -> str:
        return ticket_path(self.source, self.key, self.id)


def _statement(
    query: ListQuery,
) -> Select[int, str, str, str, str, str, str | None, list[str], datetime]:
    statement = (
        select(
            Ticket.id,
            Ticket.key,
            Ticket.title,
            Ticket.source,
            Repository.full_name,
            TicketState.state,
            TicketState.workflow,
            Ticket.labels,
            Ticket.updated_at,
        )
        .outerjoin(Repository, Repository.id == Ticket.repository_id)
        .outerjoin(TicketState, TicketState.ticket_id == Ticket.id)
    )
    where: list[ColumnElement[bool]] = []
    if query.q:
        # Literals, not bound parameters: the GIN index ix_tickets_search is on exactly this
        # expression, and a planner matches an index expression only against constants.
        document = func.to_tsvector(
            literal_column("'simple'"), Ticket.title + literal_column("' '") + Ticket.body
        )
        where.append(document.op("@@")(func.websearch_to_tsquery("simple", query.q)))
    if query.repo:
        where.append(func.lower(Repository.full_name) == query.repo.lower())
    if query.source:
        where.append(Ticket.source == query.source)
    if query.state:
        where.append(TicketState.state == query.state)
    if query.label:
        where.append(Ticket.labels.contains([query.label]))  # the GIN index on labels
    if query.workflow:
        where.append(TicketState.workflow == query.workflow)
    if query.machine:
        where.append(exists().where(Run.ticket_id == Ticket.id, Run.machine == query.machine))
    where += _after(query)
    return statement.where(*where).order_by(*_order(query.sort)).limit(PAGE_SIZE + 1)


def _order(sort: str) -> list[Any]:
    if sort == "oldest":
        return [Ticket.id.asc()]
    if sort == "newest":
        return [Ticket.id.desc()]
    return [Ticket.updated_at.desc(), Ticket.id.desc()]


def _after(query: ListQuery) -> list[ColumnElement[bool]]:
    match = _CURSOR.fullmatch(query.after) if query.after else None
    if match is None:
        return []
    moment, last = match.group(1), int(match.group(2))
    if query.sort == "oldest":
        return [Ticket.id > last]
    if query.sort == "newest" or moment is None:
        return [Ticket.id < last]
    at = datetime.fromisoformat(moment)
    return [or_(Ticket.updated_at < at, and_(Ticket.updated_at == at, Ticket.id < last))]


def _cursor(row: Row, sort: str) -> str:
    return str(row.id) if sort != "updated" else f"{row.updated_at.isoformat()}_{row.id}"


async def ticket_list(request: Request) -> Response:
    try:
        reader(request)
        query = ListQuery.of(request)
        if query.after and query.sort == "updated" and "_" not in query.after:
            raise bad_request(request, "after must be a page link's cursor.")
    except Refused as refused:
        return refused.response
    async with deps_of(request).sessions() as session:
        found = [Row(*values) for values in (await session.execute(_statement(query))).all()]
    rows = found[:PAGE_SIZE]
    more = len(found) > PAGE_SIZE
    context = {
        "title": "Tickets: list",
        "query": query,
        "rows": rows,
        "sorts": SORTS,
        "sources": SOURCES,
        "next_url": query.link(after=_cursor(rows[-1], query.sort)) if more else None,
        "first_url": query.link(after="") if query.after else None,
    }
    return page(request, "ticket_list.html", context)
