"""Persisting runs' events: each run's Redis stream (`openase:run:<id>:events`, written by
its runner) copied into `run_events`, read on from the run's cursor (`run_event_cursors`,
the id of the last entry persisted), and the run marked running with its last sign of life.

Two ways in, one way to store:
- `collect_events`: one run, to its stream's end (a run's result is taken in).
- `store_batch`: what the engine's sweep read from every open run's stream in one Redis
  round trip (`stream_start`), stored in one transaction with one statement per table.
  With 200 open runs the sweep made some 1,000 round trips and 600 transactions a tick,
  one run after another, and persisted events fell 26-43 s behind (`make bench-scale`).

Every write is idempotent (events keyed by run and seq; the run's state change is
conditional), so two workers persisting the same entries store them once. Two workers
reading at once may set a cursor back a little: the next read repeats a few entries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from redis.asyncio import Redis
from sqlalchemy import ARRAY, DateTime, Float, Integer, String, Text, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.tables.workflow import RunEventCursor, RunState
from harness_store.db import reading
from runner.contract import AgentEvent, ContractMismatch, run_events_stream

log = structlog.get_logger(__name__)

READ_BATCH = 500  # stream entries read a run at a time
# How stale a running run's last sign of life (`runs.last_heartbeat_at`) may be before a
# batch moves it: it is declared lost after 45 s without one (bot/engine/runs/tracking.py).
SIGN_OF_LIFE_EVERY = timedelta(seconds=10)

StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


@dataclass(frozen=True)
class StreamRead:
    """Entries of one run's stream read past its cursor (XRANGE's answer)."""

    run_id: str
    entries: StreamEntries

    @property
    def last_entry(self) -> str:
        return self.entries[-1][0].decode()

    @property
    def more(self) -> bool:
        """Whether the stream may hold more past these (a full batch was read)."""
        return len(self.entries) >= READ_BATCH


def stream_start(cursor: str | None) -> str:
    """XRANGE's `min` for reading on past `cursor` (the whole stream without one)."""
    return "-" if cursor is None else f"({cursor}"


async def collect_events(
    redis: Redis,
    sessions: async_sessionmaker[AsyncSession],
    run_id: str,
    *,
    cursor: str | None = None,
    cursor_known: bool = False,
) -> int:
    """Copy the run's new stream entries into `run_events`; how many were new.

    `cursor_known`: the caller read the run's cursor into `cursor` already."""
    if not cursor_known:
        async with reading(sessions) as session:
            cursor = await session.scalar(
                select(RunEventCursor.entry_id).where(RunEventCursor.run_id == run_id)
            )
    stored = 0
    start = stream_start(cursor)
    while True:
        entries = await redis.xrange(run_events_stream(run_id), min=start, count=READ_BATCH)
        if not entries:
            return stored
        read = StreamRead(run_id, entries)
        stored += (await store_batch(sessions, [read])).inserted
        if not read.more:
            return stored
        start = stream_start(read.last_entry)


@dataclass(frozen=True)
class Stored:
    inserted: int  # events that were new
    held: frozenset[str] = frozenset()  # runs left out: another writer holds their cursor


async def store_batch(
    sessions: async_sessionmaker[AsyncSession],
    reads: Sequence[StreamRead],
    *,
    skip_held: bool = False,
) -> Stored:
    """Store what was read of these runs' streams in one transaction. Each run read moves
    its cursor, and is then marked running (it started: its runner wrote), with the time of
    its latest event as its last sign of life.

    `skip_held`: a run whose cursor another transaction holds (a result's job collecting
    its last events) is left out, to be read again, rather than waited for: such a
    transaction in a busy worker may take seconds to commit, and the recorder's batch of
    every open run waited behind it (events 9-11 s behind when 200 runs ended at once)."""
    async with sessions() as session, session.begin():
        held: frozenset[str] = frozenset()
        if skip_held:
            held = await _held_cursors(session, [read.run_id for read in reads if read.entries])
        rows = _Rows()
        for read in reads:
            if read.entries and read.run_id not in held:
                rows.add(read.run_id, _decode(read.entries), read.last_entry)
        if not rows.cursors:
            return Stored(0, held)
        # The cursors first, whatever the runs' states (a run of only unreadable entries is
        # read past them): their rows, locked from here on, tell another writer of these
        # runs to leave them (`skip_held`) before any event row could make it wait.
        await session.execute(
            _MOVE_CURSORS,
            {
                "ids": [cursor[0] for cursor in rows.cursors],
                "entries": [cursor[1] for cursor in rows.cursors],
            },
        )
        inserted = 0
        if rows.events:
            result = await session.execute(
                _INSERT_EVENTS,
                {
                    "run_ids": [event[0] for event in rows.events],
                    "seqs": [event[1] for event in rows.events],
                    "kinds": [event[2] for event in rows.events],
                    "events": [event[3] for event in rows.events],
                    "ats": [event[4] for event in rows.events],
                },
            )
            inserted = len(result.all())
    if rows.lives:
        # In a transaction of its own, one statement long: the runs' rows are locked only
        # as long as that (results being taken in wait for them), not while events are
        # written. Should it not happen, the run's next events do it.
        async with sessions() as session, session.begin():
            await session.execute(
                _MARK_RUNNING,
                {
                    "ids": [life[0] for life in rows.lives],
                    "firsts": [life[1] for life in rows.lives],
                    "lasts": [life[2] for life in rows.lives],
                    "open": [RunState.QUEUED.value, RunState.RUNNING.value],
                    "running": RunState.RUNNING.value,
                    "every": SIGN_OF_LIFE_EVERY.total_seconds(),
                },
            )
    return Stored(inserted, held)


async def _held_cursors(session: AsyncSession, run_ids: list[str]) -> frozenset[str]:
    """Of these runs, those whose cursor row another transaction holds; the others' rows
    are locked for this one (a run without a cursor yet has none to hold)."""
    if not run_ids:
        return frozenset()
    existing = set(
        await session.scalars(
            select(RunEventCursor.run_id).where(RunEventCursor.run_id.in_(run_ids))
        )
    )
    claimed = set(
        await session.scalars(
            select(RunEventCursor.run_id)
            .where(RunEventCursor.run_id.in_(existing))
            .with_for_update(skip_locked=True)
        )
    )
    return frozenset(existing - claimed)


class _Rows:
    """A batch's rows, in the column arrays its statements take."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, str, str, datetime]] = []
        self.lives: list[tuple[str, datetime, datetime]] = []  # run, first event, latest
        self.cursors: list[tuple[str, str]] = []

    def add(self, run_id: str, events: list[AgentEvent], cursor: str) -> None:
        self.cursors.append((run_id, cursor))
        if not events:
            return
        for event in events:
            wire = json.dumps(event.to_wire())
            self.events.append((run_id, event.seq, event.kind.value, wire, event.at))
        times = [event.at for event in events]
        self.lives.append((run_id, min(times), max(times)))


def _decode(entries: StreamEntries) -> list[AgentEvent]:
    events = []
    for _, fields in entries:
        try:
            event = AgentEvent.from_wire(json.loads(fields[b"event"]))
        except (KeyError, ValueError, ContractMismatch) as error:
            log.warning("run_event_unreadable", error=str(error))
            continue
        events.append(event)
    return events


# Each a single statement whatever the batch's size (arrays, not one parameter per value:
# asyncpg takes at most 32,767 parameters). Rows are written in (run, seq) order, as every
# writer of a run's events does: two batches sharing runs then wait for each other at most,
# never each for the other (unsorted, the recorder's batch and a result's job deadlocked).
_INSERT_EVENTS = text(
    """
    INSERT INTO run_events (run_id, seq, kind, event, at)
    SELECT v.run_id, v.seq, v.kind, v.event::jsonb, v.at
    FROM unnest(:run_ids, :seqs, :kinds, :events, :ats) AS v(run_id, seq, kind, event, at)
    ORDER BY v.run_id, v.seq
    ON CONFLICT DO NOTHING
    RETURNING run_id
    """
).bindparams(
    bindparam("run_ids", type_=ARRAY(String)),
    bindparam("seqs", type_=ARRAY(Integer)),
    bindparam("kinds", type_=ARRAY(String)),
    bindparam("events", type_=ARRAY(Text)),
    bindparam("ats", type_=ARRAY(DateTime(timezone=True))),
)

# A run's row is written only when it changes state (queued -> running) or its last sign of
# life is `SIGN_OF_LIFE_EVERY` old: a batch every 0.5 s locked every open run's row, and a
# result being taken in waited for the batch to commit. A run whose row another transaction
# holds (its result being taken in, its gates being reported) is left for a later batch:
# waiting for it held up the whole batch, every run's events with it (10 s behind when 200
# runs ended at once under `make bench-scale`).
_MARK_RUNNING = text(
    """
    UPDATE runs AS r
    SET state = :running, started_at = coalesce(r.started_at, v.first),
        last_heartbeat_at = v.last
    FROM unnest(:ids, :firsts, :lasts) AS v(id, first, last)
    WHERE r.id = v.id AND r.state = ANY(:open)
      AND r.id IN (
        SELECT due.id FROM runs AS due
        JOIN unnest(:ids, :lasts) AS w(id, last) ON w.id = due.id
        WHERE due.state = ANY(:open)
          AND (due.state <> :running OR due.last_heartbeat_at IS NULL
               OR due.last_heartbeat_at < w.last - make_interval(secs => :every))
        FOR NO KEY UPDATE OF due SKIP LOCKED
      )
    """
).bindparams(
    bindparam("ids", type_=ARRAY(String)),
    bindparam("firsts", type_=ARRAY(DateTime(timezone=True))),
    bindparam("lasts", type_=ARRAY(DateTime(timezone=True))),
    bindparam("open", type_=ARRAY(String)),
    bindparam("every", type_=Float),
)

_MOVE_CURSORS = text(
    """
    INSERT INTO run_event_cursors (run_id, entry_id)
    SELECT * FROM unnest(:ids, :entries) AS v(run_id, entry_id)
    ORDER BY v.run_id
    ON CONFLICT (run_id) DO UPDATE SET entry_id = excluded.entry_id
    """
).bindparams(
    bindparam("ids", type_=ARRAY(String)),
    bindparam("entries", type_=ARRAY(String)),
)
