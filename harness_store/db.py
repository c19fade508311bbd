"""The database layer every package shares: one declarative Base, engines and sessions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import MetaData, event, func
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, ORMExecuteState, Session, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import DateTime

# Deterministic constraint names keep Alembic autogenerate stable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True)}


class Timestamped:
    """Row bookkeeping: when we first stored and last changed it (our clock, not the tracker's)."""

    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


def async_url(url: str) -> str:
    """Point a plain postgresql:// URL at the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("not a PostgreSQL URL")


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int | None = None) -> AsyncEngine:
    """An asyncpg-backed engine that survives a restarted Postgres (`_check_at_checkout`).

    It keeps `pool_size` connections open once opened, and opens up to `max_overflow` more
    (as many again unless said) for a burst, closing each as it comes back. A process that
    lives long passes `max_overflow=0` and a pool as large as its bursts: a connection
    closed at a burst's end is opened again at the next, for a new PostgreSQL backend and
    asyncpg's look-ups of its types (`_meet_array_types`)."""
    engine = create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": 30},
    )
    event.listen(engine.sync_engine.pool, "connect", _meet_array_types)
    event.listen(engine.sync_engine.pool, "checkin", _note_idle)
    event.listen(engine.sync_engine.pool, "checkout", _check_at_checkout)
    return engine


# asyncpg has no codec for an array type until it has looked the type up in the catalogue:
# once per connection, the first time one of its statements takes or returns one, by a
# recursive query between two that switch JIT off and back (three round trips, each with
# its own). These are the arrays our statements use (unnest() batches, `IN` lists), but
# `text[]`, which asyncpg knows from the start. Met one by one, they were looked up inside
# transactions holding claim locks and the dashboard's rollup rows, which every other claim
# and result then waited for (`make bench-scale`, sampling pg_stat_activity); met together
# as the connection opens, they cost one look-up, before any transaction.
ARRAY_TYPES = ("varchar", "bigint", "integer", "boolean", "jsonb", "timestamptz")
MEET_ARRAY_TYPES = "SELECT " + ", ".join(
    f"${number}::{name}[]" for number, name in enumerate(ARRAY_TYPES, start=1)
)


async def meet_array_types(connection: Any) -> None:
    """Have a new asyncpg connection look up `ARRAY_TYPES` (preparing a statement is enough:
    asyncpg looks up its parameters' types as it prepares it)."""
    await connection.prepare(MEET_ARRAY_TYPES)


def _meet_array_types(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    dbapi_connection.run_async(meet_array_types)


# A pooled connection idle this long is pinged before it is handed out; one used more
# recently is only asked whether its socket is closed (no round trip).
PING_IDLE_SECONDS = 2.0
_IDLE_SINCE = "openase_idle_since"


def _note_idle(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info[_IDLE_SINCE] = time.monotonic()


def _check_at_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
    """What `pool_pre_ping` did, but a ping only after `PING_IDLE_SECONDS` idle.

    The ping is three round trips on asyncpg (BEGIN, `;`, ROLLBACK) at every checkout:
    about half of the round trips of a one-statement session, and a quarter of the control
    process's socket writes in `make bench-engine`'s burst. A connection PostgreSQL closed
    (a restart) is seen closed by asyncpg as soon as its loop reads the end of the stream;
    one not yet seen fails its first statement, and SQLAlchemy then drops the pool's
    connections, as it did for a failed ping. Raising `DisconnectionError` makes the pool
    discard this connection and hand out another (or a new one)."""
    idle_since = record.info.get(_IDLE_SINCE)
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the pooled connection was closed")
    if idle_since is None or time.monotonic() - idle_since < PING_IDLE_SECONDS:
        return
    try:
        dbapi_connection.ping()
    except Exception as error:
        raise DisconnectionError(f"the pooled connection failed its ping: {error}") from None


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One session in one transaction: commit on success, roll back on any error."""
    async with sessions() as session, session.begin():
        yield session


# The mark of a `reading` session in its `info`.
_READING = "openase_reading"


class WriteInReadingSession(RuntimeError):
    """A `reading` session was asked to write: each statement would commit on its own."""


@asynccontextmanager
async def reading(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session that only reads: each statement runs on its own (autocommit), without the
    BEGIN before and the ROLLBACK after, two round trips of a one-query session's three.

    Under READ COMMITTED, every session's level here, a transaction gives a series of
    reads nothing more: each statement sees its own snapshot either way. What it would
    change is writes (each would commit alone) and row locks (released at once): a
    session that writes or locks is a `transaction`, and a write asked of this one raises
    `WriteInReadingSession` before it is sent. The connection goes back to the pool in
    its usual mode (SQLAlchemy resets the isolation level it set)."""
    async with sessions() as session:
        session.info[_READING] = True
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


@event.listens_for(Session, "do_orm_execute")
def _refuse_writes_when_reading(state: ORMExecuteState) -> None:
    if state.session.info.get(_READING) and not state.is_select:
        raise WriteInReadingSession(f"a reading session does not write: {state.statement}")


@event.listens_for(Session, "before_flush")
def _refuse_flushes_when_reading(session: Session, *_: object) -> None:
    if session.info.get(_READING) and (session.new or session.dirty or session.deleted):
        raise WriteInReadingSession("a reading session does not write: objects to flush")
