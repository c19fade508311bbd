"""`/activity`: everything that happened across tickets, newest first, and its live stream.

Three sources make one feed: the engine's activity log (state changes, runs and their
gates, effects, commands, config problems), deliveries that failed to ingest, and outbox
effects that gave up without a ticket to log them on (those with one are in the log
already, bot.effects.perform). One UNION ALL statement reads a page, each branch filtered
and limited on its own, keyset-paged on (at, source, id) descending — no OFFSET.

`GET /activity/events?…&since=ISO` streams new entries as `event: entry` (JSON for
activity.js, which sets everything as text), polled like the board (bot.web.live_events).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import structlog
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    SQLColumnExpression,
    String,
    and_,
    cast,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from bot.api.request import deps_of
from bot.api.runs import KEEPALIVE_SECONDS, SSE_HEADERS
from bot.api.tickets import REPO_NAME
from bot.deps import Deps
from bot.tables.mirror import Delivery, DeliveryStatus, Repository, Ticket
from bot.tables.workflow import Activity, EffectStatus, OutboxEffect, TicketState
from bot.web.board import database_now
from bot.web.live_events import POLL_SECONDS, Change, poll_changes, resume_time
from bot.web.pages import Refused, bad_request, html_endpoint, page, reader

log = structlog.get_logger(__name__)

PAGE_SIZE = 50
# The activity log's kinds (bot.engine.decision.note, bot.effects.perform), then ours.
TYPES = ("state", "run", "effect", "command", "config", "delivery")
SOURCES = ("outbox", "delivery", "activity")  # the keyset's tie-breaker, in text order
WORKFLOW = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PERSON = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?")
CURSOR = re.compile(r"(?P<at>[0-9T:.+\-]{19,40})\|(?P<source>[a-z]{5,8})\|(?P<id>[0-9]{1,19})")
MAX_SEARCH = 200
# A substring search (q, person) reads at most this many activity rows a page: no index
# serves an ILIKE, so one that matches little would otherwise read the whole log. A page
# that reached the window's end before it filled up links on to the entries older than it.
SEARCH_WINDOW = 10_000
# Which rows of a source a read wants: (its time, its source name, its id) → condition.
Window = Callable[
    [SQLColumnExpression[datetime], str, SQLColumnExpression[int]], ColumnElement[bool]
]


@dataclass(frozen=True)
class Cursor:
    at: datetime
    source: str
    id: int

    def text(self) -> str:
        return f"{self.at.isoformat()}|{self.source}|{self.id}"


@dataclass(frozen=True)
class ActivityFilters:
    type: str | None = None
    repo: str | None = None
    workflow: str | None = None
    person: str | None = None
    q: str | None = None

    @classmethod
    def of(cls, request: Request) -> ActivityFilters:
        """The filters in the query string; a malformed one is a 400 page."""
        params = request.query_params

        def value(name: str) -> str | None:
            return params.get(name, "").strip() or None

        kind, repo, workflow = value("type"), value("repo"), value("workflow")
        person, q = value("person"), value("q")
        if kind is not None and kind not in TYPES:
            raise bad_request(request, f"type must be one of: {', '.join(TYPES)}.")
        if repo is not None and not REPO_NAME.fullmatch(repo):
            raise bad_request(request, "repo must look like OWNER/NAME, e.g. octo-org/octo-repo.")
        if workflow is not None and not WORKFLOW.fullmatch(workflow):
            raise bad_request(request, "workflow must be a workflow's name, e.g. coder.")
        if person is not None:
            person = person.removeprefix("@")
            if not PERSON.fullmatch(person):
                raise bad_request(request, "person must be a login, e.g. octocat.")
        if q is not None and len(q) > MAX_SEARCH:
            raise bad_request(request, f"q must be at most {MAX_SEARCH} characters.")
        return cls(kind, repo, workflow, person, q)

    def query(self, **extra: str) -> str:
        values = {**{k: v or "" for k, v in asdict(self).items()}, **extra}
        return urlencode({name: value for name, value in values.items() if value})

    @property
    def any(self) -> bool:
        return any(asdict(self).values())


def parse_cursor(request: Request) -> Cursor | None:
    text = request.query_params.get("before", "").strip()
    if not text:
        return None
    found = CURSOR.fullmatch(text)
    if found is None or found["source"] not in SOURCES:
        raise bad_request(request, "before must be the link's cursor from the previous page.")
    try:
        at = datetime.fromisoformat(found["at"])
    except ValueError:
        raise bad_request(request, "before must carry a valid time.") from None
    if at.tzinfo is None:
        raise bad_request(request, "before must carry a time zone.")
    return Cursor(at, found["source"], int(found["id"]))


@dataclass(frozen=True)
class Entry:
    source: str
    id: int
    at: datetime
    kind: str
    message: str
    ticket_id: int | None
    ticket_key: str | None
    run_id: str | None
    repo: str | None

    @property
    def ticket_url(self) -> str | None:
        return f"/tickets/{self.ticket_id}" if self.ticket_id is not None else None

    @property
    def run_url(self) -> str | None:
        return f"/runs/{quote(self.run_id, safe='')}" if self.run_id else None

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.at, self.source, self.id)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": f"{self.source}-{self.id}",
            "at": self.at.isoformat(),
            "kind": self.kind,
            "message": self.message,
            "ticket_key": self.ticket_key,
            "ticket_url": self.ticket_url,
            "run_id": self.run_id,
            "run_url": self.run_url,
            "repo": self.repo,
        }


def _contains(column: SQLColumnExpression[str], text: str) -> ColumnElement[bool]:
    # ILIKE, not full-text search: entries are short log lines full of identifiers
    # (`in_review`, `openase/tests`, `acme/api#12`) that to_tsvector would split and stem,
    # and a page scans at most its keyset window, so a substring match is both what a
    # reader expects and cheap enough.
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.ilike(f"%{escaped}%", escape="\\")


COLUMNS = ("source", "id", "at", "kind", "message", "ticket_id", "ticket_key", "run_id", "repo")


def _labelled(*columns: Any) -> list[Any]:
    """A branch's columns under the feed's names (a UNION takes the first branch's)."""
    return [column.label(name) for column, name in zip(columns, COLUMNS, strict=True)]


def _branches(
    filters: ActivityFilters,
    window: Window,
    descending: bool,
    limit: int,
) -> Any:
    """The three sources as one statement, each branch filtered, windowed and limited."""
    selects: list[Any] = []

    def finish(
        statement: Any,
        at: SQLColumnExpression[datetime],
        source: str,
        key: SQLColumnExpression[int],
    ) -> Any:
        order = (at.desc(), key.desc()) if descending else (at, key)
        return statement.where(window(at, source, key)).order_by(*order).limit(limit)

    # The activity log.
    where: list[ColumnElement[bool]] = []
    if filters.type is not None:
        where.append(Activity.kind == filters.type if filters.type != "delivery" else false())
    if filters.repo is not None:
        where.append(func.lower(Repository.full_name) == filters.repo.lower())
    if filters.workflow is not None:
        where.append(TicketState.workflow == filters.workflow)
    if filters.person is not None:
        # Whose ticket it is, or who is named in the line ("/ask by @login").
        where.append(
            or_(
                func.lower(Ticket.author_login) == filters.person.lower(),
                Ticket.assignees.contains([filters.person]),
                _contains(Activity.message, f"@{filters.person}"),
            )
        )
    if filters.q is not None:
        # The key as a semi-join: rows are filtered before they are joined to their ticket.
        keyed = select(Ticket.id).where(_contains(Ticket.key, filters.q))
        where.append(or_(_contains(Activity.message, filters.q), Activity.ticket_id.in_(keyed)))
    selects.append(
        finish(
            select(
                literal("activity", String).label("source"),
                Activity.id.label("id"),
                Activity.at.label("at"),
                Activity.kind.label("kind"),
                Activity.message.label("message"),
                Activity.ticket_id.label("ticket_id"),
                Ticket.key.label("ticket_key"),
                Activity.run_id.label("run_id"),
                Repository.full_name.label("repo"),
            )
            .join(Ticket, Ticket.id == Activity.ticket_id)
            .outerjoin(Repository, Repository.id == Ticket.repository_id)
            .outerjoin(TicketState, TicketState.ticket_id == Activity.ticket_id)
            .where(*where),
            Activity.at,
            "activity",
            Activity.id,
        )
    )

    # Deliveries that failed to ingest: no ticket, no workflow.
    if filters.type in (None, "delivery") and filters.workflow is None:
        message = func.concat(
            Delivery.source,
            " ",
            Delivery.event,
            func.coalesce("." + Delivery.action, ""),
            " delivery failed: ",
            func.coalesce(Delivery.error, "no error recorded"),
        )
        at = func.coalesce(Delivery.processed_at, Delivery.received_at)
        where = [Delivery.status == DeliveryStatus.FAILED]
        if filters.repo is not None:
            where.append(func.lower(Delivery.repository) == filters.repo.lower())
        if filters.person is not None:
            sender = Delivery.payload["sender"]["login"].astext
            where.append(func.lower(sender) == filters.person.lower())
        if filters.q is not None:
            where.append(_contains(message, filters.q))
        selects.append(
            finish(
                select(
                    *_labelled(
                        literal("delivery", String),
                        Delivery.id,
                        cast(at, DateTime(timezone=True)),
                        literal("delivery", String),
                        message,
                        cast(null(), BigInteger),
                        cast(null(), String),
                        cast(null(), String),
                        Delivery.repository,
                    )
                ).where(*where),
                at,
                "delivery",
                Delivery.id,
            )
        )

    # Effects that gave up with no ticket to log them on (repository-wide ones).
    if (
        filters.type in (None, "effect")
        and filters.repo is None
        and filters.workflow is None
        and filters.person is None
    ):
        message = func.concat(
            OutboxEffect.kind, " failed: ", func.coalesce(OutboxEffect.last_error, "")
        )
        at = func.coalesce(OutboxEffect.done_at, OutboxEffect.created_at)
        where = [OutboxEffect.status == EffectStatus.FAILED, OutboxEffect.ticket_id.is_(None)]
        if filters.q is not None:
            where.append(_contains(message, filters.q))
        selects.append(
            finish(
                select(
                    *_labelled(
                        literal("outbox", String),
                        OutboxEffect.id,
                        cast(at, DateTime(timezone=True)),
                        literal("effect", String),
                        message,
                        cast(null(), BigInteger),
                        cast(null(), String),
                        cast(null(), String),
                        cast(null(), String),
                    )
                ).where(*where),
                at,
                "outbox",
                OutboxEffect.id,
            )
        )

    feed = union_all(*(s.subquery().select() for s in selects)).subquery("feed")
    order = (
        (feed.c.at.desc(), feed.c.source.desc(), feed.c.id.desc())
        if descending
        else (feed.c.at, feed.c.source, feed.c.id)
    )
    return select(feed).order_by(*order).limit(limit)


def _entry(row: Any) -> Entry:
    return Entry(
        source=row.source,
        id=row.id,
        at=row.at,
        kind=row.kind,
        message=row.message,
        ticket_id=row.ticket_id,
        ticket_key=row.ticket_key,
        run_id=row.run_id,
        repo=row.repo,
    )


def _between(
    at: SQLColumnExpression[datetime],
    source: str,
    key: SQLColumnExpression[int],
    before: Cursor | None,
    floor: Cursor | None,
) -> ColumnElement[bool]:
    """Rows older than `before` and not older than `floor`, in the feed's (at, source, id)
    order; the bare time bounds let an index on the time serve the range."""
    here = tuple_(at, literal(source, String), key)
    conditions: list[ColumnElement[bool]] = []
    for cursor, older in ((before, True), (floor, False)):
        if cursor is None:
            continue
        moment = literal(cursor.at, DateTime(timezone=True))
        there = tuple_(moment, literal(cursor.source, String), literal(cursor.id, BigInteger))
        conditions += [at <= moment, here < there] if older else [at >= moment, here >= there]
    return and_(*conditions) if conditions else true()


async def _search_floor(session: AsyncSession, before: Cursor | None) -> Cursor | None:
    """The oldest activity row a search page reads (the SEARCH_WINDOW-th from `before`), or
    None when fewer are left: read from the (at, id) index alone."""
    query = select(Activity.at, Activity.id).order_by(Activity.at.desc(), Activity.id.desc())
    if before is not None:
        query = query.where(_between(Activity.at, "activity", Activity.id, before, None))
    found = (await session.execute(query.offset(SEARCH_WINDOW - 1).limit(1))).one_or_none()
    return None if found is None else Cursor(found.at, "activity", found.id)


@dataclass(frozen=True)
class FeedPage:
    entries: list[Entry]
    next: Cursor | None
    searched_to: datetime | None = None  # a search stopped at its window, this far back


async def newest(
    deps: Deps, filters: ActivityFilters, before: Cursor | None, limit: int = PAGE_SIZE
) -> FeedPage:
    """A page of entries older than `before` (the newest when None) and the next cursor."""
    searching = filters.q is not None or filters.person is not None
    async with deps.sessions() as session:
        floor = await _search_floor(session, before) if searching else None

        def window(
            at: SQLColumnExpression[datetime], source: str, key: SQLColumnExpression[int]
        ) -> ColumnElement[bool]:
            return _between(at, source, key, before, floor)

        rows = (await session.execute(_branches(filters, window, True, limit + 1))).all()
    entries = [_entry(row) for row in rows]
    if len(entries) > limit:
        return FeedPage(entries[:limit], entries[limit - 1].cursor)
    return FeedPage(entries, floor, floor.at if floor is not None else None)


@html_endpoint
async def activity_page(request: Request) -> Response:
    reader(request)
    filters = ActivityFilters.of(request)
    before = parse_cursor(request)
    deps = deps_of(request)
    async with deps.sessions() as session:
        since = await database_now(session)  # the stream continues from this read
    found = await newest(deps, filters, before)
    entries, next_cursor = found.entries, found.next
    context = {
        "title": "Activity",
        "entries": entries,
        "filters": filters,
        "types": TYPES,
        "first_page": before is None,
        "searched_to": found.searched_to,
        "search_window": SEARCH_WINDOW,
        "first_url": "/activity" + (f"?{filters.query()}" if filters.any else ""),
        "next_url": (
            "/activity?" + filters.query(before=next_cursor.text()) if next_cursor else None
        ),
        "events_url": "/activity/events?" + filters.query(since=since.isoformat()),
    }
    return page(request, "activity.html", context)


async def activity_events(request: Request) -> Response:
    try:
        reader(request)
    except Refused:
        return PlainTextResponse("Sign in to follow live updates.", status_code=401)
    try:
        filters = ActivityFilters.of(request)
    except Refused as refused:
        return refused.response
    try:
        since = resume_time(request)
    except ValueError as error:
        return PlainTextResponse(f"Bad request: {error}", status_code=400)
    stream = new_entries(deps_of(request), filters, since, disconnected=request.is_disconnected)
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


def _after(cutoff: datetime) -> Window:
    def window(
        at: SQLColumnExpression[datetime], source: str, key: SQLColumnExpression[int]
    ) -> ColumnElement[bool]:
        return at > cutoff

    return window


async def new_entries(
    deps: Deps,
    filters: ActivityFilters,
    since: datetime | None,
    *,
    disconnected: Callable[[], Awaitable[bool]] | None = None,
    poll_seconds: float = POLL_SECONDS,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
) -> AsyncIterator[str]:
    """`event: entry` for each entry recorded after `since` (now when None), oldest first."""

    async def entries(session: AsyncSession, cutoff: datetime) -> list[Change]:
        rows = (await session.execute(_branches(filters, _after(cutoff), False, 500))).all()
        changes: list[Change] = []
        for row in rows:
            entry = _entry(row)
            data = json.dumps(entry.to_json(), separators=(",", ":"), ensure_ascii=False)
            changes.append(((entry.source, entry.id), data, entry.at))
        return changes

    async for message in poll_changes(
        deps,
        entries,
        "entry",
        since,
        name="activity",
        disconnected=disconnected,
        poll_seconds=poll_seconds,
        keepalive_seconds=keepalive_seconds,
    ):
        yield message
