"""Pacing each installation's content-creating GitHub requests, before GitHub has to.

GitHub's secondary rate limits allow no more than 80 content-creating requests a minute and
500 an hour (POST, PATCH, PUT and DELETE on REST, GraphQL mutations; minting a token does
not create content), and answer more with a 403 or 429 and a wait of a minute or longer:
https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits
The outbox keeps each installation under both (OPENASE_GITHUB_WRITES_PER_MINUTE and
OPENASE_GITHUB_WRITES_PER_HOUR), across every worker that drains it.

**What counts: the requests really sent**, at the HTTP layer. The outbox hands its
performers a client made by `CodeHost.paced(pacer)`, whose transport asks the pacer before
each content-creating request as an installation (adapters/github/transport.py
`creates_content`); reads, the App's own requests and token minting are never asked about.
An effect makes none to three writes (a status comment found, then edited or created; a
status label removed and added, or already right), so counting effects, or reserving each
kind's most, would overrun the limit or leave budget unused, and would drift from the
performers as they change; every request passes through the transport. A write is counted
before it is sent (a failed one too: GitHub may have counted it), and from when it is over
(`sent`: by then GitHub has counted it, however long it waited on its way). A write refused
mid-effect (Paced) leaves that effect part done: it is performed again when room comes,
and every performer finds what an earlier try made, so nothing is made twice.

**The algorithm: a sliding-window log.** Each write is a row (installation, time) in
`github_writes`, kept an hour. A write may go out while fewer than the limit went out in
the last minute and in the last hour; a full window has room again when its limit-th
newest write leaves it. This is exactly GitHub's rule. A token bucket or GCRA with burst =
limit is not: a full bucket plus its refill lets up to twice the limit through in one
window (80 at once, then 80 more within the same minute). The log is small (at most the
hour's limit of rows per installation) and read through one index. A write keeps its place
in a window for `MARGIN` (2 s) longer than the window: GitHub counts a request when it
arrives, later than we counted it by as long as the network, a connection or a token
refresh take, and on a clock that is not ours. The margin costs 3 % of a minute's budget.

**Shared, and consistent.** Each write is counted in a short transaction of its own under
an advisory lock per installation: count, then insert, so two writers never both take the
last slot. The outbox's installation lock (bot/effects/rows.py) already lets one worker
drain an installation at a time; this lock also covers a drainer whose lock connection
dropped mid-effect while another took over. (Not on the outbox lock's connection: that
lock is transaction-scoped, and its transaction never commits.) Time is PostgreSQL's, which
every worker shares and which decides when an effect is due, unless a clock is given
(tests move it instead of sleeping a minute).

When the budget is spent the installation's effects wait (bot/effects/perform.py): they
are held back until the window has room, with `not_before` and without counting a try,
and the outbox's cron takes them up then. `github_writes_paced` remembers that pacing
holds an installation back, so that the log says so once when it starts and once when the
backlog is out, whichever worker sees it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.errors import Paced
from bot.settings import Settings
from bot.tables.workflow import GitHubWrite, GitHubWritesPaced
from harness_store.db import reading, transaction

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
MARGIN = timedelta(seconds=2)  # how much longer than its window a write is counted in it


@dataclass(frozen=True)
class WriteLimits:
    """Content-creating requests an installation may make in a rolling minute and hour."""

    per_minute: int = 80
    per_hour: int = 500

    @classmethod
    def of(cls, settings: Settings) -> WriteLimits:
        return cls(settings.github_writes_per_minute, settings.github_writes_per_hour)

    def windows(self) -> tuple[tuple[timedelta, int], ...]:
        return ((MINUTE, self.per_minute), (HOUR, self.per_hour))

    def __str__(self) -> str:
        return f"{self.per_minute} a minute, {self.per_hour} an hour"


class WritePacer:
    """Each installation's budget of content-creating requests (an adapters.base.WriteGate)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        limits: WriteLimits,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.limits = limits
        self._sessions = sessions
        self._clock = clock  # None: PostgreSQL's

    async def write(self, installation_id: int) -> int | None:
        """Count one write about to go out (its log row's id, for `sent`); Paced, counting
        nothing, when there is no room."""
        written = None
        async with transaction(self._sessions) as session:
            lock = func.hashtextextended(f"openase:github-writes:{installation_id}", 0)
            await session.execute(select(func.pg_advisory_xact_lock(lock)))
            now = await self._now(session)
            until = await self._full_until(session, installation_id, now)
            if until is None:
                # The log's rows out of every window go in the same statement.
                gone = (
                    delete(GitHubWrite)
                    .where(
                        GitHubWrite.installation_id == installation_id,
                        GitHubWrite.at <= now - HOUR - MARGIN,
                    )
                    .returning(GitHubWrite.id)
                    .cte("gone")
                )
                written = await session.scalar(
                    insert(GitHubWrite)
                    .values(installation_id=installation_id, at=now)
                    .returning(GitHubWrite.id)
                    .add_cte(gone)
                )
        if until is not None:
            raise Paced(until, self.spent(installation_id, until))
        return written

    async def sent(self, written: object) -> None:
        """The write is over: it counts from now. GitHub counts a request when it arrives,
        which may be seconds after `write` counted it (waiting for a connection, or for a
        busy event loop): counted from when it was over, no rolling window GitHub looks at
        can hold more than the limit (an installation's writes go out one after another).
        A bench at full load measured 82 in GitHub's busiest minute when writes counted
        from their start."""
        if not isinstance(written, int):
            return
        # PostgreSQL's time read in the UPDATE itself (one round trip), unless a clock is given.
        now = func.clock_timestamp() if self._clock is None else self._clock()
        async with transaction(self._sessions) as session:
            await session.execute(
                update(GitHubWrite)
                .where(GitHubWrite.id == written)
                .values(at=func.greatest(GitHubWrite.at, now))
            )

    async def room_at(self, installation_id: int) -> datetime | None:
        """None when a write may go out now; else when one may next."""
        async with reading(self._sessions) as session:
            return await self._full_until(session, installation_id, await self._now(session))

    async def holding(self, installation_id: int, until: datetime) -> bool:
        """Note that the installation's writes wait until at least `until`; True when
        pacing starts holding them back here (it was not already)."""
        async with transaction(self._sessions) as session:
            now = await self._now(session)
            started = await session.scalar(
                insert(GitHubWritesPaced)
                .values(installation_id=installation_id, since=now, until=until)
                .on_conflict_do_nothing(index_elements=[GitHubWritesPaced.installation_id])
                .returning(GitHubWritesPaced.installation_id)
            )
            if started is None:
                await session.execute(
                    update(GitHubWritesPaced)
                    .where(GitHubWritesPaced.installation_id == installation_id)
                    .values(until=func.greatest(GitHubWritesPaced.until, until))
                )
        return started is not None

    async def caught_up(self, installation_id: int) -> datetime | None:
        """The installation's backlog is out (nothing of it is due): since when pacing held
        its writes back, if it did and that hold is over; None otherwise."""
        async with transaction(self._sessions) as session:
            now = await self._now(session)
            return await session.scalar(
                delete(GitHubWritesPaced)
                .where(
                    GitHubWritesPaced.installation_id == installation_id,
                    GitHubWritesPaced.until <= now,
                )
                .returning(GitHubWritesPaced.since)
            )

    async def _now(self, session: AsyncSession) -> datetime:
        if self._clock is not None:
            return self._clock()
        now: datetime = (await session.execute(select(func.clock_timestamp()))).scalar_one()
        return now

    async def _full_until(
        self, session: AsyncSession, installation_id: int, now: datetime
    ) -> datetime | None:
        # The window is full while its limit-th newest write is in it: each window's
        # limit-th newest, both read in one statement.
        spans = [(window + MARGIN, limit) for window, limit in self.limits.windows()]
        limit_th = [
            select(GitHubWrite.at)
            .where(GitHubWrite.installation_id == installation_id, GitHubWrite.at > now - span)
            .order_by(GitHubWrite.at.desc())
            .offset(limit - 1)
            .limit(1)
            .scalar_subquery()
            for span, limit in spans
        ]
        oldest = (await session.execute(select(*limit_th))).one()
        until: datetime | None = None
        for (span, _), at in zip(spans, oldest, strict=True):
            if at is not None and (until is None or at + span > until):
                until = at + span
        return until

    def spent(self, installation_id: int, until: datetime) -> str:
        """Why the installation's writes wait (an effect's last error says it)."""
        when = until.astimezone(UTC)
        return (
            f"paced: installation {installation_id} has made the content-creating GitHub "
            f"requests it may ({self.limits}); the next goes at {when:%Y-%m-%d %H:%M:%S} UTC"
        )
