"""Pull requests in the mirror, and which tickets each one is for: its closing keywords
("Closes #12") and its branch name, linked as soon as both the PR and the ticket are known."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Executable, and_, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert
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


async def link_refs_to_ticket(
    session: AsyncSession, ticket_id: int, full_name: str, number: int
) -> None:
    """PRs that referred to this ticket before it was mirrored get linked now."""
    conn = await session.connection()
    await conn.execute(_LINK_REFS_TO_TICKET, {"full_name": full_name.lower(), "number": number})


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


# Every new ticket runs it: built once, so SQLAlchemy compiles it once (bot/intake/upserts.py).
_LINK_REFS_TO_TICKET = _links_from(
    and_(
        PullRequestRef.full_name == bindparam("full_name"),
        PullRequestRef.number == bindparam("number"),
    )
)
