"""Apply normalized events to the mirror tables, idempotently and never backwards.

Every upsert is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE stored <= incoming`, so two
workers applying deliveries of one ticket in any order converge on the newest state, and a
redelivery changes nothing. Deleted and transferred tickets and deleted comments are
tombstones: no later (older) event brings them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, delete, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.base import (
    CheckRunRequested,
    ChecksCompleted,
    CommentCreated,
    CommentDeleted,
    CommentEdited,
    InstallationChanged,
    InstallationInfo,
    LabelChanged,
    LabelsChanged,
    NormalizedEvent,
    ProjectItemChanged,
    PullRequestChanged,
    PullRequestReviewed,
    RepoInfo,
    RepositoriesChanged,
    RepositoryChanged,
    ReviewCommented,
    StatusChanged,
    TicketInfo,
    TicketRemoved,
    TicketUpserted,
    TrackerLabelChanged,
)
from bot.intake.upserts import not_older, upsert
from bot.tables.mirror import (
    Comment,
    Installation,
    Label,
    PullRequest,
    PullRequestRef,
    Repository,
    Ticket,
    TicketPullRequest,
)

if TYPE_CHECKING:
    from bot.deps import Deps

TOMBSTONES = ("deleted", "transferred")


@dataclass
class Applied:
    """What applying a delivery did: tickets it touched, repositories to backfill after commit."""

    tickets: set[int] = field(default_factory=set)
    backfill: set[int] = field(default_factory=set)

    def __iter__(self) -> Any:  # iterating yields the touched tickets, the common question
        return iter(sorted(self.tickets))


# --- statements ---------------------------------------------------------------------------

# What a repository event can tell us; the URLs and installation may be missing (kept then).
_REPOSITORY_FIELDS = (
    "full_name",
    "private",
    "active",
    "default_branch",
    "clone_url",
    "html_url",
    "installation_id",
)
_UPSERT_REPOSITORY = upsert(
    Repository,
    ["id"],
    update=_REPOSITORY_FIELDS,
    keep_when_null=["default_branch", "clone_url", "html_url", "installation_id"],
)
_SELECT_REPOSITORY = select(
    *(Repository.__table__.c[name] for name in ("id", *_REPOSITORY_FIELDS))
).where(Repository.id == bindparam("id"))
_ENSURE_INSTALLATION = (
    insert(Installation)
    .values(account_login="", account_type="")
    .on_conflict_do_nothing(index_elements=[Installation.id])
)
_UPSERT_INSTALLATION = upsert(
    Installation,
    ["id"],
    update=[
        "account_login",
        "account_type",
        "repository_selection",
        "suspended",
        "external_updated_at",
        "deleted",
    ],
    guard=not_older("external_updated_at"),
    returning="id",
)
_UPSERT_TICKET = upsert(
    Ticket,
    ["source", "external_id"],
    # Linear and Jira tickets name no repository: the engine routes them, and their own
    # events (and comment stubs, which carry no tracker fields) must not undo that.
    keep_when_null=["repository_id", "tracker"],
    guard=lambda t, ex: and_(t.c.state.not_in(TOMBSTONES), not_older("external_updated_at")(t, ex)),
).returning(
    Ticket.__table__.c.id,
    # Postgres' tell for "this row was inserted, not updated": only new tickets need their
    # PR links resolved here; later PR events keep the links of existing tickets current.
    literal_column("xmax = 0").label("inserted"),
)
_REMOVE_TICKET = upsert(Ticket, ["source", "external_id"], update=["state"], returning="id")
_UPSERT_COMMENT = upsert(
    Comment,
    ["source", "external_id"],
    guard=lambda t, ex: and_(t.c.deleted.is_(False), not_older("external_updated_at")(t, ex)),
)
_DELETE_COMMENT = upsert(Comment, ["source", "external_id"], update=["deleted"])
_UPSERT_PULL_REQUEST = upsert(
    PullRequest, ["id"], guard=not_older("external_updated_at"), returning="id"
)
_UPSERT_LABEL = upsert(Label, ["id"])


async def apply(
    session: AsyncSession,
    events: Sequence[NormalizedEvent],
    *,
    deps: Deps | None = None,
    installation_id: int | None = None,
) -> Applied:
    """Apply `events` inside the caller's transaction."""
    applied = Applied()
    for event in events:
        match event:
            case InstallationChanged():
                await _installation_changed(session, event, applied)
            case RepositoriesChanged():
                await _repositories_changed(session, event, applied)
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
                await _upsert_comment(session, event, ticket_id)
                applied.tickets.add(ticket_id)
            case PullRequestChanged():
                applied.tickets |= await upsert_pull_request(session, event, installation_id)
            case LabelChanged():
                await _label_changed(session, event, installation_id)
            case StatusChanged():
                pass  # the engine's input; the ticket's state came with its TicketUpserted
            case TrackerLabelChanged():
                await _tracker_label_changed(session, event)
            case LabelsChanged():
                pass  # the engine's trigger; the ticket's labels came with its TicketUpserted
            case PullRequestReviewed() | ReviewCommented():
                # A review carries the PR's current state: store it like a pull_request event.
                applied.tickets |= await upsert_pull_request(
                    session, _reviewed_pull_request(event), installation_id
                )
            case CheckRunRequested() | ChecksCompleted() | ProjectItemChanged():
                pass  # the engine's input; the mirror keeps no checks or project boards
    return applied


# --- repositories and installations -------------------------------------------------------


async def upsert_repository(
    session: AsyncSession,
    repo: RepoInfo,
    installation_id: int | None,
    *,
    active: bool | None = True,
) -> None:
    """Insert or refresh a repository; fields the event does not carry are left alone.

    `active=None`: a repository we only hear of in passing (an issue transferred there);
    stored as inactive if new, otherwise left as it is.

    Most events repeat what is stored; those skip the write, because an upsert locks the
    row until commit and would serialise every concurrent ingest of the repository.
    """
    conn = await session.connection()
    if active is None:
        await conn.execute(
            insert(Repository)
            .values(
                id=repo.id,
                full_name=repo.full_name,
                private=repo.private,
                default_branch=repo.default_branch,
                clone_url=repo.clone_url,
                html_url=repo.html_url,
                active=False,
            )
            .on_conflict_do_nothing(index_elements=[Repository.id])
        )
        return
    values: dict[str, Any] = {
        "id": repo.id,
        "full_name": repo.full_name,
        "private": repo.private,
        "active": active,
        "default_branch": repo.default_branch,
        "clone_url": repo.clone_url,
        "html_url": repo.html_url,
        "installation_id": installation_id,
    }
    stored = (await conn.execute(_SELECT_REPOSITORY, {"id": repo.id})).mappings().one_or_none()
    if stored is not None and all(
        value is None or stored[name] == value for name, value in values.items()
    ):
        return
    if installation_id is not None:
        await conn.execute(_ENSURE_INSTALLATION, {"id": installation_id})
    await conn.execute(_UPSERT_REPOSITORY, values)


async def _upsert_installation(
    session: AsyncSession,
    info: InstallationInfo,
    *,
    deleted: bool = False,
    suspended: bool | None = None,
) -> bool:
    """Store the installation's state; False when the stored state is newer."""
    conn = await session.connection()
    result = await conn.execute(
        _UPSERT_INSTALLATION,
        {
            "id": info.id,
            "account_login": info.account_login,
            "account_type": info.account_type,
            "repository_selection": info.repository_selection,
            "suspended": info.suspended if suspended is None else suspended,
            "external_updated_at": info.updated_at,
            "deleted": deleted,
        },
    )
    return result.scalar_one_or_none() is not None


async def _installation_changed(
    session: AsyncSession, event: InstallationChanged, applied: Applied
) -> None:
    inst = event.installation
    suspended = event.action == "suspend" if event.action in ("suspend", "unsuspend") else None
    if not await _upsert_installation(
        session, inst, deleted=event.action == "deleted", suspended=suspended
    ):
        return
    for repo in event.repositories or ():
        await upsert_repository(session, repo, inst.id, active=event.action != "deleted")
        if event.action == "created":
            applied.backfill.add(repo.id)
    if event.action == "deleted":
        await session.execute(
            update(Repository).where(Repository.installation_id == inst.id).values(active=False)
        )


async def _repositories_changed(
    session: AsyncSession, event: RepositoriesChanged, applied: Applied
) -> None:
    await _upsert_installation(session, event.installation)
    for repo in event.added:
        await upsert_repository(session, repo, event.installation.id)
        applied.backfill.add(repo.id)
    for repo in event.removed:
        await upsert_repository(session, repo, event.installation.id, active=False)


# --- tickets and comments -----------------------------------------------------------------


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
    statement = _REMOVE_TICKET if removed else _UPSERT_TICKET
    row = (await conn.execute(statement, values)).one_or_none()
    if row is None:  # stale: the stored row is newer; it still counts as touched
        ticket_id = (
            await conn.execute(
                select(Ticket.id).where(
                    Ticket.source == ticket.source, Ticket.external_id == ticket.external_id
                )
            )
        ).scalar_one()
        return int(ticket_id)
    inserted = getattr(row, "inserted", False)
    if inserted and ticket.repo is not None and ticket.number is not None:
        await _link_refs_to_ticket(session, row.id, ticket.repo.full_name, ticket.number)
    return int(row.id)


async def _current_label_names(session: AsyncSession, ticket: TicketInfo) -> list[str]:
    """The ticket's labels under their current names: a rename or deletion we already saw
    wins over the older name a late-arriving issue event still carries."""
    if not ticket.label_ids or len(ticket.label_ids) != len(ticket.labels):
        return list(ticket.labels)
    rows = await session.execute(select(Label).where(Label.id.in_(ticket.label_ids)))
    known = {label.id: label for label in rows.scalars()}
    names = []
    for label_id, name in zip(ticket.label_ids, ticket.labels, strict=True):
        label = known.get(label_id)
        if label is None:
            names.append(name)
        elif not label.deleted:
            names.append(label.name)
    return names


async def _upsert_comment(
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


# --- pull requests ------------------------------------------------------------------------


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


def _reviewed_pull_request(event: PullRequestReviewed | ReviewCommented) -> PullRequestChanged:
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


async def _link_refs_to_ticket(
    session: AsyncSession, ticket_id: int, full_name: str, number: int
) -> None:
    """PRs that referred to this ticket before it was mirrored get linked now."""
    await _materialise_links(
        session,
        and_(PullRequestRef.full_name == full_name.lower(), PullRequestRef.number == number),
    )


async def _materialise_links(session: AsyncSession, which_refs: Any) -> None:
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
    await session.execute(
        insert(TicketPullRequest)
        .from_select(["ticket_id", "pull_request_id", "via"], source)
        .on_conflict_do_nothing()
    )


# --- labels ---------------------------------------------------------------------------------


async def _tracker_label_changed(session: AsyncSession, event: TrackerLabelChanged) -> None:
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


async def _label_changed(
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
