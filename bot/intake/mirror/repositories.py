"""Repositories and installations in the mirror: what GitHub says about them, the newest wins."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.base import (
    InstallationChanged,
    InstallationInfo,
    RepoInfo,
    RepositoriesChanged,
)
from bot.intake.mirror.applied import Applied
from bot.intake.mirror.memo import forget, in_transaction
from bot.intake.upserts import not_older, upsert
from bot.tables.mirror import (
    Installation,
    Repository,
)

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
_SEEN_KEY = "mirror_repositories_seen"
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
    row until commit and would serialise every concurrent ingest of the repository. In a
    batch of deliveries (one transaction), a repository already stored or checked with the
    same values is not even read again.
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
    # Repositories stored or checked in this transaction, with the values checked.
    seen: dict[int, tuple[Any, ...]] = in_transaction(session, _SEEN_KEY)
    known = tuple(values.values())
    if seen.get(repo.id) == known:
        return
    stored = (await conn.execute(_SELECT_REPOSITORY, {"id": repo.id})).mappings().one_or_none()
    if stored is None or not all(
        value is None or stored[name] == value for name, value in values.items()
    ):
        if installation_id is not None:
            await conn.execute(_ENSURE_INSTALLATION, {"id": installation_id})
        await conn.execute(_UPSERT_REPOSITORY, values)
    seen[repo.id] = known


async def upsert_installation(
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


async def installation_changed(
    session: AsyncSession, event: InstallationChanged, applied: Applied
) -> None:
    forget(session, _SEEN_KEY)  # repositories change beside upsert_repository
    inst = event.installation
    suspended = event.action == "suspend" if event.action in ("suspend", "unsuspend") else None
    if not await upsert_installation(
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


async def repositories_changed(
    session: AsyncSession, event: RepositoriesChanged, applied: Applied
) -> None:
    forget(session, _SEEN_KEY)  # repositories change beside upsert_repository
    await upsert_installation(session, event.installation)
    for repo in event.added:
        await upsert_repository(session, repo, event.installation.id)
        applied.backfill.add(repo.id)
    for repo in event.removed:
        await upsert_repository(session, repo, event.installation.id, active=False)
