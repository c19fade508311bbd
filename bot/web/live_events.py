"""Server-Sent Events for the web page, read under the page's policy (session, not bearer).

`GET /tickets/events?repo=&source=&since=ISO`: one `event: ticket` per changed ticket, its
board card as JSON (bot.web.ticket_pages.Card). The database is polled every POLL_SECONDS
for `ticket_states` and `tickets` rows changed since the last poll; `id:` is the database
clock of the poll that found the change, so a reconnecting EventSource (Last-Event-ID)
resumes where it left off.

`GET /tickets/{id}/events`: `event: changed` with the ticket page's fingerprint whenever
it changes (bot.web.ticket_live), and again every SLACK or so.

`GET /runs/{id}/events?after=SEQ`: the run's output from bot.api.runs.tail_run, each event
as `event: output` with `{"seq", "kind", "line"}` (the line the run page shows), then
`event: end` with `{"state", "status"}` once the run is over. `event: interrupted` means
the server lost Postgres or Redis and closed the stream; the browser reconnects on its
own, resuming after Last-Event-ID.

Signed-out readers get a plain 401 when reads need a login (an EventSource cannot follow
a login page anyway, and a 401 stops its reconnecting).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Hashable
from contextlib import aclosing
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from bot.api.request import ApiError, Query, deps_of
from bot.api.runs import (
    BLOCK_MS,
    KEEPALIVE_SECONDS,
    SSE_HEADERS,
    SSE_KEEPALIVE,
    Interrupted,
    Quiet,
    RunOver,
    Tailed,
    TailedEvent,
    parse_run_id,
    resume_point,
    tail_run,
)
from bot.deps import Deps
from bot.tables.mirror import Ticket
from bot.tables.workflow import Run, TicketState
from bot.web.board import BoardFilters, Card, cards_query, database_now
from bot.web.pages import Refused, reader
from bot.web.run_pages import HIDDEN_KINDS, event_time, output_line
from bot.web.ticket_live import fingerprint

log = structlog.get_logger(__name__)

POLL_SECONDS = 1.0
# `updated_at` is now() of the writing transaction, i.e. when it began, not when it
# committed: a change committed just after a poll can carry a time before that poll. Each
# poll looks this far back again, and a card already sent unchanged is not sent twice.
SLACK = timedelta(seconds=10)
SSE_INTERRUPTED = 'event: interrupted\ndata: {"error":"stream interrupted; reconnect"}\n\n'


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _unauthorised() -> Response:
    return PlainTextResponse("Sign in to follow live updates.", status_code=401)


def _stream(messages: AsyncIterator[str]) -> Response:
    return StreamingResponse(messages, media_type="text/event-stream", headers=SSE_HEADERS)


# -- the board -------------------------------------------------------------------------------


def resume_time(request: Request) -> datetime | None:
    """Last-Event-ID (an EventSource reconnecting) wins over `?since=` (the page's read)."""
    header = request.headers.get("last-event-id", "").strip()
    name, value = (
        ("Last-Event-ID", header) if header else ("since", request.query_params.get("since"))
    )
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name} must carry a time zone")
    return moment


async def tickets_events(request: Request) -> Response:
    try:
        reader(request)
    except Refused:
        return _unauthorised()
    try:
        filters = BoardFilters.of(request)
    except Refused as refused:
        return refused.response
    try:
        since = resume_time(request)
    except ValueError as error:
        return _bad(str(error))
    return _stream(
        board_changes(deps_of(request), filters, since, disconnected=request.is_disconnected)
    )


def _bad(message: str) -> Response:
    return PlainTextResponse(f"Bad request: {message}", status_code=400)


# A change: its key (a ticket, an entry), its message (JSON), when it changed.
Change = tuple[Hashable, str, datetime]
Fetch = Callable[[AsyncSession, datetime], Awaitable[list[Change]]]


async def poll_changes(
    deps: Deps,
    fetch: Fetch,
    event: str,
    since: datetime | None,
    *,
    name: str,
    disconnected: Callable[[], Awaitable[bool]] | None = None,
    poll_seconds: float = POLL_SECONDS,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
) -> AsyncIterator[str]:
    """`event: <event>` for each change `fetch` finds after `since` (now when None), by
    polling PostgreSQL. `fetch` gets a cutoff SLACK before the last poll's clock, so a row
    committed late with an earlier time is still seen; a message already sent as it is now
    is not sent again. `name` names the stream in the log when the database fails."""
    sent: dict[Hashable, tuple[str, datetime]] = {}  # message last sent, when it changed
    watermark = since
    said_at = time.monotonic()
    try:
        while True:
            async with deps.sessions() as session:
                now = await database_now(session)
                if watermark is None:
                    watermark = now
                changes = await fetch(session, watermark - SLACK)
            for key, message, changed in changes:
                previous = sent.get(key)
                if previous is not None and previous[0] == message:
                    continue
                sent[key] = (message, changed)
                yield f"id: {now.isoformat()}\nevent: {event}\ndata: {message}\n\n"
                said_at = time.monotonic()
            watermark = now
            for key, (_, changed) in list(sent.items()):
                if changed <= watermark - SLACK:
                    del sent[key]  # older than any poll will look again
            if time.monotonic() - said_at >= keepalive_seconds:
                yield SSE_KEEPALIVE
                said_at = time.monotonic()
            if disconnected is not None and await disconnected():
                return
            await asyncio.sleep(poll_seconds)
    except (SQLAlchemyError, OSError) as error:
        log.warning(f"{name}_event_stream_failed", error=type(error).__name__)
        yield SSE_INTERRUPTED


async def board_changes(
    deps: Deps,
    filters: BoardFilters,
    since: datetime | None,
    *,
    disconnected: Callable[[], Awaitable[bool]] | None = None,
    poll_seconds: float = POLL_SECONDS,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
) -> AsyncIterator[str]:
    """`event: ticket` messages for tickets changed after `since` (now when None)."""

    async def cards(session: AsyncSession, cutoff: datetime) -> list[Change]:
        changed_at = func.greatest(TicketState.updated_at, Ticket.updated_at)
        rows = (
            await session.execute(
                cards_query(filters)
                .add_columns(changed_at)
                .where(or_(TicketState.updated_at > cutoff, Ticket.updated_at > cutoff))
                .order_by(changed_at, Ticket.id)
            )
        ).all()
        return [(row[0], _json(Card.from_row(row).to_json()), row[-1]) for row in rows]

    async for message in poll_changes(
        deps,
        cards,
        "ticket",
        since,
        name="board",
        disconnected=disconnected,
        poll_seconds=poll_seconds,
        keepalive_seconds=keepalive_seconds,
    ):
        yield message


async def ticket_events(request: Request) -> Response:
    """`GET /tickets/{id}/events`: `event: changed` with the ticket page's fingerprint
    (bot.web.ticket_live) when it changes, and again now and then; the page compares it
    with its own and reloads its changing parts."""
    try:
        reader(request)
    except Refused:
        return _unauthorised()
    raw = request.path_params["id"]
    if not raw.isdigit() or len(raw) > 18:
        return _bad("the ticket id must be a positive integer")
    ticket_id = int(raw)
    deps = deps_of(request)
    async with deps.sessions() as session:
        if await session.get(Ticket, ticket_id) is None:
            return PlainTextResponse(f"No ticket {ticket_id}.", status_code=404)

    return _stream(ticket_changes(deps, ticket_id, disconnected=request.is_disconnected))


async def ticket_changes(
    deps: Deps,
    ticket_id: int,
    *,
    disconnected: Callable[[], Awaitable[bool]] | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> AsyncGenerator[str, None]:
    """`event: changed` with the ticket page's fingerprint: at once, whenever it changes,
    and again once it is SLACK old (a page that missed one catches up)."""

    async def current(session: AsyncSession, _cutoff: datetime) -> list[Change]:
        now = await database_now(session)
        return [(ticket_id, _json({"fingerprint": await fingerprint(session, ticket_id)}), now)]

    async for message in poll_changes(
        deps,
        current,
        "changed",
        None,
        name="ticket",
        disconnected=disconnected,
        poll_seconds=poll_seconds,
    ):
        yield message


async def run_events(request: Request) -> Response:
    try:
        reader(request)
    except Refused:
        return _unauthorised()
    try:
        run_id = parse_run_id(request.path_params["id"])
        after = resume_point(request, Query(request, {"after"}))
    except ApiError as error:
        return _bad(error.message)
    deps = deps_of(request)
    async with deps.sessions() as session:
        if await session.scalar(select(Run.id).where(Run.id == run_id)) is None:
            return PlainTextResponse(f"No run {run_id}.", status_code=404)
    return _stream(run_output(deps, run_id, after, disconnected=request.is_disconnected))


async def run_output(
    deps: Deps,
    run_id: str,
    after: int,
    *,
    disconnected: Callable[[], Awaitable[bool]] | None = None,
    block_ms: int = BLOCK_MS,
) -> AsyncIterator[str]:
    """The run page's live output: `output` lines after seq `after`, then `end`."""
    tail = tail_run(deps, run_id, after, disconnected=disconnected, block_ms=block_ms)
    async with aclosing(tail):
        async for item in tail:
            yield _output_message(item)


def _output_message(item: Tailed) -> str:
    match item:
        case TailedEvent(seq, kind, event):
            if kind in HIDDEN_KINDS:
                return f"id: {seq}\n\n"  # no line to show, but a reconnect resumes after it
            line: dict[str, Any] = {"seq": seq, "kind": kind, "at": event_time(event)}
            if kind == "phase":  # opens a fold of the output, as on the page
                line["phase"] = str(event.get("text") or "?")
            line["line"] = output_line(kind, event)
            return f"id: {seq}\nevent: output\ndata: {_json(line)}\n\n"
        case RunOver(_, state, status):
            return f"event: end\ndata: {_json({'state': state, 'status': status})}\n\n"
        case Quiet():
            return SSE_KEEPALIVE
        case Interrupted():
            return SSE_INTERRUPTED
