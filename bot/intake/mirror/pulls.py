"""Pull requests in the mirror, and which tickets each one is for: its closing keywords
("Closes #12") and its branch name, linked as soon as both the PR and the ticket are known."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Executable,
    Integer,
    String,
    and_,
    bindparam,
    delete,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.base import (
    PullRequestChanged,
    PullRequestReviewed,
    ReviewCommented,
)
from bot.intake.mirror.repositories import upsert_repository
from bot.intake.upserts import not_older, upsert
from bot.tables.mirror import (
    PullRequest,
    PullRequestRef,
    Repository,
    Ticket,
    TicketPullRequest,
)

_UPSERT_PULL_REQUEST = upsert(
    PullRequest, ["id"], guard=not_older("external_updated_at"), returning="id"
)


async def upsert_pull_request(
    session: AsyncSession, event: PullRequestChanged, installation_id: int | None
) -> set[int]:
    """Store the PR unless stale, refresh its references; returns the tickets it is linked to."""
    pr = event.pull_request
    await upsert_repository(session, pr.repo, installation_id)
    values: dict[str, Any] = {
        "id": pr.id,
        "repository_id": pr.repo.id,
        "number": pr.number,
        "title": pr.title,
        "body": pr.body,
        "state": pr.state,
        "merged": pr.merged,
        "draft": pr.draft,
        "author_login": pr.author_login,
        "head_ref": pr.head_ref,
        "head_sha": pr.head_sha,
        "base_ref": pr.base_ref,
        "labels": list(pr.labels),
        "html_url": pr.html_url,
        "merged_at": pr.merged_at,
        "closed_at": pr.closed_at,
        "external_updated_at": pr.updated_at,
    }
    result = await (await session.connection()).execute(_UPSERT_PULL_REQUEST, values)
    if result.scalar_one_or_none() is not None:
        await _replace_refs(session, event)
    linked = await session.execute(
        select(TicketPullRequest.ticket_id).where(TicketPullRequest.pull_request_id == pr.id)
    )
    return set(linked.scalars())


def reviewed_pull_request(event: PullRequestReviewed | ReviewCommented) -> PullRequestChanged:
    """The PR state a review event carries, as the event that stores PRs has it."""
    action = (
        f"review_{event.action}" if isinstance(event, PullRequestReviewed) else "review_comment"
    )
    return PullRequestChanged(
        action=action,
        pull_request=event.pull_request,
        closing_refs=event.closing_refs,
        branch_ref=event.branch_ref,
    )


async def _replace_refs(session: AsyncSession, event: PullRequestChanged) -> None:
    pr = event.pull_request
    refs = {(ref.full_name.lower(), ref.number, "closing_keyword") for ref in event.closing_refs}
    if event.branch_ref is not None:
        refs.add((event.branch_ref.full_name.lower(), event.branch_ref.number, "branch"))
    await session.execute(delete(PullRequestRef).where(PullRequestRef.pull_request_id == pr.id))
    await session.execute(
        delete(TicketPullRequest).where(TicketPullRequest.pull_request_id == pr.id)
    )
    if not refs:
        return
    await session.execute(
        insert(PullRequestRef).values(
            [
                {"pull_request_id": pr.id, "full_name": name, "number": number, "via": via}
                for name, number, via in sorted(refs)
            ]
        )
    )
    await _materialise_links(session, PullRequestRef.pull_request_id == pr.id)


async def _materialise_links(session: AsyncSession, which_refs: ColumnElement[bool]) -> None:
    await session.execute(_links_from(which_refs))


def _links_from(which_refs: ColumnElement[bool]) -> Executable:
    """Link each ticket to the PRs whose `which_refs` name it."""
    source = (
        select(Ticket.id, PullRequestRef.pull_request_id, func.min(PullRequestRef.via))
        .join(Repository, Repository.id == Ticket.repository_id)
        .join(
            PullRequestRef,
            and_(
                func.lower(Repository.full_name) == PullRequestRef.full_name,
                Ticket.number == PullRequestRef.number,
            ),
        )
        .where(which_refs, Ticket.source == "github")
        .group_by(Ticket.id, PullRequestRef.pull_request_id)
    )
    return (
        insert(TicketPullRequest)
        .from_select(["ticket_id", "pull_request_id", "via"], source)
        .on_conflict_do_nothing()
    )


def links_of_new_tickets(upserted: CTE) -> Insert:
    """Link each ticket `upserted` inserted (columns `id`, `inserted`) to the PRs that referred
    to it before it was mirrored: the references naming `ref_full_name` (lowercase) and
    `ref_number`, bound by the caller (NULL for a ticket that is not a GitHub issue).

    A part of the ticket's own upsert (a CTE), so a new ticket costs no second round trip; it
    reads only the references' index, since the ticket is known. (As `_links_from` for the
    ticket's name and number it joined the tickets table: a connection's generic plan, made
    while that table was nearly empty, scanned all of it, 1.7 ms of PostgreSQL a new ticket.)
    """
    ref = PullRequestRef.__table__.c
    return (
        insert(TicketPullRequest)
        .from_select(
            ["ticket_id", "pull_request_id", "via"],
            select(upserted.c.id, ref.pull_request_id, func.min(ref.via))
            .join(
                PullRequestRef,
                and_(
                    ref.full_name == bindparam("ref_full_name", type_=String),
                    ref.number == bindparam("ref_number", type_=Integer),
                ),
            )
            .where(upserted.c.inserted)
            .group_by(upserted.c.id, ref.pull_request_id),
        )
        .on_conflict_do_nothing()
    )
