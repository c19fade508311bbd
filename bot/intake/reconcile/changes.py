"""One issue or pull request read back from its tracker, applied as the webhooks it missed
would have been.

The mirror's row is locked and compared first: what is not newer than the row was seen
already (through a webhook, or an earlier pass) and changes nothing, so reading it again
costs no reaction and no side effect. What is newer becomes the normalized events a webhook
would have carried for the difference (closed, reopened, labels added or removed, a
status moved, a pull request merged or pushed to), which the mirror applies and the engine
decides on in one transaction, exactly as ingest does with a delivery.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.base import (
    LabelsChanged,
    NormalizedEvent,
    PullRequestChanged,
    StatusChanged,
    TicketInfo,
    TicketUpserted,
)
from bot.deps import AfterCommit, Deps
from bot.intake import mirror
from bot.intake.mirror.tickets import TOMBSTONES
from bot.tables.mirror import PullRequest, Ticket
from harness_store.db import transaction

# The action of an upsert the engine has nothing to decide on (the ticket changed in ways
# it does not follow: a comment, an assignee); the mirror stores it all the same.
QUIET = "reconciled"
# The action of an item as a pass read it, before it is compared with the mirror.
READ_BACK = "reconcile"

Change = TicketUpserted | PullRequestChanged


@dataclass(frozen=True)
class _Stored:
    """What the mirror held of a ticket before the change."""

    state: str
    labels: list[str]
    title: str
    body: str
    tracker: dict[str, Any] | None
    updated_at: datetime | None


async def apply_change(deps: Deps, change: Change, installation_id: int | None) -> bool:
    """Apply one item read back; True when it was newer than the mirror (a change)."""
    after: AfterCommit | None = None
    async with transaction(deps.sessions) as session:
        events = await _events_for(session, change)
        if not events:
            return False
        await mirror.apply(session, events, installation_id=installation_id)
        if deps.workflow is not None:
            after = await deps.workflow.react(session, events, installation_id)
    if after is not None:
        await after()
    return True


def updated_at(change: Change) -> datetime | None:
    if isinstance(change, TicketUpserted):
        return change.ticket.updated_at
    return change.pull_request.updated_at


async def _events_for(session: AsyncSession, change: Change) -> list[NormalizedEvent]:
    if isinstance(change, PullRequestChanged):
        return await _pull_request_events(session, change)
    ticket = change.ticket
    row = (
        await session.execute(
            select(
                Ticket.state,
                Ticket.labels,
                Ticket.title,
                Ticket.body,
                Ticket.tracker,
                Ticket.external_updated_at,
            )
            .where(Ticket.source == ticket.source, Ticket.external_id == ticket.external_id)
            .with_for_update()
        )
    ).one_or_none()
    stored = _Stored(*row) if row is not None else None
    if stored is not None and (
        stored.state in TOMBSTONES or not _newer(ticket.updated_at, stored.updated_at)
    ):
        return []
    if stored is None:
        return _new_ticket_events(ticket)
    if ticket.source == "linear":
        return _linear_events(stored, ticket)
    if ticket.source == "jira":
        return _jira_events(stored, ticket)
    return _github_events(stored, ticket)


def _newer(incoming: datetime | None, stored: datetime | None) -> bool:
    """Whether the tracker's state is newer than the mirror's (unknown times: not newer,
    so nothing is decided on a guess)."""
    return incoming is not None and (stored is None or incoming > stored)


def _new_ticket_events(ticket: TicketInfo) -> list[NormalizedEvent]:
    """A ticket the mirror never heard of: opened while nobody listened. A closed one is
    only history to store."""
    if ticket.state != "open":
        return [TicketUpserted(ticket, QUIET)]
    events: list[NormalizedEvent] = [TicketUpserted(ticket, "opened")]
    if ticket.source == "github" and ticket.labels:
        # GitHub follows `opened` with a `labeled` for each label an issue was opened with.
        events.append(LabelsChanged(ticket, added=ticket.labels))
    return events


def _github_events(stored: _Stored, ticket: TicketInfo) -> list[NormalizedEvent]:
    if stored.state != ticket.state:
        action = "closed" if ticket.state == "closed" else "reopened"
    else:
        action = _edited_or_quiet(stored, ticket)
    events: list[NormalizedEvent] = [TicketUpserted(ticket, action)]
    added, removed = _label_changes(stored.labels, ticket.labels)
    if added or removed:
        events.append(LabelsChanged(ticket, added=added, removed=removed))
    return events


def _linear_events(stored: _Stored, ticket: TicketInfo) -> list[NormalizedEvent]:
    """As Linear's `update` webhook has it: a moved state (closing, if it closes), and the
    labels added (Linear's webhook names no removed ones either)."""
    before, after = stored.tracker or {}, ticket.tracker or {}
    moved = before.get("state_id") != after.get("state_id")
    events = _moved_events(stored, ticket, moved, before.get("state_name"), after.get("state_name"))
    known = before.get("label_ids") or {}
    labels = after.get("label_ids") or {}
    added = tuple(name for label_id, name in labels.items() if label_id not in known)
    if added:
        events.append(LabelsChanged(ticket, added=added))
    return events


def _jira_events(stored: _Stored, ticket: TicketInfo) -> list[NormalizedEvent]:
    """As Jira's `jira:issue_updated` changelog has it: the status moved, labels changed."""
    before = (stored.tracker or {}).get("status")
    after = (ticket.tracker or {}).get("status")
    events = _moved_events(stored, ticket, before != after, before, after)
    added, removed = _label_changes(stored.labels, ticket.labels)
    if added or removed:
        events.append(LabelsChanged(ticket, added=added, removed=removed))
    return events


def _moved_events(
    stored: _Stored, ticket: TicketInfo, moved: bool, before: Any, after: Any
) -> list[NormalizedEvent]:
    if moved:
        action = "closed" if ticket.state == "closed" and stored.state != "closed" else "edited"
    else:
        action = _edited_or_quiet(stored, ticket)
    events: list[NormalizedEvent] = [TicketUpserted(ticket, action)]
    if moved and isinstance(after, str):
        from_status = before if isinstance(before, str) else None
        events.append(StatusChanged(ticket, from_status=from_status, to_status=after))
    return events


def _edited_or_quiet(stored: _Stored, ticket: TicketInfo) -> str:
    return "edited" if (stored.title, stored.body) != (ticket.title, ticket.body) else QUIET


def _label_changes(
    before: list[str], after: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Labels added and removed (trackers compare label names without case)."""
    had = {label.casefold() for label in before}
    has = {label.casefold() for label in after}
    added = tuple(label for label in after if label.casefold() not in had)
    removed = tuple(label for label in before if label.casefold() not in has)
    return added, removed


async def _pull_request_events(
    session: AsyncSession, change: PullRequestChanged
) -> list[NormalizedEvent]:
    pr = change.pull_request
    row = (
        await session.execute(
            select(PullRequest.state, PullRequest.head_sha, PullRequest.external_updated_at)
            .where(PullRequest.id == pr.id)
            .with_for_update()
        )
    ).one_or_none()
    if row is None:
        # Opened (and perhaps merged) while nobody listened: `closed` finishes its tickets.
        return [replace(change, action="opened" if pr.state == "open" else "closed")]
    state, head_sha, stored_at = row
    if not _newer(pr.updated_at, stored_at):
        return []
    if state != pr.state:
        action = "closed" if pr.state == "closed" else "reopened"
    elif pr.state == "open" and pr.head_sha and pr.head_sha != head_sha:
        action = "synchronize"  # pushed to: a human's commits re-run the gates
    else:
        action = "edited"
    return [replace(change, action=action)]
