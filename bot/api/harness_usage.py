"""Which runs, tickets, repositories and workflows used which harness and skill versions.

The harness store records per run the versions it was given (`run_versions`); the run, its
ticket and the ticket's repository live in the control plane's tables. Each function here is
one query, whatever the number of names or versions asked about, so listings stay one round
trip per column however long the store grows. Who used a name is read from
`harness_usage` and `skill_usage`, which triggers keep as runs' versions are recorded
(harness_store.models), not from every run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import Run
from harness_store.models import (
    HarnessUsage,
    HarnessVersion,
    RunVersions,
    SkillUsage,
    SkillVersion,
)

Usage = dict[str, list[tuple[str, str]]]


@dataclass(frozen=True)
class VersionRun:
    """One run that was given a version, with its ticket as far as the mirror knows it."""

    run_id: str
    ticket_id: int | None
    ticket_key: str | None
    ticket_title: str | None
    state: str | None  # the run's RunState; None when the run row is gone
    status: str | None  # RunResult.status once finished
    created_at: datetime


async def _usage(session: AsyncSession, query: Select[str, str, str]) -> Usage:
    usage: Usage = {}
    for name, repo, workflow in await session.execute(query):
        usage.setdefault(name, []).append((repo, workflow))
    return usage


async def harness_usage(session: AsyncSession) -> Usage:
    """Harness name → the (repository, workflow) pairs whose runs used any of its versions."""
    query = (
        select(HarnessVersion.name, Repository.full_name, HarnessUsage.workflow)
        .join(HarnessUsage, HarnessUsage.harness_version_id == HarnessVersion.id)
        .join(Repository, Repository.id == HarnessUsage.repository_id)
        .distinct()
        .order_by(HarnessVersion.name, Repository.full_name, HarnessUsage.workflow)
    )
    return await _usage(session, query)


async def skill_usage(session: AsyncSession) -> Usage:
    """Skill name → the (repository, workflow) pairs whose runs used any of its versions."""
    query = (
        select(SkillVersion.name, Repository.full_name, SkillUsage.workflow)
        .join(SkillUsage, SkillUsage.skill_version_id == SkillVersion.id)
        .join(Repository, Repository.id == SkillUsage.repository_id)
        .distinct()
        .order_by(SkillVersion.name, Repository.full_name, SkillUsage.workflow)
    )
    return await _usage(session, query)


async def version_runs(
    session: AsyncSession, version: HarnessVersion | SkillVersion, limit: int = 50
) -> list[VersionRun]:
    """The runs given `version`, newest first, at most `limit` of them."""
    if isinstance(version, HarnessVersion):
        condition = RunVersions.harness_version_id == version.id
    else:
        # `@>` rather than `= ANY`: the GIN index on the array serves containment.
        condition = RunVersions.skill_version_ids.contains([version.id])
    query = (
        select(
            RunVersions.run_id,
            RunVersions.ticket_id,
            Ticket.key,
            Ticket.title,
            Run.state,
            Run.status,
            RunVersions.created_at,
        )
        .outerjoin(Run, Run.id == RunVersions.run_id)
        .outerjoin(Ticket, Ticket.id == RunVersions.ticket_id)
        .where(condition)
        .order_by(RunVersions.created_at.desc(), RunVersions.id.desc())
        .limit(limit)
    )
    return [VersionRun(*row) for row in await session.execute(query)]


async def run_counts(
    session: AsyncSession, versions: Iterable[HarnessVersion | SkillVersion]
) -> dict[int, int]:
    """Version id → how many runs were given it (0 included); all `versions` of one kind,
    since harness and skill version ids are separate sequences."""
    versions = list(versions)
    ids = [v.id for v in versions]
    counts = dict.fromkeys(ids, 0)
    if not versions:
        return counts
    if isinstance(versions[0], HarnessVersion):
        query = (
            select(RunVersions.harness_version_id, func.count())
            .where(RunVersions.harness_version_id.in_(ids))
            .group_by(RunVersions.harness_version_id)
        )
    else:
        used = func.unnest(RunVersions.skill_version_ids).table_valued("id").render_derived("used")
        query = (
            select(used.c.id, func.count())
            .select_from(RunVersions)
            .join(used, used.c.id.in_(ids))
            # Narrows the runs through the GIN index before unnesting their arrays.
            .where(RunVersions.skill_version_ids.overlap(ids))
            .group_by(used.c.id)
        )
    counts.update({version_id: count for version_id, count in await session.execute(query)})
    return counts
