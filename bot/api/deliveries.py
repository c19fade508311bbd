"""`GET /api/v1/deliveries` and `GET /api/v1/deliveries/{id}`: the raw webhook log.

Newest first (by our id, which is assigned in arrival order), paged like the tickets.
The listing leaves out payloads, which can be megabytes; the detail has it. `id` is ours
(the one the ticket history links to); `delivery_id` is the tracker's, e.g. the
`X-GitHub-Delivery` GUID shown in the App's "Recent deliveries".
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import RowMapping, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.api.request import ApiError, Query, deps_of, iso, json_endpoint, page, parse_id
from bot.api.tickets import SOURCES
from bot.tables.mirror import Delivery, DeliveryStatus, DeliveryTicket

STATUSES = tuple(s.value for s in DeliveryStatus)
# The same shape the webhook endpoint accepts for X-GitHub-Event.
EVENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")
CURSOR_KIND = "deliveries"

_SUMMARY_COLUMNS = (
    Delivery.id,
    Delivery.delivery_id,
    Delivery.source,
    Delivery.event,
    Delivery.action,
    Delivery.status,
    Delivery.error,
    Delivery.attempts,
    Delivery.received_at,
    Delivery.processed_at,
    Delivery.repository,
    Delivery.installation_id,
)


@json_endpoint
async def list_deliveries(request: Request) -> Response:
    """Deliveries filtered by `status`, `event`, `source` and `ticket` (an id)."""
    query = Query(request, {"status", "event", "source", "ticket", "limit", "cursor"})
    status = query.choice("status", STATUSES)
    event = query.matching("event", EVENT_NAME, "an event name such as issue_comment")
    source = query.choice("source", SOURCES)
    ticket = query.integer("ticket")
    limit = query.limit()
    after = query.cursor(CURSOR_KIND)

    statement = select(*_SUMMARY_COLUMNS)
    if status is not None:
        statement = statement.where(Delivery.status == status)
    if event is not None:
        statement = statement.where(Delivery.event == event)
    if source is not None:
        statement = statement.where(Delivery.source == source)
    if ticket is not None:
        statement = statement.join(DeliveryTicket, DeliveryTicket.delivery_id == Delivery.id).where(
            DeliveryTicket.ticket_id == ticket
        )
    if after is not None:
        statement = statement.where(Delivery.id < after)
    statement = statement.order_by(Delivery.id.desc()).limit(limit + 1)

    async with deps_of(request).sessions() as session:
        rows = (await session.execute(statement)).mappings().all()
    deliveries, next_cursor = page(
        [(row["id"], delivery_summary(row)) for row in rows], limit, CURSOR_KIND
    )
    return JSONResponse({"deliveries": deliveries, "next_cursor": next_cursor})


@json_endpoint
async def get_delivery(request: Request) -> Response:
    """One delivery with its payload and the tickets it touched."""
    pk = parse_id("id", request.path_params["id"])
    async with deps_of(request).sessions() as session:
        row = (
            (
                await session.execute(
                    select(*_SUMMARY_COLUMNS, Delivery.payload).where(Delivery.id == pk)
                )
            )
            .mappings()
            .one_or_none()
        )
        if row is None:
            raise ApiError(404, f"id: no delivery {pk}")
        tickets = await session.scalars(
            select(DeliveryTicket.ticket_id)
            .where(DeliveryTicket.delivery_id == pk)
            .order_by(DeliveryTicket.ticket_id)
        )
        body = delivery_summary(row)
        body["tickets"] = list(tickets)
    body["payload"] = row["payload"]
    return JSONResponse(body)


def delivery_summary(row: RowMapping) -> dict[str, Any]:
    """The listing's fields of a delivery row (a SQLAlchemy mapping of _SUMMARY_COLUMNS)."""
    return {
        "id": row["id"],
        "delivery_id": row["delivery_id"],
        "source": row["source"],
        "event": row["event"],
        "action": row["action"],
        "status": row["status"],
        "error": row["error"],
        "attempts": row["attempts"],
        "received_at": iso(row["received_at"]),
        "processed_at": iso(row["processed_at"]),
        "repository": row["repository"],
        "installation_id": row["installation_id"],
    }
