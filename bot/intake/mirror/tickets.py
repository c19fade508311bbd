"""Tickets, their comments and labels in the mirror (GitHub issues, Linear and Jira issues).
Deleted and transferred tickets and deleted comments are tombstones: no later (older)
event brings them back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import BigInteger, and_, any_, bindparam, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.base import (
    CommentCreated,
    CommentDeleted,
    CommentEdited,
    LabelChanged,
    TicketInfo,
    TrackerLabelChanged,
)
from bot.intake.mirror.memo import in_transaction
from bot.intake.mirror.pulls import links_of_new_tickets
from bot.intake.mirror.repositories import upsert_repository
from bot.intake.upserts import not_older, upsert
from bot.tables.mirror import (
    Comment,
    Label,
    PullRequest,
    Ticket,
)
from bot.tables.plain import PlainStatement

TOMBSTONES = ("deleted", "transferred")

# What `upsert_ticket` stores of a ticket.
_TICKET_FIELDS = (
    "source",
    "external_id",
    "repository_id",
    "number",
    "key",
    "title",
    "body",
    "state",
    "state_reason",
    "author_login",
    "assignees",
    "labels",
    "milestone",
    "html_url",
    "external_created_at",
    "external_updated_at",
    "closed_at",
    "tracker",
)
_UPSERTED_TICKET = (
    upsert(
        Ticket,
        ["source", "external_id"],
        # Linear and Jira tickets name no repository: the engine routes them, and their own
        # events (and comment stubs, which carry no tracker fields) must not undo that.
        keep_when_null=["repository_id", "tracker"],
        guard=lambda t, ex: and_(
            *(t.c.state != tombstone for tombstone in TOMBSTONES),
            not_older("external_updated_at")(t, ex),
        ),
        bound=_TICKET_FIELDS,
    )
    .returning(
        Ticket.__table__.c.id,
        # Postgres' tell for "this row was inserted, not updated": only new tickets need their
        # PR links resolved here; later PR events keep the links of existing tickets current.
        literal_column("xmax = 0").label("inserted"),
    )
    .cte("upserted")
)
# The upsert and a new ticket's PR links, one statement (no row: the stored state is newer);
# on plain asyncpg, since every ingested delivery of a ticket runs it.
_UPSERT_TICKET = PlainStatement(
    select(_UPSERTED_TICKET.c.id).add_cte(links_of_new_tickets(_UPSERTED_TICKET).cte("linked"))
)
_REMOVE_TICKET = upsert(Ticket, ["source", "external_id"], update=["state"], returning="id")
_UPSERT_COMMENT = upsert(
    Comment,
    ["source", "external_id"],
    guard=lambda t, ex: and_(t.c.deleted.is_(False), not_older("external_updated_at")(t, ex)),
)
_DELETE_COMMENT = upsert(Comment, ["source", "external_id"], update=["deleted"])

_UPSERT_LABEL = upsert(Label, ["id"])
_LABELS = select(Label.id, Label.name, Label.deleted).where(
    Label.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))
)
_LABELS_KEY = "mirror_labels_known"  # labels read or written in this transaction
_TICKET_ID = select(Ticket.id).where(
    Ticket.source == bindparam("source"), Ticket.external_id == bindparam("external_id")
)


async def upsert_ticket(
    session: AsyncSession,
    ticket: TicketInfo,
    installation_id: int | None,
    *,
    removed: str | None = None,
    repo_active: bool | None = True,
) -> int:
    """Store the ticket's state unless the stored one is newer; returns the ticket's id."""
    if ticket.repo is not None:
        await upsert_repository(session, ticket.repo, installation_id, active=repo_active)
    values: dict[str, Any] = {
        "source": ticket.source,
        "external_id": ticket.external_id,
        "repository_id": ticket.repo.id if ticket.repo else None,
        "number": ticket.number,
        "key": ticket.key,
        "title": ticket.title,
        "body": ticket.body,
        "state": removed or ticket.state,
        "state_reason": ticket.state_reason,
        "author_login": ticket.author_login,
        "assignees": list(ticket.assignees),
        "labels": await _current_label_names(session, ticket),
        "milestone": ticket.milestone,
        "html_url": ticket.html_url,
        "external_created_at": ticket.created_at,
        "external_updated_at": ticket.updated_at,
        "closed_at": ticket.closed_at,
        "tracker": dict(ticket.tracker) if ticket.tracker is not None else None,
    }
    conn = await session.connection()
    # A removal is final whatever its timestamp; otherwise only a newer state is applied.
    row: Sequence[Any] | None
    if removed:
        row = (await conn.execute(_REMOVE_TICKET, values)).one_or_none()
    else:
        issue_of = ticket.repo if ticket.source == "github" else None  # PRs refer to these
        values["ref_full_name"] = issue_of.full_name.lower() if issue_of else None
        values["ref_number"] = ticket.number if issue_of else None
        upserted = await _UPSERT_TICKET.fetch(session, values)
        row = upserted[0] if upserted else None
    if row is None:  # stale: the stored row is newer; it still counts as touched
        ticket_id = (
            await conn.execute(
                _TICKET_ID, {"source": ticket.source, "external_id": ticket.external_id}
            )
        ).scalar_one()
        return int(ticket_id)
    return int(row[0])


async def _current_label_names(session: AsyncSession, ticket: TicketInfo) -> list[str]:
    """The ticket's labels under their current names: a rename or deletion we already saw
    wins over the older name a late-arriving issue event still carries."""
    if not ticket.label_ids or len(ticket.label_ids) != len(ticket.labels):
        return list(ticket.labels)
    known = await known_labels(session, ticket.label_ids)
    names = []
    for label_id, name in zip(ticket.label_ids, ticket.labels, strict=True):
        label = known.get(label_id)
        if label is None:
            names.append(name)
        elif not label[1]:  # not deleted
            names.append(label[0])
    return names


async def known_labels(
    session: AsyncSession, label_ids: Iterable[int]
) -> dict[int, tuple[str, bool] | None]:
    """The stored name and deletion of each label, None for one not stored; read once a
    transaction (a batch reads all its deliveries' labels at once: `prefetch_labels`)."""
    memo: dict[int, tuple[str, bool] | None] = in_transaction(session, _LABELS_KEY)
    missing = sorted({label_id for label_id in label_ids if label_id not in memo})
    if missing:
        conn = await session.connection()
        memo.update(dict.fromkeys(missing))
        for label in await conn.execute(_LABELS, {"ids": missing}):
            memo[label.id] = (label.name, label.deleted)
    return memo


async def prefetch_labels(session: AsyncSession, tickets: Iterable[TicketInfo]) -> None:
    """Read the labels of all these tickets in one statement (a batch about to be applied)."""
    await known_labels(session, [label for ticket in tickets for label in ticket.label_ids])


async def upsert_comment(
    session: AsyncSession,
    event: CommentCreated | CommentEdited | CommentDeleted,
    ticket_id: int,
) -> None:
    comment = event.comment
    deleted = isinstance(event, CommentDeleted)
    conn = await session.connection()
    await conn.execute(
        _DELETE_COMMENT if deleted else _UPSERT_COMMENT,
        {
            "source": comment.source,
            "external_id": comment.external_id,
            "ticket_id": ticket_id,
            "author_login": comment.author_login,
            "author_type": comment.author_type,
            "body": comment.body,
            "html_url": comment.html_url,
            "deleted": deleted,
            "external_created_at": comment.created_at,
            "external_updated_at": comment.updated_at,
        },
    )


# --- labels ---------------------------------------------------------------------------------


async def tracker_label_changed(session: AsyncSession, event: TrackerLabelChanged) -> None:
    """Rename (or drop) a Linear label on the tickets that carry it, found by its id."""
    carrying = await session.scalars(
        select(Ticket).where(
            Ticket.source == event.source,
            Ticket.tracker["label_ids"].has_key(event.label_id),
        )
    )
    for ticket in carrying:
        tracker = dict(ticket.tracker or {})
        names = dict(tracker.get("label_ids") or {})
        old = names.pop(event.label_id, None)
        if event.action == "edited":
            names[event.label_id] = event.name
        tracker["label_ids"] = names
        labels = [label for label in ticket.labels if label != old]
        if event.action == "edited":
            labels.append(event.name)
        ticket.tracker, ticket.labels = tracker, labels
    await session.flush()


async def label_changed(
    session: AsyncSession, event: LabelChanged, installation_id: int | None
) -> None:
    await upsert_repository(session, event.repo, installation_id)
    values: dict[str, Any] = {
        "id": event.label_id,
        "repository_id": event.repo.id,
        "name": event.name,
        "color": event.color,
        "description": event.description,
        "deleted": event.action == "deleted",
    }
    await (await session.connection()).execute(_UPSERT_LABEL, values)
    in_transaction(session, _LABELS_KEY)[event.label_id] = (event.name, values["deleted"])
    # GitHub sends no per-issue events when a label is renamed or deleted: apply them here.
    for model in (Ticket, PullRequest):
        if event.action == "edited" and event.old_name and event.old_name != event.name:
            new_labels = func.array_replace(model.labels, event.old_name, event.name)
        elif event.action == "deleted":
            new_labels = func.array_remove(model.labels, event.name)
        else:
            continue
        name = event.old_name if event.action == "edited" else event.name
        await session.execute(
            update(model)
            .where(model.repository_id == event.repo.id, model.labels.contains([name]))
            .values(labels=new_labels)
        )
