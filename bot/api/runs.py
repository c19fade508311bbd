"""`GET /api/v1/runs/{id}` and `GET /api/v1/runs/{id}/events`: one run, its result and its
agent's events, read back or followed live.

`/runs/{id}` is the run row, its `RunResult` in wire form (hook results with their output
tails included; null until the run finished) and the first `events_limit` (default 200, at
most 1000) persisted events. Events are `AgentEvent`s in wire form, ordered by `seq`, the
runner's per-run sequence number; `events_next_after` is the seq to continue after, null
when there are no more.

`/runs/{id}/events` answers by the `Accept` header:
- JSON (any other Accept): `?after=SEQ&limit=` (after defaults to 0, limit to 200, at most
  1000) -> `{"run_id", "events", "next_after"}`, the persisted events only.
- `Accept: text/event-stream` (what a browser's EventSource sends): Server-Sent Events. First
  the persisted events after `Last-Event-ID` (or `?after=`), then the run's Redis stream
  tailed live. Each message is `id: <seq>`, `event: <kind>`, `data: <AgentEvent JSON>`; a
  `: keepalive` comment goes out after 15 s of silence. Once the run is finished or lost and
  nothing more arrives, a last `event: end` (data: run_id, state, status) closes the stream;
  a client should close its EventSource on it (else it reconnects and gets `end` again at
  once). If Postgres or Redis fails mid-stream, `event: error` is sent and the stream closes;
  reconnecting with Last-Event-ID resumes without repeats.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import structlog
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from bot.api.request import ApiError, Query, deps_of, iso, json_endpoint
from bot.deps import Deps
from bot.tables.workflow import Run, RunEvent, RunState
from runner.contract import AgentEvent, ContractMismatch, run_events_stream

log = structlog.get_logger(__name__)

# RunSpec.run_id's own pattern: anything else cannot name a run.
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
EVENTS_DEFAULT = 200
EVENTS_MAX = 1000
# Short, so a stream notices a disconnected client or a finished run within about a second.
BLOCK_MS = 1000
KEEPALIVE_SECONDS = 15.0
_BATCH = 500
_OVER = (RunState.FINISHED, RunState.LOST)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_KEEPALIVE = ": keepalive\n\n"
SSE_INTERRUPTED = 'event: error\ndata: {"error":"stream interrupted; reconnect"}\n\n'


@json_endpoint
async def get_run(request: Request) -> Response:
    """The run row, its result and the first page of its events."""
    run_id = parse_run_id(request.path_params["id"])
    limit = bounded(Query(request, {"events_limit"}), "events_limit")
    async with deps_of(request).sessions() as session:
        run = await session.get(Run, run_id)
        if run is None:
            raise ApiError(404, f"id: no run {run_id!r}")
        events, next_after = await _events(session, run_id, after=0, limit=limit)
    body = run_summary(run)
    body["result"] = run.result
    body["events"] = events
    body["events_next_after"] = next_after
    return JSONResponse(body)


@json_endpoint
async def run_events(request: Request) -> Response:
    """The run's persisted events as JSON, or its events live as Server-Sent Events."""
    run_id = parse_run_id(request.path_params["id"])
    deps = deps_of(request)
    if wants_event_stream(request):
        after = resume_point(request, Query(request, {"after"}))
        async with deps.sessions() as session:
            await _require_run(session, run_id)
        return StreamingResponse(
            event_stream(deps, run_id, after, disconnected=request.is_disconnected),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    query = Query(request, {"after", "limit"})
    after = sequence_number("after", query.one("after"))
    limit = bounded(query, "limit")
    async with deps.sessions() as session:
        await _require_run(session, run_id)
        events, next_after = await _events(session, run_id, after=after, limit=limit)
    return JSONResponse({"run_id": run_id, "events": events, "next_after": next_after})


@dataclass(frozen=True)
class TailedEvent:
    """One of the run's events, in wire form."""

    seq: int
    kind: str
    event: dict[str, Any]


@dataclass(frozen=True)
class RunOver:
    """The run is finished or lost (or gone, state "deleted") and nothing more will come."""

    run_id: str
    state: str
    status: str | None


@dataclass(frozen=True)
class Quiet:
    """Nothing was said for `keepalive_seconds`: time for a keepalive."""


@dataclass(frozen=True)
class Interrupted:
    """Postgres or Redis failed; the tail ends here and a reconnect resumes it."""


Tailed = TailedEvent | RunOver | Quiet | Interrupted


async def event_stream(
    deps: Deps,
    run_id: str,
    after: int,
    *,
    disconnected: Callable[[], Awaitable[bool]] | None = None,
    block_ms: int = BLOCK_MS,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
) -> AsyncIterator[str]:
    """SSE messages: persisted events after `after`, then the Redis stream, then `end`."""
    tail = tail_run(
        deps,
        run_id,
        after,
        disconnected=disconnected,
        block_ms=block_ms,
        keepalive_seconds=keepalive_seconds,
    )
    async with aclosing(tail):
        async for item in tail:
            match item:
                case TailedEvent(seq, kind, event):
                    yield sse_message(seq, kind, event)
                case RunOver(over_id, state, status):
                    yield sse_end(over_id, state, status)
                case Quiet():
                    yield SSE_KEEPALIVE
                case Interrupted():
                    yield SSE_INTERRUPTED


async def tail_run(
    deps: Deps,
    run_id: str,
    after: int,
    *,
    disconnected: Callable[[], Awaitable[bool]] | None = None,
    block_ms: int = BLOCK_MS,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
) -> AsyncGenerator[Tailed, None]:
    """The run's events after `after`: persisted ones, then its Redis stream live, then
    `RunOver` (or `Interrupted`). Ends quietly when `disconnected()` says the client left.

    Sessions are opened per query and closed before any wait, so an idle tail holds no
    database connection, only a Redis one during each short XREAD BLOCK.
    """
    try:
        last = after
        while True:  # what the control plane already persisted
            async with deps.sessions() as session:
                rows = (
                    await session.execute(
                        select(RunEvent.seq, RunEvent.kind, RunEvent.event)
                        .where(RunEvent.run_id == run_id, RunEvent.seq > last)
                        .order_by(RunEvent.seq)
                        .limit(_BATCH)
                    )
                ).all()
            for seq, kind, event in rows:
                yield TailedEvent(seq, kind, event)
                last = seq
            if len(rows) < _BATCH:
                break

        stream = run_events_stream(run_id)
        position: bytes | str = "0-0"  # entries at or before `last` are skipped by seq
        sent_at = time.monotonic()
        # A run already over is drained without blocking, then ended.
        checked_at = time.monotonic()
        over = await _run_over(deps, run_id)
        while True:
            # Once the run is over, one more read without blocking picks up stragglers.
            answer = await deps.redis.xread(
                {stream: position}, count=_BATCH, block=None if over else block_ms
            )
            entries = answer[0][1] if answer else []
            fresh = 0
            for entry_id, fields in entries:
                position = entry_id
                decoded = _decode(fields)
                if decoded is None or decoded.seq <= last:
                    continue
                yield TailedEvent(decoded.seq, decoded.kind.value, decoded.to_wire())
                last = decoded.seq
                fresh += 1
            if fresh:
                sent_at = time.monotonic()
            if len(entries) == _BATCH or (over and entries):
                continue  # more may be waiting right now
            if over:
                state, status = over
                yield RunOver(run_id, state, status)
                return
            if disconnected is not None and await disconnected():
                return
            if time.monotonic() - sent_at >= keepalive_seconds:
                yield Quiet()
                sent_at = time.monotonic()
            # Caught up: is the run over? Asked after every quiet read, and at most once per
            # block interval while events keep coming (a chatty run is not over yet).
            if not fresh or time.monotonic() - checked_at >= block_ms / 1000:
                checked_at = time.monotonic()
                over = await _run_over(deps, run_id)
    except (RedisError, SQLAlchemyError, OSError) as error:
        log.warning("run_event_stream_failed", run_id=run_id, error=type(error).__name__)
        yield Interrupted()


def sse_message(seq: int, kind: str, event: dict[str, Any]) -> str:
    return f"id: {seq}\nevent: {kind}\ndata: {_json(event)}\n\n"


def sse_end(run_id: str, state: str, status: str | None) -> str:
    return f"event: end\ndata: {_json({'run_id': run_id, 'state': state, 'status': status})}\n\n"


def run_summary(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "ticket_id": run.ticket_id,
        "workflow": run.workflow,
        "attempt": run.attempt,
        "machine": run.machine,
        "state": run.state,
        "status": run.status,
        "queued_at": iso(run.queued_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "last_heartbeat_at": iso(run.last_heartbeat_at),
        "cost_usd": run.cost_usd,
        "harness_version_id": run.harness_version_id,
    }


def parse_run_id(value: str) -> str:
    if not RUN_ID.fullmatch(value):
        raise ApiError(400, f"id: malformed run id {value[:40]!r}")
    return value


def sequence_number(name: str, value: str | None) -> int:
    """A seq to continue after: 0 (the start) when absent."""
    if value is None:
        return 0
    if not re.fullmatch(r"[0-9]{1,10}", value) or int(value) > 2**31 - 1:
        raise ApiError(400, f"{name}: must be an event seq (an integer >= 0), got {value[:40]!r}")
    return int(value)


def bounded(query: Query, name: str) -> int:
    """An events page size: EVENTS_DEFAULT when absent, 1..EVENTS_MAX."""
    value = query.one(name)
    if value is None:
        return EVENTS_DEFAULT
    if not re.fullmatch(r"[+-]?[0-9]{1,10}", value):
        raise ApiError(400, f"{name}: must be an integer, got {value[:40]!r}")
    if not 1 <= int(value) <= EVENTS_MAX:
        raise ApiError(400, f"{name}: must be between 1 and {EVENTS_MAX}, got {int(value)}")
    return int(value)


def wants_event_stream(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return any(
        part.split(";", 1)[0].strip().lower() == "text/event-stream" for part in accept.split(",")
    )


def resume_point(request: Request, query: Query) -> int:
    """Last-Event-ID (an EventSource reconnecting) wins over `?after=` (the first connect)."""
    header = request.headers.get("last-event-id")
    if header is not None and header.strip():
        return sequence_number("Last-Event-ID", header.strip())
    return sequence_number("after", query.one("after"))


async def _require_run(session: AsyncSession, run_id: str) -> None:
    if await session.scalar(select(Run.id).where(Run.id == run_id)) is None:
        raise ApiError(404, f"id: no run {run_id!r}")


async def _events(
    session: AsyncSession, run_id: str, *, after: int, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    rows = (
        await session.execute(
            select(RunEvent.seq, RunEvent.event)
            .where(RunEvent.run_id == run_id, RunEvent.seq > after)
            .order_by(RunEvent.seq)
            .limit(limit + 1)
        )
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return [event for _, event in rows], rows[-1][0] if more else None


async def _run_over(deps: Deps, run_id: str) -> tuple[str, str | None] | None:
    """(state, status) once the run is finished or lost (or gone), else None."""
    async with deps.sessions() as session:
        row = (
            await session.execute(select(Run.state, Run.status).where(Run.id == run_id))
        ).one_or_none()
    if row is None:
        return ("deleted", None)
    state, status = row
    return (state, status) if state in _OVER else None


def _decode(fields: dict[bytes, bytes]) -> AgentEvent | None:
    try:
        return AgentEvent.from_wire(json.loads(fields[b"event"]))
    except (KeyError, ValueError, ContractMismatch) as error:
        log.warning("run_event_unreadable", error=str(error))
        return None


def _json(value: object) -> str:
    # Compact and on one line: an SSE `data:` field ends at the first newline.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
