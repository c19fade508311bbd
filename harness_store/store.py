"""Queries over the harness store. Every function takes an `AsyncSession`; callers own the
transaction (nothing here commits).

Publishing takes a per-name transaction-scoped advisory lock, so two publishers of one name
queue up instead of racing for the next number; the unique (name, version) constraint is
the backstop that turns any race the lock cannot see into `PublishConflict`.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import column, exists, func, select, table
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from harness_store.errors import (
    InvalidHarness,
    NameNotFound,
    PublishConflict,
    RenderError,
    TicketNotFound,
    VersionNotFound,
)
from harness_store.models import (
    HarnessVersion,
    RunVersions,
    SkillVersion,
    TicketHarnessPin,
)
from harness_store.names import Kind, validate_name
from harness_store.render import check_template
from harness_store.skills import files_hash, validate_skill

V = TypeVar("V", HarnessVersion, SkillVersion)

MAX_HARNESS_CHARS = 128 * 1024
MODELS: Mapping[Kind, type[HarnessVersion] | type[SkillVersion]] = {
    "harness": HarnessVersion,
    "skill": SkillVersion,
}
# The control plane's table, named only: this package never imports `bot`.
_tickets = table("tickets", column("id"))


@dataclass(frozen=True)
class NameSummary:
    """One harness or skill name in a listing."""

    name: str
    current_version: int
    versions: int
    updated_at: datetime


def text_hash(text: str) -> str:
    """sha256 of a harness text (UTF-8), hex."""
    return hashlib.sha256(text.encode()).hexdigest()


def normalize_harness(name: str, content: str) -> str:
    """Check harness text and return it as stored (LF line endings)."""
    validate_name("harness", name)
    if not isinstance(content, str) or not content.strip():
        raise InvalidHarness(f"harness {name!r} is empty")
    if "\x00" in content:
        raise InvalidHarness(f"harness {name!r} contains a NUL byte")
    content = content.replace("\r\n", "\n")
    if len(content) > MAX_HARNESS_CHARS:
        raise InvalidHarness(
            f"harness {name!r} is {len(content)} characters; the limit is {MAX_HARNESS_CHARS}"
        )
    try:
        check_template(content)
    except RenderError as error:
        raise InvalidHarness(f"harness {name!r} is not a valid template: {error}") from error
    return content


def _check_author(author: str) -> str:
    if not isinstance(author, str) or not author.strip():
        raise ValueError("a version needs an author")
    return author.strip()[:200]


async def publish_harness(
    session: AsyncSession,
    name: str,
    content: str,
    *,
    author: str,
    message: str = "",
    if_absent: bool = False,
) -> HarnessVersion:
    """Store `content` as the next version of harness `name`, or return the current one if
    the content is unchanged (or, with `if_absent`, if any version exists)."""
    content = normalize_harness(name, content)
    return await _publish(
        session,
        HarnessVersion,
        name,
        {"content": content},
        text_hash(content),
        author,
        message,
        if_absent=if_absent,
    )


async def publish_skill(
    session: AsyncSession,
    name: str,
    files: Mapping[str, str],
    *,
    author: str,
    message: str = "",
    if_absent: bool = False,
) -> SkillVersion:
    """Store a skill folder as the next version of `name`, or return the current one if no
    file changed (or, with `if_absent`, if any version exists)."""
    files = validate_skill(name, files)
    return await _publish(
        session,
        SkillVersion,
        name,
        {"files": files},
        files_hash(files),
        author,
        message,
        if_absent=if_absent,
    )


async def _lock(session: AsyncSession, model: type[V], name: str) -> None:
    key = f"openase:{model.__tablename__}:{name}"
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


async def _publish(
    session: AsyncSession,
    model: type[V],
    name: str,
    fields: dict[str, Any],
    content_hash: str,
    author: str,
    message: str,
    *,
    if_absent: bool,
) -> V:
    author = _check_author(author)
    await _lock(session, model, name)
    latest = await current(session, model, name)
    if latest is not None and (if_absent or latest.content_hash == content_hash):
        return latest
    row = model(
        name=name,
        version=1 if latest is None else latest.version + 1,
        content_hash=content_hash,
        author=author,
        message=message,
        **fields,
    )
    try:
        async with session.begin_nested():
            session.add(row)
    except IntegrityError as error:
        raise PublishConflict(
            f"{model.kind} {name!r} version {row.version} was published concurrently;"
            " retry the transaction"
        ) from error
    return row


async def current(session: AsyncSession, model: type[V], name: str) -> V | None:
    """The newest version of `name`, or None when there is none."""
    query = select(model).where(model.name == name).order_by(model.version.desc()).limit(1)
    return (await session.execute(query)).scalar_one_or_none()


async def require_current(session: AsyncSession, model: type[V], name: str) -> V:
    """The newest version of `name`; `NameNotFound` when there is none."""
    found = await current(session, model, name)
    if found is None:
        raise NameNotFound(f"no {model.kind} named {name!r}")
    return found


async def get_version(session: AsyncSession, model: type[V], name: str, version: int) -> V:
    """Version `version` of `name`; `NameNotFound` or `VersionNotFound` otherwise."""
    query = select(model).where(model.name == name, model.version == version)
    found = (await session.execute(query)).scalar_one_or_none()
    if found is None:
        latest = await require_current(session, model, name)
        raise VersionNotFound(
            f"{model.kind} {name!r} has no version {version} (versions 1 to {latest.version})"
        )
    return found


async def get_by_id(session: AsyncSession, model: type[V], version_id: int) -> V:
    """A version by its row id (as recorded for runs)."""
    found = await session.get(model, version_id)
    if found is None:
        raise VersionNotFound(f"no {model.kind} version with id {version_id}")
    return found


async def list_names(session: AsyncSession, model: type[V]) -> list[NameSummary]:
    """Every name with its current version number, how many versions, and when it changed."""
    query = (
        select(
            model.name,
            func.max(model.version),
            func.count(),
            func.max(model.created_at),
        )
        .group_by(model.name)
        .order_by(model.name)
    )
    return [
        NameSummary(name=name, current_version=latest, versions=count, updated_at=updated)
        for name, latest, count, updated in await session.execute(query)
    ]


async def list_versions(session: AsyncSession, model: type[V], name: str) -> list[V]:
    """All versions of `name`, newest first (empty when the name is unknown)."""
    query = select(model).where(model.name == name).order_by(model.version.desc())
    return list((await session.execute(query)).scalars())


def diff_text(old: str, new: str, *, old_label: str, new_label: str) -> str:
    """A unified diff (empty when equal), marking a missing final newline as git does."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=old_label,
        tofile=new_label,
    )
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def diff_files(
    old: Mapping[str, str], new: Mapping[str, str], *, old_label: str, new_label: str
) -> str:
    """Unified diffs per file of two skill folders, by path; added and removed files against
    /dev/null."""
    parts = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        parts.append(
            diff_text(
                before or "",
                after or "",
                old_label="/dev/null" if before is None else f"{old_label}/{path}",
                new_label="/dev/null" if after is None else f"{new_label}/{path}",
            )
        )
    return "".join(parts)


def diff_rows(old: V, new: V) -> str:
    """The diff from one stored version to another."""
    if isinstance(old, HarnessVersion) and isinstance(new, HarnessVersion):
        return diff_text(old.content, new.content, old_label=old.label, new_label=new.label)
    if isinstance(old, SkillVersion) and isinstance(new, SkillVersion):
        return diff_files(old.files, new.files, old_label=old.label, new_label=new.label)
    raise TypeError("cannot diff a harness against a skill")


async def diff_versions(
    session: AsyncSession, model: type[V], name: str, old: int, new: int
) -> str:
    """Unified diff from version `old` to version `new` of `name` (per file for skills)."""
    return diff_rows(
        await get_version(session, model, name, old), await get_version(session, model, name, new)
    )


async def rollback(
    session: AsyncSession, model: type[V], name: str, to_version: int, *, author: str
) -> V:
    """Publish a new version equal to `to_version` (returns the current one if it already is)."""
    target = await get_version(session, model, name, to_version)
    fields: dict[str, Any] = (
        {"content": target.content}
        if isinstance(target, HarnessVersion)
        else {"files": target.files}
    )
    message = f"roll back to version {to_version}"
    return await _publish(
        session, model, name, fields, target.content_hash, author, message, if_absent=False
    )


async def _require_ticket(session: AsyncSession, ticket_id: int) -> None:
    if not await session.scalar(select(exists().where(_tickets.c.id == ticket_id))):
        raise TicketNotFound(f"no ticket with id {ticket_id}")


async def pin_harness(
    session: AsyncSession,
    ticket_id: int,
    name: str,
    version: int | None = None,
    *,
    pinned_by: str | None = None,
) -> HarnessVersion:
    """Pin a ticket to a harness version (the current one when `version` is None); a new
    pin replaces the old."""
    await _require_ticket(session, ticket_id)
    if version is None:
        target = await require_current(session, HarnessVersion, name)
    else:
        target = await get_version(session, HarnessVersion, name, version)
    values = {
        "harness_name": target.name,
        "harness_version": target.version,
        "pinned_by": pinned_by,
    }
    statement = insert(TicketHarnessPin).values(ticket_id=ticket_id, **values)
    statement = statement.on_conflict_do_update(
        index_elements=[TicketHarnessPin.ticket_id],
        set_={**values, "updated_at": func.now()},
    )
    await session.execute(statement)
    return target


async def unpin_harness(session: AsyncSession, ticket_id: int) -> bool:
    """Remove a ticket's pin; True when there was one."""
    pin = await session.get(TicketHarnessPin, ticket_id)
    if pin is None:
        return False
    await session.delete(pin)
    await session.flush()
    return True


async def pinned_harness(session: AsyncSession, ticket_id: int) -> HarnessVersion | None:
    """The harness version a ticket is pinned to, if any."""
    query = select(HarnessVersion).join(
        TicketHarnessPin,
        (TicketHarnessPin.harness_name == HarnessVersion.name)
        & (TicketHarnessPin.harness_version == HarnessVersion.version),
    )
    query = query.where(TicketHarnessPin.ticket_id == ticket_id)
    return (await session.execute(query)).scalar_one_or_none()


async def resolve_harness(
    session: AsyncSession, ticket_id: int, default_name: str
) -> HarnessVersion:
    """The version a ticket runs with: its pin, else the current version of `default_name`."""
    pinned = await pinned_harness(session, ticket_id)
    if pinned is not None:
        return pinned
    return await require_current(session, HarnessVersion, default_name)


async def current_skills(session: AsyncSession, names: Iterable[str]) -> list[SkillVersion]:
    """The current version of each named skill, in the order given; `NameNotFound` names
    every missing one."""
    wanted = list(dict.fromkeys(names))
    found = {name: await current(session, SkillVersion, name) for name in wanted}
    missing = [name for name, row in found.items() if row is None]
    if missing:
        raise NameNotFound(f"no skill named {', '.join(repr(name) for name in missing)}")
    return [row for row in found.values() if row is not None]


async def record_run_versions(
    session: AsyncSession,
    run_id: str,
    *,
    harness_version_id: int,
    skill_version_ids: Sequence[int] = (),
    ticket_id: int | None = None,
    looked_up: bool = False,
) -> RunVersions:
    """Record the versions a run was given; recording the same run again replaces it.

    `looked_up`: the caller read these versions from this store (which never deletes one)
    and holds the ticket's row, so they are not looked up again (three round trips on the
    way of every run to its agent); the foreign keys still refuse a wrong id."""
    skill_ids = list(dict.fromkeys(skill_version_ids))
    if not looked_up:
        await _require_versions(session, harness_version_id, skill_ids, ticket_id)
    values = {
        "ticket_id": ticket_id,
        "harness_version_id": harness_version_id,
        "skill_version_ids": skill_ids,
    }
    statement = (
        insert(RunVersions)
        .values(run_id=run_id, **values)
        .on_conflict_do_update(index_elements=[RunVersions.run_id], set_=values)
        .returning(RunVersions)
    )
    # populate_existing: a row already in this session is refreshed, not returned stale.
    result = await session.execute(statement, execution_options={"populate_existing": True})
    return result.scalar_one()


async def _require_versions(
    session: AsyncSession, harness_version_id: int, skill_ids: list[int], ticket_id: int | None
) -> None:
    await get_by_id(session, HarnessVersion, harness_version_id)
    if skill_ids:
        known = set(
            (
                await session.execute(select(SkillVersion.id).where(SkillVersion.id.in_(skill_ids)))
            ).scalars()
        )
        unknown = [version_id for version_id in skill_ids if version_id not in known]
        if unknown:
            raise VersionNotFound(f"no skill version with id {', '.join(map(str, unknown))}")
    if ticket_id is not None:
        await _require_ticket(session, ticket_id)


async def runs_using(
    session: AsyncSession, version: HarnessVersion | SkillVersion, *, limit: int = 100
) -> list[RunVersions]:
    """Runs that were given this version, newest first."""
    if isinstance(version, HarnessVersion):
        condition = RunVersions.harness_version_id == version.id
    else:
        condition = RunVersions.skill_version_ids.contains([version.id])
    query = (
        select(RunVersions)
        .where(condition)
        .order_by(RunVersions.created_at.desc(), RunVersions.id.desc())
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())
