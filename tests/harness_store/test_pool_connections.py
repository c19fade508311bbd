"""The connections an engine keeps (harness_store/db.py): a long-lived process's pool keeps
every connection a burst opened, and a new connection has met the array types before any
transaction of ours uses one. Real PostgreSQL; what runs is read from asyncpg's own query
log and PostgreSQL's backend ids."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.deps import make_intake_pool, plain_url
from harness_store.db import ARRAY_TYPES, make_engine
from tests.conftest import Services
from tests.support.query_log import query_log

# A value of each array type: what a statement of ours sends.
_SAMPLES: dict[str, object] = {
    "varchar": ["a"],
    "bigint": [1],
    "integer": [2],
    "boolean": [True],
    "jsonb": ['{"c": 3}'],
    "timestamptz": [datetime(2026, 12, 7, tzinfo=UTC)],
}
_EVERY_ARRAY = "SELECT " + ", ".join(
    f"cardinality(CAST(:{name} AS {name}[]))" for name in ARRAY_TYPES
)


def _looked_up(statements: list[str]) -> list[str]:
    return [statement for statement in statements if "typeinfo_tree" in statement]


async def _burst_backends(engine: AsyncEngine, size: int) -> set[int]:
    """The backends of `size` sessions held at once."""
    everyone_in = asyncio.Barrier(size)

    async def one() -> int:
        async with engine.connect() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
            await everyone_in.wait()  # every connection is out of the pool at once
            assert isinstance(pid, int)
            return pid

    return set(await asyncio.gather(*(one() for _ in range(size))))


async def test_a_pool_without_overflow_keeps_what_a_burst_opened(services: Services) -> None:
    kept = make_engine(services.database_url, pool_size=6, max_overflow=0)
    overflowing = make_engine(services.database_url, pool_size=3)  # and 3 for bursts
    try:
        first = await _burst_backends(kept, 6)
        assert await _burst_backends(kept, 6) == first  # the same six: none opened again
        first = await _burst_backends(overflowing, 6)
        again = await _burst_backends(overflowing, 6)
        assert len(again - first) == 3  # the burst's three were closed and opened again
    finally:
        await kept.dispose()
        await overflowing.dispose()


async def test_a_new_connection_has_met_every_array_type_before_it_is_used(
    services: Services,
) -> None:
    engine = make_engine(services.database_url, pool_size=1)
    try:
        seen, stop = await query_log(engine)  # opens the pool's one connection
        try:
            async with engine.connect() as conn:
                row = (await conn.execute(text(_EVERY_ARRAY), _SAMPLES)).one()
        finally:
            stop()
        assert tuple(row) == (1,) * len(ARRAY_TYPES)
        assert _looked_up(seen) == []
    finally:
        await engine.dispose()
    # What a connection that has not met them does: the look-up this spares.
    raw = await asyncpg.connect(plain_url(services.database_url))
    try:
        looked: list[str] = []
        raw.add_query_logger(lambda record: looked.append(record.query))
        await raw.fetchval("SELECT cardinality($1::bigint[])", [1])
        assert len(_looked_up(looked)) == 1
    finally:
        await raw.close()


async def test_the_intakes_new_connections_have_met_its_arrays(services: Services) -> None:
    """The webhook INSERT's arrays (bot/intake/group_insert.py) are not looked up while a
    webhook waits for its answer."""
    pool = await make_intake_pool(services.database_url, size=1)
    try:
        async with pool.acquire() as connection:
            looked: list[str] = []
            connection.add_query_logger(lambda record: looked.append(record.query))
            count = await connection.fetchval(
                "SELECT cardinality($1::text[]) + cardinality($2::bigint[])", ["a"], [1]
            )
        assert count == 2
        assert _looked_up(looked) == []
    finally:
        await pool.close()
