"""The outbox: side effects decided in a transaction, performed afterwards exactly once.

Deciding. The engine calls `add_effect` inside the transaction that makes a decision; the
row commits with the decision or not at all, so a crash in between loses nothing. Keys are
deterministic, so deciding the same thing again (a redelivered webhook) is a no-op:

- one-shot effects name their decision: `reaction:{comment_id}:eyes`,
  `comment:{ticket_id}:gave-up:{attempt}`, `pr:{ticket_id}:{run_id}`, `merge:{ticket_id}:{sha}`.
- latest-wins effects (the status label, the status comment, a check run) are
  `<scope>#<revision>` (`revision_key`): `label:{ticket_id}#{version}`,
  `status:{ticket_id}#{version}`, `check:{run_id}:{hook}#{n}`. Each update is a new row;
  once a newer row of the scope exists, an older pending one is skipped (done, with result
  `{"superseded_by": id}`), so a retried old update never overwrites a newer one. A
  performer sees the result of the newest done row of its scope (`EffectContext.previous`):
  the comment or check run to edit rather than create.

Performing. `perform_pending` claims one due row at a time with `FOR UPDATE SKIP LOCKED`
and a lease (`not_before = now() + LEASE`, `attempts + 1`) in a short transaction, performs
it outside any row lock, then marks it done (with its result) or failed, or schedules a
retry: RateLimited at its reset time, TransientError and unexpected errors with exponential
backoff (up to MAX_ATTEMPTS), RequestRejected and EffectRefused fail at once. Done and
failed effects of a ticket get an `activity` row. A worker that dies mid-effect leaves the
row leased; after LEASE it is claimed again, which is why every performer is idempotent.

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
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from arq import cron
from arq.connections import ArqRedis
from arq.cron import CronJob
from arq.worker import func as arq_func
from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from adapters.errors import RateLimited, RequestRejected, TransientError
from bot.deps import Deps
from bot.errors import ConfigError, OpenaseError
from bot.registry import GitHubApp
from bot.tables.workflow import Activity, EffectStatus, OutboxEffect
from harness_store.db import transaction

log = structlog.get_logger(__name__)

Json = dict[str, Any]

PERFORM_OUTBOX_JOB = "perform_outbox"
# ctx key under which a worker's on_startup may put a SettleHook for the jobs below.
ON_SETTLED_CTX_KEY = "outbox_on_settled"
REVISION_SEPARATOR = "#"
# How long a claimed effect is left alone. Claims happen under the installation lock, so
# the lease only matters when a worker dies mid-effect (its effect waits this long) or its
# lock connection drops mid-effect (another worker could then start the same effect).
LEASE = timedelta(minutes=2)
MAX_ATTEMPTS = 10  # failed tries before an effect is given up (rate limits do not count)
BACKOFF_BASE = 2.0  # seconds before the second try; doubling up to BACKOFF_MAX
BACKOFF_MAX = 600.0
PERFORM_LIMIT = 200  # effects one call settles at most, so a job never runs unbounded
RECHECKS = 5  # times one call goes back to an installation that had more come due
CRON_SECONDS = frozenset(range(0, 60, 5))  # the fallback sweep: every five seconds
_KEY_MAX = 255  # the column's width


class EffectRefused(OpenaseError):
    """Performing the effect cannot succeed; it fails at once, `result` says how."""

    def __init__(self, message: str, result: Json | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class EffectContext:
    """What a performer knows besides its payload."""

    id: int
    key: str
    kind: str
    ticket_id: int | None
    installation_id: int | None
    attempt: int  # 1 on the first try
    progress: Json | None  # what an unfinished earlier attempt saved with `checkpoint`
    previous: Json | None  # the result of the newest done effect of the same scope
    github: GitHubApp
    sessions: async_sessionmaker[AsyncSession]
    # Linear's and Jira's clients (bot.trackers.TrackerClients), for their tickets' effects.
    trackers: Any = None

    def installation(self) -> int:
        """The installation to act as; effects without one cannot reach GitHub."""
        if self.installation_id is None:
            raise EffectRefused(f"effect {self.key} names no GitHub installation")
        return self.installation_id

    async def checkpoint(self, progress: Json) -> None:
        """Save partial progress, so a retry resumes instead of repeating (annotations)."""
        async with transaction(self.sessions) as session:
            await session.execute(
                update(OutboxEffect)
                .where(OutboxEffect.id == self.id, OutboxEffect.status == EffectStatus.PENDING)
                .values(result=progress)
            )


# Performs one effect and returns its result (JSON); raises to fail or retry (see above).
Performer = Callable[[EffectContext, Json], Awaitable[Json]]


@dataclass(frozen=True)
class SettledEffect:
    """An effect that just finished, as a SettleHook sees it."""

    id: int
    key: str
    kind: str
    ticket_id: int | None
    installation_id: int | None
    payload: Json
    status: EffectStatus  # DONE or FAILED
    result: Json | None
    error: str | None


# What a SettleHook asks to be done once its transaction committed (send a run, merge).
AfterCommit = Callable[[], Awaitable[None]]
# Called in the transaction that marks an effect done or failed, so what the engine decides
# in reaction (a comment on a refused merge, the PR number) commits with it or not at all.
SettleHook = Callable[[AsyncSession, SettledEffect], Awaitable[AfterCommit | None]]


def revision_key(scope: str, revision: int | str) -> str:
    """The key of one revision of a latest-wins effect: `label:12` + 3 -> `label:12#3`."""
    if REVISION_SEPARATOR in scope:
        raise ValueError(f"a scope may not contain {REVISION_SEPARATOR!r}: {scope!r}")
    return f"{scope}{REVISION_SEPARATOR}{revision}"


def key_scope(key: str) -> str | None:
    """The scope of a latest-wins key, or None for a one-shot key."""
    scope, separator, _ = key.rpartition(REVISION_SEPARATOR)
    return scope if separator else None


async def add_effect(
    session: AsyncSession,
    *,
    key: str,
    kind: str,
    payload: Mapping[str, Any],
    ticket_id: int | None,
    installation_id: int | None,
    not_before: datetime | None = None,
) -> bool:
    """Record an effect in the caller's transaction; False if its key was already there."""
    if not key or len(key) > _KEY_MAX:
        raise ValueError(f"an outbox key must be 1 to {_KEY_MAX} characters: {key[:80]!r}")
    values: Json = {
        "key": key,
        "kind": kind,
        "payload": dict(payload),
        "ticket_id": ticket_id,
        "installation_id": installation_id,
    }
    if not_before is not None:
        values["not_before"] = not_before
    statement = (
        insert(OutboxEffect)
        .values(values)
        .on_conflict_do_nothing(index_elements=[OutboxEffect.key])
        .returning(OutboxEffect.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


# --- performing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claimed:
    id: int
    key: str
    kind: str
    ticket_id: int | None
    installation_id: int | None
    payload: Json
    attempts: int  # including this one
    result: Json | None


@dataclass(frozen=True)
class _Drained:
    locked: bool  # False: another worker holds the installation
    settled: int = 0
    complete: bool = False  # ran until nothing was due (not stopped by a limit or budget)


def _default_performers() -> Mapping[str, Performer]:
    # Imported here: the performers build on this module's EffectContext and EffectRefused.
    from bot.effects.github import PERFORMERS
    from bot.effects.trackers import PERFORMERS as TRACKER_PERFORMERS

    return {**PERFORMERS, **TRACKER_PERFORMERS}


async def perform_pending(
    deps: Deps,
    *,
    limit: int = PERFORM_LIMIT,
    installations: Iterable[int | None] | None = None,
    github: GitHubApp | None = None,
    performers: Mapping[str, Performer] | None = None,
    on_settled: SettleHook | None = None,
) -> int:
    """Perform due effects (of `installations`, else all); how many were done or failed."""
    if github is None:
        from bot.intake.backfill import github_app  # the process's shared client (tokens, limits)

        try:
            github = github_app(deps.settings)
        except ConfigError as exc:
            log.error("outbox_no_github_app", error=str(exc))
            return 0  # effects stay pending until the App is configured
    from bot.trackers import tracker_clients

    # The engine's clients where this process runs one (they hold the bot's identity).
    engine = getattr(deps, "workflow", None)
    trackers = engine.trackers if engine is not None else tracker_clients(deps.settings)
    worker = _Worker(
        engine=deps.engine,
        sessions=deps.sessions,
        trackers=trackers,
        github=github,
        performers=performers if performers is not None else _default_performers(),
        on_settled=on_settled,
    )
    queue = deque(
        await _due_installations(deps.sessions) if installations is None else installations
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
            and await _has_due(deps.sessions, installation_id)
        ):
            queue.append(installation_id)
    return settled


@dataclass
class _Worker:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    trackers: Any
    github: GitHubApp
    performers: Mapping[str, Performer]
    on_settled: SettleHook | None

    async def drain(self, installation_id: int | None, *, budget: int) -> _Drained:
        """Perform this installation's due effects one by one, holding its lock."""
        async with _installation_lock(self.engine, installation_id) as lock:
            if lock is None:
                return _Drained(locked=False)
            settled = 0
            while settled < budget:
                try:
                    await lock.execute(select(1))  # the lock lives as long as this connection
                except SQLAlchemyError as exc:
                    log.warning("outbox_lock_lost", installation_id=installation_id, error=str(exc))
                    return _Drained(locked=True, settled=settled)
                effect = await _claim(self.sessions, installation_id)
                if effect is None:
                    return _Drained(locked=True, settled=settled, complete=True)
                outcome = await self._perform(effect)
                if outcome in (EffectStatus.DONE, EffectStatus.FAILED):
                    settled += 1
                if outcome == "rate_limited":
                    # Everything else of this installation would hit the same limit.
                    return _Drained(locked=True, settled=settled)
            return _Drained(locked=True, settled=settled)

    async def _perform(self, effect: _Claimed) -> str:
        with structlog.contextvars.bound_contextvars(
            effect_id=effect.id, effect_key=effect.key, ticket_id=effect.ticket_id
        ):
            return await self._perform_bound(effect)

    async def _perform_bound(self, effect: _Claimed) -> str:
        if effect.attempts > MAX_ATTEMPTS:
            # Only a try that never finished (its worker died) gets here: give up on it.
            error = f"gave up after {effect.attempts - 1} attempts; the last did not finish"
            return await self._fail(effect, error, None)
        scope = key_scope(effect.key)
        if scope is not None:
            newer = await _newer_in_scope(self.sessions, scope, effect.id)
            if newer is not None:
                await _mark(self.sessions, effect, EffectStatus.DONE, {"superseded_by": newer})
                log.info("outbox_effect_superseded", superseded_by=newer)
                return EffectStatus.DONE
        performer = self.performers.get(effect.kind)
        if performer is None:
            return await self._fail(effect, f"no performer for effect kind {effect.kind!r}", None)
        context = EffectContext(
            id=effect.id,
            key=effect.key,
            kind=effect.kind,
            ticket_id=effect.ticket_id,
            installation_id=effect.installation_id,
            attempt=effect.attempts,
            progress=effect.result,
            previous=None if scope is None else await _previous(self.sessions, scope, effect.id),
            github=self.github,
            sessions=self.sessions,
            trackers=self.trackers,
        )
        try:
            result = await performer(context, effect.payload)
        except RateLimited as exc:
            await _reschedule(self.sessions, effect, exc.retry_at, str(exc), counted=False)
            log.warning("outbox_rate_limited", retry_at=exc.retry_at.isoformat(), error=str(exc))
            return "rate_limited"
        except EffectRefused as exc:
            return await self._fail(effect, str(exc), exc.result)
        except RequestRejected as exc:
            return await self._fail(effect, str(exc), None)
        except Exception as exc:  # transient (5xx, timeouts) or a bug: retried with backoff
            return await self._retry(effect, exc)
        await self._settle(effect, EffectStatus.DONE, result, None)
        log.info("outbox_effect_done", kind=effect.kind)
        return EffectStatus.DONE

    async def _retry(self, effect: _Claimed, exc: Exception) -> str:
        error = f"{type(exc).__name__}: {exc}"
        if effect.attempts >= MAX_ATTEMPTS:
            return await self._fail(
                effect, f"gave up after {effect.attempts} attempts: {error}", None
            )
        delay = backoff(effect.attempts)
        await _reschedule(self.sessions, effect, delay, error, counted=True)
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

    async def _fail(self, effect: _Claimed, error: str, result: Json | None) -> str:
        await self._settle(effect, EffectStatus.FAILED, result, error)
        log.error("outbox_effect_failed", kind=effect.kind, error=error)
        return EffectStatus.FAILED

    async def _settle(
        self, effect: _Claimed, status: EffectStatus, result: Json | None, error: str | None
    ) -> None:
        after: AfterCommit | None = None
        async with transaction(self.sessions) as session:
            marked = await _mark_in(session, effect, status, result, error)
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
    effect: _Claimed, status: EffectStatus, result: Json | None, error: str | None
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


# --- SQL -------------------------------------------------------------------------------------


def _of(installation_id: int | None) -> ColumnElement[bool]:
    if installation_id is None:
        return OutboxEffect.installation_id.is_(None)
    return OutboxEffect.installation_id == installation_id


def _due() -> ColumnElement[bool]:
    return (OutboxEffect.status == EffectStatus.PENDING) & (OutboxEffect.not_before <= func.now())


@asynccontextmanager
async def _installation_lock(
    engine: AsyncEngine, installation_id: int | None
) -> AsyncIterator[AsyncConnection | None]:
    """A connection holding the installation's advisory lock, or None if it is taken.

    Transaction-scoped, so it cannot leak into the pool: closing the connection rolls the
    transaction back and frees the lock, however this block ends.
    """
    name = f"openase:outbox:{'none' if installation_id is None else installation_id}"
    async with engine.connect() as connection:
        locked = await connection.scalar(
            select(func.pg_try_advisory_xact_lock(func.hashtextextended(name, 0)))
        )
        yield connection if locked else None


async def _due_installations(sessions: async_sessionmaker[AsyncSession]) -> list[int | None]:
    async with sessions() as session:
        rows = await session.execute(
            select(OutboxEffect.installation_id)
            .where(_due())
            .group_by(OutboxEffect.installation_id)
            .order_by(func.min(OutboxEffect.id))
        )
        return [row[0] for row in rows]


async def _has_due(sessions: async_sessionmaker[AsyncSession], installation_id: int | None) -> bool:
    async with sessions() as session:
        found = await session.scalar(
            select(OutboxEffect.id).where(_due(), _of(installation_id)).limit(1)
        )
        return found is not None


async def _claim(
    sessions: async_sessionmaker[AsyncSession], installation_id: int | None
) -> _Claimed | None:
    """Lease the installation's oldest due effect; SKIP LOCKED keeps two claims apart."""
    due = (
        select(OutboxEffect.id)
        .where(_due(), _of(installation_id))
        .order_by(OutboxEffect.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        update(OutboxEffect)
        .where(OutboxEffect.id == due)
        .values(attempts=OutboxEffect.attempts + 1, not_before=func.now() + literal(LEASE))
        .returning(
            OutboxEffect.id,
            OutboxEffect.key,
            OutboxEffect.kind,
            OutboxEffect.ticket_id,
            OutboxEffect.installation_id,
            OutboxEffect.payload,
            OutboxEffect.attempts,
            OutboxEffect.result,
        )
        .execution_options(synchronize_session=False)
    )
    async with transaction(sessions) as session:
        row = (await session.execute(statement)).first()
    if row is None:
        return None
    return _Claimed(
        id=row.id,
        key=row.key,
        kind=row.kind,
        ticket_id=row.ticket_id,
        installation_id=row.installation_id,
        payload=dict(row.payload),
        attempts=row.attempts,
        result=row.result,
    )


def _scope_pattern(scope: str) -> str:
    escaped = scope.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + REVISION_SEPARATOR + "%"


async def _newer_in_scope(
    sessions: async_sessionmaker[AsyncSession], scope: str, effect_id: int
) -> int | None:
    async with sessions() as session:
        return await session.scalar(
            select(OutboxEffect.id)
            .where(OutboxEffect.id > effect_id, OutboxEffect.key.like(_scope_pattern(scope)))
            .order_by(OutboxEffect.id.desc())
            .limit(1)
        )


async def _previous(
    sessions: async_sessionmaker[AsyncSession], scope: str, effect_id: int
) -> Json | None:
    """The result of the newest effect of the scope that was really performed."""
    async with sessions() as session:
        result = await session.scalar(
            select(OutboxEffect.result)
            .where(
                OutboxEffect.id != effect_id,
                OutboxEffect.key.like(_scope_pattern(scope)),
                OutboxEffect.status == EffectStatus.DONE,
                OutboxEffect.result.is_not(None),
                ~OutboxEffect.result.has_key("superseded_by"),
            )
            .order_by(OutboxEffect.id.desc())
            .limit(1)
        )
        return dict(result) if result is not None else None


async def _mark_in(
    session: AsyncSession,
    effect: _Claimed,
    status: EffectStatus,
    result: Json | None,
    error: str | None,
) -> bool:
    marked = await session.execute(
        update(OutboxEffect)
        .where(OutboxEffect.id == effect.id, OutboxEffect.status == EffectStatus.PENDING)
        .values(status=status, result=result, last_error=error, done_at=func.now())
        .returning(OutboxEffect.id)
        .execution_options(synchronize_session=False)
    )
    return marked.first() is not None


async def _mark(
    sessions: async_sessionmaker[AsyncSession],
    effect: _Claimed,
    status: EffectStatus,
    result: Json | None,
) -> None:
    async with transaction(sessions) as session:
        await _mark_in(session, effect, status, result, None)


async def _reschedule(
    sessions: async_sessionmaker[AsyncSession],
    effect: _Claimed,
    when: datetime | timedelta,
    error: str,
    *,
    counted: bool,
) -> None:
    """Due again at `when` (or that long from now); an uncounted try gives its attempt back."""
    async with transaction(sessions) as session:
        await session.execute(
            update(OutboxEffect)
            .where(OutboxEffect.id == effect.id, OutboxEffect.status == EffectStatus.PENDING)
            .values(
                not_before=func.now() + literal(when) if isinstance(when, timedelta) else when,
                last_error=error,
                attempts=OutboxEffect.attempts - (0 if counted else 1),
            )
            .execution_options(synchronize_session=False)
        )


# --- arq -------------------------------------------------------------------------------------


async def enqueue_perform(
    redis: ArqRedis, *, decision: str, installation_id: int | None = None
) -> bool:
    """Ask a worker to perform due effects now; call after the deciding transaction commits.

    `decision` names that transaction (e.g. f"{ticket_id}:{version}") and becomes the job id
    `outbox:<decision>`: enqueuing one decision twice makes one job, and every decision gets
    its own (a job already running would swallow a re-enqueue under a shared id). Extra jobs
    are cheap: one finding its installation's lock taken leaves at once. False if Redis
    would not take it; the cron sweep performs the effects within seconds anyway.
    """
    try:
        await redis.enqueue_job(PERFORM_OUTBOX_JOB, installation_id, _job_id=f"outbox:{decision}")
    except (RedisError, OSError) as exc:
        log.warning("outbox_enqueue_failed", decision=decision, error=type(exc).__name__)
        return False
    return True


async def perform_outbox_job(ctx: dict[str, Any], installation_id: int | None = None) -> int:
    """arq job `perform_outbox`: the installation's due effects (all, without one)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job=PERFORM_OUTBOX_JOB)
    return await perform_pending(
        ctx["deps"],
        installations=None if installation_id is None else [installation_id],
        on_settled=ctx.get(ON_SETTLED_CTX_KEY),
    )


async def perform_outbox_cron(ctx: dict[str, Any]) -> int:
    """The fallback: overdue effects (retries come due, jobs Redis lost), every few seconds."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job="perform_outbox_cron")
    return await perform_pending(ctx["deps"], on_settled=ctx.get(ON_SETTLED_CTX_KEY))


def outbox_functions() -> list[Any]:
    # keep_result=0: a finished job frees its id at once.
    return [arq_func(perform_outbox_job, name=PERFORM_OUTBOX_JOB, keep_result=0, max_tries=1)]


def outbox_cron_jobs() -> list[CronJob]:
    # unique: one sweep per tick however many workers run (they would only contend anyway).
    return [
        cron(
            perform_outbox_cron,
            name="perform_outbox_cron",
            second=set(CRON_SECONDS),
            unique=True,
            run_at_startup=True,
        )
    ]
