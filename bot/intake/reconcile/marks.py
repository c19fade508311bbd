"""How far each scope (a repository, a Linear team, a Jira project) has been reconciled: a
`SyncMark` holding the newest update, on the tracker's own clock, up to which every change
was read back. A pass reads from a little before it, so a change stamped the same second as
the mark, or one that became visible late, is read again (and found known)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from bot.deps import Deps
from bot.tables.sync import SyncMark
from harness_store.db import transaction

# Read this much before the mark: ties on the mark's second, changes a tracker shows a
# moment late, JQL's whole minutes and the clock our "-Nm" is counted on.
OVERLAP = timedelta(minutes=5)
# A scope never reconciled before is read back this far at most (as far as GitHub keeps
# its delivery log), or to the newest change the mirror heard of it, whichever is older.
FIRST_LOOKBACK = timedelta(days=3)


def mark_name(source: str, scope: str | int) -> str:
    return f"reconcile:{source}:{scope}"


async def starting_point(
    deps: Deps,
    name: str,
    newest_known: Callable[[], Awaitable[datetime | None]],
    now: datetime,
) -> datetime:
    """Where the scope's changes are known up to: its mark. A first pass sets the mark to
    the older of the newest change the mirror holds (`newest_known`) and FIRST_LOOKBACK ago
    (webhooks that arrived since the bot came back must not hide what it missed), or to
    now for a scope the mirror knows nothing of; set before reading, so a first pass cut
    short is continued from the same point."""
    async with deps.sessions() as session:
        mark = await session.scalar(select(SyncMark.at).where(SyncMark.name == name))
    if mark is not None:
        return mark
    newest = await newest_known()
    start = now if newest is None else min(newest, now - FIRST_LOOKBACK)
    await advance(deps, name, start)
    return start


async def advance(deps: Deps, name: str, at: datetime) -> None:
    """Move the mark to `at` (never backwards)."""
    statement = insert(SyncMark).values(name=name, at=at)
    async with transaction(deps.sessions) as session:
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[SyncMark.name],
                set_={"at": func.greatest(SyncMark.at, statement.excluded.at)},
            )
        )
