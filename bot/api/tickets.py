"""`GET /api/v1/tickets` and `GET /api/v1/tickets/{id}`: the mirror, read back.

Listing order is the mirror's own id, newest first. The id never changes once a ticket is
mirrored, so walking the pages with `next_cursor` neither repeats nor skips a ticket even
while tickets are updated underneath (ordering by the tracker's `updated_at` would move a
ticket edited mid-walk from one page to another). Tickets mirrored after the walk started
appear before its first page and are not returned by it.

`created_at`, `updated_at` and `closed_at` are the tracker's clock; `mirrored_at` is when
our copy last changed. The listing leaves out bodies; the detail has the body and the rest.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.api.request import ApiError, Query, deps_of, iso, json_endpoint, page, parse_id
from bot.tables.mirror import (
    Comment,
    Delivery,
    DeliveryTicket,
    PullRequest,
    Repository,
    Ticket,
    TicketPullRequest,
)

TICKET_STATES = ("open", "closed", "deleted", "transferred")
# Sources a ticket can be mirrored from (DESIGN §2: one adapter per tracker).
SOURCES = ("github", "linear", "jira")
# GitHub's own limits on owner and repository names, loosely: enough to refuse garbage.
REPO_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
# A long-lived ticket can collect thousands of deliveries; the detail shows the newest, and
# `GET /api/v1/deliveries?ticket=ID` pages through all of them.
HISTORY_LIMIT = 100
CURSOR_KIND = "tickets"


@json_endpoint
async def list_tickets(request: Request) -> Response:
    """Tickets filtered by `repo`, `state`, `label` (repeatable: all required), `source`."""
    query = Query(request, {"repo", "state", "label", "source", "limit", "cursor"})
    repo = query.matching("repo", REPO_NAME, "OWNER/NAME, e.g. octo-org/octo-repo")
    state = query.choice("state", TICKET_STATES)
    labels = query.many("label")
    source = query.choice("source", SOURCES)
    limit = query.limit()
    after = query.cursor(CURSOR_KIND)

    statement = select(Ticket, Repository.full_name).outerjoin(
        Repository, Ticket.repository_id == Repository.id
    )
    if repo is not None:
        # Matches the functional index on lower(full_name): GitHub names are case-insensitive.
        statement = statement.where(func.lower(Repository.full_name) == repo.lower())
    if state is not None:
        statement = statement.where(Ticket.state == state)
    if labels:
        # `labels @> ARRAY[...]` is what the GIN index on the column serves.
        statement = statement.where(Ticket.labels.contains(labels))
    if source is not None:
        statement = statement.where(Ticket.source == source)
    if after is not None:
        statement = statement.where(Ticket.id < after)
    statement = statement.order_by(Ticket.id.desc()).limit(limit + 1)

    async with deps_of(request).sessions() as session:
        rows = (await session.execute(statement)).all()
    tickets, next_cursor = page(
        [(t.id, ticket_summary(t, repo_name)) for t, repo_name in rows], limit, CURSOR_KIND
    )
    return JSONResponse({"tickets": tickets, "next_cursor": next_cursor})


@json_endpoint
async def get_ticket(request: Request) -> Response:
    """One ticket with its comments (deleted ones left out), linked PRs and deliveries."""
    ticket_id = parse_id("id", request.path_params["id"])
    async with deps_of(request).sessions() as session:
        row = (
            await session.execute(
                select(Ticket, Repository.full_name)
                .outerjoin(Repository, Ticket.repository_id == Repository.id)
                .where(Ticket.id == ticket_id)
            )
        ).one_or_none()
        if row is None:
            raise ApiError(404, f"id: no ticket {ticket_id}")
        ticket, repo_name = row
        body = ticket_summary(ticket, repo_name)
        body["body"] = ticket.body
        body["comments"] = await _comments(session, ticket_id)
        body["pull_requests"] = await _pull_requests(session, ticket_id)
        deliveries = await _deliveries(session, ticket_id)
    body["deliveries"] = deliveries[:HISTORY_LIMIT]
    body["deliveries_truncated"] = len(deliveries) > HISTORY_LIMIT
    return JSONResponse(body)


def ticket_summary(ticket: Ticket, repository: str | None) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "source": ticket.source,
        "external_id": ticket.external_id,
        "key": ticket.key,
        "repository": repository,
        "number": ticket.number,
        "title": ticket.title,
        "state": ticket.state,
        "state_reason": ticket.state_reason,
        "author": ticket.author_login,
        "labels": list(ticket.labels),
        "assignees": list(ticket.assignees),
        "milestone": ticket.milestone,
        "html_url": ticket.html_url,
        "created_at": iso(ticket.external_created_at),
        "updated_at": iso(ticket.external_updated_at),
        "closed_at": iso(ticket.closed_at),
        "mirrored_at": iso(ticket.updated_at),
    }


async def _comments(session: AsyncSession, ticket_id: int) -> list[dict[str, Any]]:
    # Deleted comments are gone from the tracker too; their deletion stays visible as a
    # delivery in the ticket's history.
    comments = await session.scalars(
        select(Comment)
        .where(Comment.ticket_id == ticket_id, Comment.deleted.is_(False))
        .order_by(Comment.external_created_at.asc().nulls_last(), Comment.id)
    )
    return [
        {
            "id": c.id,
            "external_id": c.external_id,
            "author": c.author_login,
            "author_type": c.author_type,
            "body": c.body,
            "html_url": c.html_url,
            "created_at": iso(c.external_created_at),
            "updated_at": iso(c.external_updated_at),
        }
        for c in comments
    ]


async def _pull_requests(session: AsyncSession, ticket_id: int) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(PullRequest, TicketPullRequest.via, Repository.full_name)
        .join(TicketPullRequest, TicketPullRequest.pull_request_id == PullRequest.id)
        .outerjoin(Repository, PullRequest.repository_id == Repository.id)
        .where(TicketPullRequest.ticket_id == ticket_id)
        .order_by(PullRequest.id)
    )
    return [
        {
            "id": pr.id,
            "repository": repo_name,
            "number": pr.number,
            "title": pr.title,
            "state": pr.state,
            "merged": pr.merged,
            "draft": pr.draft,
            "author": pr.author_login,
            "head_ref": pr.head_ref,
            "base_ref": pr.base_ref,
            "html_url": pr.html_url,
            "merged_at": iso(pr.merged_at),
            "closed_at": iso(pr.closed_at),
            "updated_at": iso(pr.external_updated_at),
            "via": via,
        }
        for pr, via, repo_name in rows
    ]


async def _deliveries(session: AsyncSession, ticket_id: int) -> list[dict[str, Any]]:
    """The newest HISTORY_LIMIT + 1 deliveries (one extra to tell whether there are more)."""
    rows = await session.execute(
        select(
            Delivery.id,
            Delivery.delivery_id,
            Delivery.event,
            Delivery.action,
            Delivery.status,
            Delivery.received_at,
        )
        .join(DeliveryTicket, DeliveryTicket.delivery_id == Delivery.id)
        .where(DeliveryTicket.ticket_id == ticket_id)
        .order_by(Delivery.id.desc())
        .limit(HISTORY_LIMIT + 1)
    )
    return [
        {
            "id": pk,
            "delivery_id": guid,
            "event": event,
            "action": action,
            "status": status,
            "received_at": iso(received_at),
        }
        for pk, guid, event, action, status, received_at in rows
    ]
