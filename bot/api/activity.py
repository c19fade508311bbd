"""`GET /api/v1/tickets/{id}/activity`: what happened to a ticket, oldest first.

Rows are state changes, runs, side effects, config problems and commands (`kind`), in the
order they were recorded: our id is assigned at insert, so it is the log's order and the
keyset. Paged like every listing (`limit`, `cursor` = the previous page's `next_cursor`);
rows recorded while a client walks the pages appear at the end of its walk.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.api.request import ApiError, Query, deps_of, iso, json_endpoint, page, parse_id
from bot.tables.mirror import Ticket
from bot.tables.workflow import Activity

CURSOR_KIND = "activity"


@json_endpoint
async def ticket_activity(request: Request) -> Response:
    """The ticket's activity rows, oldest to newest."""
    ticket_id = parse_id("id", request.path_params["id"])
    query = Query(request, {"limit", "cursor"})
    limit = query.limit()
    after = query.cursor(CURSOR_KIND)

    statement = select(Activity).where(Activity.ticket_id == ticket_id)
    if after is not None:
        statement = statement.where(Activity.id > after)
    statement = statement.order_by(Activity.id).limit(limit + 1)
    async with deps_of(request).sessions() as session:
        if await session.scalar(select(Ticket.id).where(Ticket.id == ticket_id)) is None:
            raise ApiError(404, f"id: no ticket {ticket_id}")
        rows = (await session.scalars(statement)).all()
    activity, next_cursor = page([(row.id, activity_item(row)) for row in rows], limit, CURSOR_KIND)
    return JSONResponse({"ticket_id": ticket_id, "activity": activity, "next_cursor": next_cursor})


def activity_item(row: Activity) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": iso(row.at),
        "kind": row.kind,
        "message": row.message,
        "run_id": row.run_id,
        "data": row.data,
    }
