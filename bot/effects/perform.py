"""Performing the outbox's effects (decided by bot/effects/outbox.py), each exactly once.

`perform_pending` claims one due row at a time with `FOR UPDATE SKIP LOCKED`
and a lease (`not_before = now() + LEASE`, `attempts + 1`) in a short transaction, performs
it outside any row lock, then marks it done (with its result) or failed, or schedules a
retry: RateLimited at its reset time, TransientError and unexpected errors with exponential
backoff (up to MAX_ATTEMPTS), RequestRejected and EffectRefused fail at once. Done and
failed effects of a ticket get an `activity` row. A worker that dies mid-effect leaves the
row leased; after the lease (bot/effects/rows.py) it is claimed again, which is why every
performer is idempotent.

Writes to one installation run one at a time across all workers (GitHub's secondary rate
limits punish concurrent writes): the performer holds a Postgres transaction-level advisory
lock per installation, on a connection of its own, while it drains that installation. We
chose Postgres over a Redis lock because the lock dies with its connection: a crashed
worker frees it at once, and there is no TTL to guess against a slow GitHub request (a Redis
lock that expires mid-request would let a second writer in). Rows are only claimed under
the lock, so besides making a dead worker's effect wait, the lease matters only if the lock's
connection drops mid-effect. A performer that finds the lock taken skips that installation:
the holder checks again for due effects after releasing it, so nothing committed meanwhile
waits for the cron fallback.

The installation's content-creating GitHub requests are paced (bot/effects/pacing.py): the
performers' GitHub client asks the pacer before each one. An effect met with a spent
budget, before it starts or at a write midway (Paced), waits with the installation's
others until the budget has room, as for a rate limit, its attempt given back; the drainer
leaves the installation, and the cron takes the effects up when they come due. An effect
superseded meanwhile is skipped when claimed, before the budget is asked, unsent.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from adapters.base import CodeHost
from adapters.errors import Paced, RateLimited, RequestRejected, TransientError
from bot.deps import AfterCommit, Deps
from bot.effects import rows
from bot.effects.outbox import (
    EffectContext,
    EffectRefused,
    Performer,
    SettledEffect,
    SettleHook,
    key_scope,
)
from bot.effects.pacing import WriteLimits, WritePacer
from bot.effects.rows import Claimed
from bot.errors import ConfigError
from bot.registry import TrackerClients
from bot.servers.outages import Backoff, Outages, ServiceFailures
from bot.tables.workflow import Activity, EffectStatus
from harness_store.db import transaction

log = structlog.get_logger(__name__)

Json = dict[str, Any]

MAX_ATTEMPTS = 10  # failed tries before an effect is given up (rate limits do not count)
BACKOFF_BASE = 2.0  # seconds before the second try; doubling up to BACKOFF_MAX
BACKOFF_MAX = 600.0
# A failing service (5xx, timeouts) is asked again after about 2 s, then 4, 8, ... at most
# every 30 s, by one effect; the installation's others wait meanwhile. Capped low, so that
# everything goes out well within a minute of the service's return.
SERVICE_BACKOFF = Backoff(first=2.0, cap=30.0)
PERFORM_LIMIT = 200  # effects one call settles at most, so a job never runs unbounded
RECHECKS = 5  # times one call goes back to an installation that had more come due


@dataclass(frozen=True)
class _Drained:
    locked: bool  # False: another worker holds the installation
    settled: int = 0
    complete: bool = False  # ran until nothing was due (not stopped by a limit or budget)


async def perform_pending(
    deps: Deps,
    performers: Mapping[str, Performer],
    *,
    limit: int = PERFORM_LIMIT,
    installations: Iterable[int | None] | None = None,
    github: CodeHost | None = None,
    on_settled: SettleHook | None = None,
    pacer: WritePacer | None = None,
) -> int:
    """Perform due effects (of `installations`, else all) with the performer of each one's
    kind; how many were done or failed. `pacer`: the installations' budgets of
    content-creating GitHub requests (default: the settings' limits, PostgreSQL's clock)."""
    if github is None:
        try:
            github = deps.github_app()
        except ConfigError as exc:
            log.error("outbox_no_github_app", error=str(exc))
            return 0  # effects stay pending until the App is configured
    if pacer is None:
        pacer = WritePacer(deps.sessions, WriteLimits.of(deps.settings))
    worker = _Worker(
        engine=deps.engine,
        sessions=deps.sessions,
        trackers=deps.trackers(),
        github=github,
        performers=performers,
        on_settled=on_settled,
        outages=deps.outages,
        pacer=pacer,
    )
    queue = deque(
        await rows.due_installations(deps.sessions) if installations is None else installations
    )
    settled = 0
    rechecks: dict[int | None, int] = {}
    while queue and settled < limit:
        installation_id = queue.popleft()
        drained = await worker.drain(installation_id, budget=limit - settled)
        settled += drained.settled
        # Checked after releasing the lock: an effect committed while we held it, whose
        # own job found the lock taken and left, is ours to perform. Bounded, in case a
        # due row stays locked by someone else (the cron comes back for it).
        rechecks[installation_id] = rechecks.get(installation_id, 0) + 1
        if (
            drained.complete
            and rechecks[installation_id] <= RECHECKS
            and await rows.has_due(deps.sessions, installation_id)
        ):
            queue.append(installation_id)
    return settled


@dataclass
class _Worker:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    trackers: TrackerClients
    github: CodeHost
    performers: Mapping[str, Performer]
    on_settled: SettleHook | None
    outages: Outages
    pacer: WritePacer

    @property
    def services(self) -> ServiceFailures:
        return self.outages.services

    @cached_property
    def paced_github(self) -> CodeHost:
        """The client of the effects that write to GitHub: each content-creating request
        asks the pacer first (the others are handed the client as it is)."""
        return self.github.paced(self.pacer)

    async def drain(self, installation_id: int | None, *, budget: int) -> _Drained:
        """Perform this installation's due effects one by one, holding its lock."""
        async with rows.installation_lock(self.engine, installation_id) as lock:
            if lock is None:
                return _Drained(locked=False)
            settled = 0
            while settled < budget:
                try:
                    await lock.execute(select(1))  # the lock lives as long as this connection
                except SQLAlchemyError as exc:
                    log.warning("outbox_lock_lost", installation_id=installation_id, error=str(exc))
                    return _Drained(locked=True, settled=settled)
                effect = await rows.claim(self.sessions, installation_id)
                if effect is None:
                    await self._caught_up(installation_id)
                    return _Drained(locked=True, settled=settled, complete=True)
                outcome = await self._perform(effect)
                if outcome in (EffectStatus.DONE, EffectStatus.FAILED):
                    settled += 1
                if outcome in ("rate_limited", "unavailable", "paced"):
                    # Everything else of this installation would meet the same (its others
                    # are held back, bot/effects/rows.py `hold`).
                    return _Drained(locked=True, settled=settled)
            return _Drained(locked=True, settled=settled)

    async def _perform(self, effect: Claimed) -> str:
        with structlog.contextvars.bound_contextvars(
            effect_id=effect.id, effect_key=effect.key, ticket_id=effect.ticket_id
        ):
            return await self._perform_bound(effect)

    async def _perform_bound(self, effect: Claimed) -> str:
        if effect.attempts > MAX_ATTEMPTS:
            # Only a try that never finished (its worker died) gets here: give up on it.
            error = f"gave up after {effect.attempts - 1} attempts; the last did not finish"
            return await self._fail(effect, error, None)
        scope = key_scope(effect.key)
        if scope is not None:
            newer = await rows.newer_in_scope(self.sessions, scope, effect.id)
            if newer is not None:
                await rows.mark(self.sessions, effect, EffectStatus.DONE, {"superseded_by": newer})
                log.info("outbox_effect_superseded", superseded_by=newer)
                return EffectStatus.DONE
        performer = self.performers.get(effect.kind)
        if performer is None:
            return await self._fail(effect, f"no performer for effect kind {effect.kind!r}", None)
        github = self.github
        if effect.installation_id is not None and rows.writes_to_github(effect.kind):
            # Not even its reads while there is no room: it would be refused at its first write.
            until = await self.pacer.room_at(effect.installation_id)
            if until is not None:
                return await self._paced(effect, effect.installation_id, until)
            github = self.paced_github
        context = EffectContext(
            id=effect.id,
            key=effect.key,
            kind=effect.kind,
            ticket_id=effect.ticket_id,
            installation_id=effect.installation_id,
            attempt=effect.attempts,
            progress=effect.result,
            previous=None
            if scope is None
            else await rows.previous_result(self.sessions, scope, effect.id),
            github=github,
            sessions=self.sessions,
            trackers=self.trackers,
        )
        try:
            result = await performer(context, effect.payload)
        except Paced as exc:  # a write midway found the budget spent: nothing was sent
            assert effect.installation_id is not None  # only installations' writes are paced
            return await self._paced(effect, effect.installation_id, exc.retry_at)
        except RateLimited as exc:
            await rows.reschedule(self.sessions, effect, exc.retry_at, str(exc), counted=False)
            held = await rows.hold(self.sessions, effect, exc.retry_at, str(exc))
            log.warning(
                "outbox_rate_limited",
                retry_at=exc.retry_at.isoformat(),
                error=str(exc),
                held_back=held,
            )
            return "rate_limited"
        except EffectRefused as exc:
            return await self._fail(effect, str(exc), exc.result)
        except RequestRejected as exc:
            return await self._fail(effect, str(exc), None)
        except TransientError as exc:  # 5xx, timeouts, the network: the service is failing
            return await self._unavailable(effect, exc)
        except Exception as exc:  # a bug: retried with backoff, and seen in full
            return await self._retry(effect, exc)
        self.services.succeeded(rows.service_of(effect.kind, effect.installation_id))
        await self._settle(effect, EffectStatus.DONE, result, None)
        log.info("outbox_effect_done", kind=effect.kind)
        return EffectStatus.DONE

    async def _paced(self, effect: Claimed, installation_id: int, until: datetime) -> str:
        """Wait for the installation's budget to have room, with its other effects: not a
        failed try. Said once when pacing starts holding the installation back."""
        why = self.pacer.spent(installation_id, until)
        await rows.reschedule(self.sessions, effect, until, why, counted=False)
        held = await rows.hold(self.sessions, effect, until, why)
        if await self.pacer.holding(installation_id, until):
            log.info(
                "github_writes_paced",
                installation_id=installation_id,
                resumes_at=until.isoformat(),
                limits=str(self.pacer.limits),
                waiting=held + 1,
            )
        return "paced"

    async def _caught_up(self, installation_id: int | None) -> None:
        if installation_id is None:
            return
        since = await self.pacer.caught_up(installation_id)
        if since is not None:
            log.info(
                "github_writes_unpaced", installation_id=installation_id, since=since.isoformat()
            )

    async def _unavailable(self, effect: Claimed, exc: TransientError) -> str:
        """Retry this effect later, and hold back the installation's others that write to
        the same service for as long: backing off the service, not each request."""
        error = f"{type(exc).__name__}: {exc}"
        failures = self.services.failed(rows.service_of(effect.kind, effect.installation_id), error)
        outcome = await self._retry(effect, exc)
        if outcome != "retry":
            return outcome  # given up after its last try: settled
        until = datetime.now(UTC) + timedelta(seconds=SERVICE_BACKOFF.delay(failures - 1))
        await rows.hold(self.sessions, effect, until, error)
        return "unavailable"

    async def _retry(self, effect: Claimed, exc: Exception) -> str:
        error = f"{type(exc).__name__}: {exc}"
        if effect.attempts >= MAX_ATTEMPTS:
            return await self._fail(
                effect, f"gave up after {effect.attempts} attempts: {error}", None
            )
        delay = backoff(effect.attempts)
        await rows.reschedule(self.sessions, effect, delay, error, counted=True)
        log.warning(
            "outbox_effect_retry",
            kind=effect.kind,
            attempt=effect.attempts,
            retry_in_seconds=round(delay.total_seconds(), 1),
            error=error,
            # A transient failure needs no traceback; anything else is a bug to see in full.
            exc_info=not isinstance(exc, TransientError),
        )
        return "retry"

    async def _fail(self, effect: Claimed, error: str, result: Json | None) -> str:
        await self._settle(effect, EffectStatus.FAILED, result, error)
        log.error("outbox_effect_failed", kind=effect.kind, error=error)
        return EffectStatus.FAILED

    async def _settle(
        self, effect: Claimed, status: EffectStatus, result: Json | None, error: str | None
    ) -> None:
        try:
            await self._settle_once(effect, status, result, error)
        except Exception as exc:
            if self.outages.noticed(exc) != "postgres":
                raise
            # Performed, but Postgres went away before it was recorded: wait for it (within
            # the lease) and record it then, so the effect neither waits out its lease nor
            # is performed again.
            async with asyncio.timeout(rows.LEASE.total_seconds()):
                await self.outages.until_back("postgres")
            await self._settle_once(effect, status, result, error)

    async def _settle_once(
        self, effect: Claimed, status: EffectStatus, result: Json | None, error: str | None
    ) -> None:
        after: AfterCommit | None = None
        async with transaction(self.sessions) as session:
            marked = await rows.mark_in(session, effect, status, result, error)
            if not marked:
                return  # settled meanwhile by someone whose lease outlived ours
            if effect.ticket_id is not None:
                session.add(_activity(effect, status, result, error))
            if self.on_settled is not None:
                settled = SettledEffect(
                    id=effect.id,
                    key=effect.key,
                    kind=effect.kind,
                    ticket_id=effect.ticket_id,
                    installation_id=effect.installation_id,
                    payload=effect.payload,
                    status=status,
                    result=result,
                    error=error,
                )
                after = await self.on_settled(session, settled)
        if after is not None:
            try:
                await after()
            except Exception:  # the engine's cron repairs what a follow-up did not do
                log.warning("outbox_after_settle_failed", exc_info=True)


def backoff(attempt: int) -> timedelta:
    """Delay before the try after `attempt` failed ones: doubling, capped, 10 % jitter."""
    seconds = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(0, attempt - 1))
    return timedelta(seconds=seconds * (1 + random.random() / 10))  # noqa: S311  # jitter only


def _activity(
    effect: Claimed, status: EffectStatus, result: Json | None, error: str | None
) -> Activity:
    if status == EffectStatus.DONE:
        summary = (result or {}).get("summary")
        message = summary if isinstance(summary, str) and summary else f"{effect.kind} done"
    else:
        message = f"{effect.kind} failed: {error}"
    data: Json = {"effect_id": effect.id, "key": effect.key, "kind": effect.kind, "status": status}
    if result is not None:
        data["result"] = result
    if error is not None:
        data["error"] = error
    return Activity(ticket_id=effect.ticket_id, kind="effect", message=message, data=data)
