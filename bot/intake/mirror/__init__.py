"""Apply normalized events to the mirror tables, idempotently and never backwards.

Every upsert is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE stored <= incoming`, so two
workers applying deliveries of one ticket in any order converge on the newest state, and a
redelivery changes nothing. Deleted and transferred tickets and deleted comments are
tombstones: no later (older) event brings them back. `apply` hands each event to the
module of what it is about: repositories, tickets (with comments and labels), pull requests.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from adapters.base import (
    CheckRunRequested,
    ChecksCompleted,
    CommentCreated,
    CommentDeleted,
    CommentEdited,
    InstallationChanged,
    LabelChanged,
    LabelsChanged,
    NormalizedEvent,
    ProjectItemChanged,
    PullRequestChanged,
    PullRequestReviewed,
    RepositoriesChanged,
    RepositoryChanged,
    ReviewCommented,
    StatusChanged,
    TicketRemoved,
    TicketUpserted,
    TrackerLabelChanged,
)
from bot.intake.mirror.applied import Applied
from bot.intake.mirror.pulls import reviewed_pull_request, upsert_pull_request
from bot.intake.mirror.repositories import (
    installation_changed,
    repositories_changed,
    upsert_repository,
)
from bot.intake.mirror.tickets import (
    label_changed,
    prefetch_labels,
    tracker_label_changed,
    upsert_comment,
    upsert_ticket,
)

__all__ = ["Applied", "apply", "prefetch"]


async def prefetch(session: AsyncSession, events: Sequence[NormalizedEvent]) -> None:
    """Read at once what applying these events (a batch's, in order) reads of each: the
    labels of their tickets."""
    tickets = [
        event.ticket
        for event in events
        if isinstance(
            event,
            TicketUpserted | TicketRemoved | CommentCreated | CommentEdited | CommentDeleted,
        )
    ]
    await prefetch_labels(session, tickets)


async def apply(
    session: AsyncSession,
    events: Sequence[NormalizedEvent],
    *,
    installation_id: int | None = None,
) -> Applied:
    """Apply `events` inside the caller's transaction."""
    applied = Applied()
    for event in events:
        match event:
            case InstallationChanged():
                await installation_changed(session, event, applied)
            case RepositoriesChanged():
                await repositories_changed(session, event, applied)
            case RepositoryChanged():
                await upsert_repository(
                    session, event.repo, event.installation_id, active=not event.deleted
                )
            case TicketUpserted():
                applied.tickets.add(await upsert_ticket(session, event.ticket, installation_id))
            case TicketRemoved():
                applied.tickets.add(
                    await upsert_ticket(
                        session, event.ticket, installation_id, removed=event.reason
                    )
                )
                if event.moved_to is not None:
                    # Its new repository may be one the App cannot see: note it, not as ours.
                    moved = await upsert_ticket(session, event.moved_to, None, repo_active=None)
                    applied.tickets.add(moved)
            case CommentCreated() | CommentEdited() | CommentDeleted():
                ticket_id = await upsert_ticket(session, event.ticket, installation_id)
                await upsert_comment(session, event, ticket_id)
                applied.tickets.add(ticket_id)
            case PullRequestChanged():
                applied.tickets |= await upsert_pull_request(session, event, installation_id)
            case LabelChanged():
                await label_changed(session, event, installation_id)
            case StatusChanged():
                pass  # the engine's input; the ticket's state came with its TicketUpserted
            case TrackerLabelChanged():
                await tracker_label_changed(session, event)
            case LabelsChanged():
                pass  # the engine's trigger; the ticket's labels came with its TicketUpserted
            case PullRequestReviewed() | ReviewCommented():
                # A review carries the PR's current state: store it like a pull_request event.
                applied.tickets |= await upsert_pull_request(
                    session, reviewed_pull_request(event), installation_id
                )
            case CheckRunRequested() | ChecksCompleted() | ProjectItemChanged():
                pass  # the engine's input; the mirror keeps no checks or project boards
    return applied
