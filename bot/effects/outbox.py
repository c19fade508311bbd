"""The outbox: side effects decided in a transaction, performed afterwards exactly once
(by bot/effects/perform.py).

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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import BigInteger, DateTime, String, bindparam, func, literal, select, update
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.base import CodeHost
from bot.deps import AfterCommit
from bot.errors import OpenaseError
from bot.jobs import PERFORM_OUTBOX_JOB
from bot.registry import TrackerClients
from bot.tables.plain import PlainStatement
from bot.tables.workflow import EffectStatus, OutboxEffect
from harness_store.db import transaction

log = structlog.get_logger(__name__)

Json = dict[str, Any]

REVISION_SEPARATOR = "#"
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
    github: CodeHost
    sessions: async_sessionmaker[AsyncSession]
    # Linear's and Jira's clients, for their tickets' effects.
    trackers: TrackerClients

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


# Performs one effect and returns its result (JSON); raises to fail or retry (how each error
# is treated: bot/effects/perform.py).
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


# Called in the transaction that marks an effect done or failed (its AfterCommit, such as
# sending a run or merging, runs once that committed), so what the engine decides
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


@dataclass(frozen=True)
class NewEffect:
    """An effect to record (`add_effects`)."""

    key: str
    kind: str
    payload: Mapping[str, Any]
    ticket_id: int | None
    installation_id: int | None
    not_before: datetime | None = None  # None: due now


# Every decision records its effects (a claim three: label, card, status comment), so they
# go in one statement, on plain asyncpg (bot/tables/plain.py): a round trip, not three.
_NEW = (
    func.unnest(
        bindparam("keys", type_=ARRAY(String)),
        bindparam("kinds", type_=ARRAY(String)),
        bindparam("payloads", type_=ARRAY(JSONB)),
        bindparam("ticket_ids", type_=ARRAY(BigInteger)),
        bindparam("installation_ids", type_=ARRAY(BigInteger)),
        bindparam("not_befores", type_=ARRAY(DateTime(timezone=True))),
    )
    .table_valued("key", "kind", "payload", "ticket_id", "installation_id", "not_before")
    .render_derived(name="new")
)
_COLUMNS = [
    "key",
    "kind",
    "payload",
    "ticket_id",
    "installation_id",
    "status",
    "attempts",
    "not_before",
]
_ADD_EFFECTS = PlainStatement(
    insert(OutboxEffect)
    .from_select(
        _COLUMNS,
        select(
            _NEW.c.key,
            _NEW.c.kind,
            _NEW.c.payload,
            _NEW.c.ticket_id,
            _NEW.c.installation_id,
            literal(EffectStatus.PENDING.value),
            literal(0),
            func.coalesce(_NEW.c.not_before, func.now()),
        ),
    )
    .on_conflict_do_nothing(index_elements=[OutboxEffect.key])
    .returning(OutboxEffect.key)
)


async def add_effects(session: AsyncSession, effects: Sequence[NewEffect]) -> set[str]:
    """Record effects in the caller's transaction, in order; the keys that were new (a key
    already there, or twice in `effects`, is recorded once)."""
    for effect in effects:
        if not effect.key or len(effect.key) > _KEY_MAX:
            raise ValueError(
                f"an outbox key must be 1 to {_KEY_MAX} characters: {effect.key[:80]!r}"
            )
    if not effects:
        return set()
    # On plain asyncpg, which skips the session's autoflush: what the decision added before
    # (the ticket's row, its activity) goes first, as SQLAlchemy's execution would send it.
    await session.flush()
    rows = await _ADD_EFFECTS.fetch(
        session,
        {
            "keys": [effect.key for effect in effects],
            "kinds": [effect.kind for effect in effects],
            "payloads": [dict(effect.payload) for effect in effects],
            "ticket_ids": [effect.ticket_id for effect in effects],
            "installation_ids": [effect.installation_id for effect in effects],
            "not_befores": [effect.not_before for effect in effects],
        },
    )
    return {str(row[0]) for row in rows}


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
    effect = NewEffect(key, kind, payload, ticket_id, installation_id, not_before)
    return bool(await add_effects(session, [effect]))


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
