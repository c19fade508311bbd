"""The pool's check at checkout (harness_store/db.py): a connection PostgreSQL closed is
never handed out, and only one idle for a while pays a ping's round trips. Real
PostgreSQL; what runs on a connection is read from asyncpg's own query log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from harness_store import db
from harness_store.db import make_engine
from tests.conftest import Services
from tests.support.query_log import query_log


@pytest.fixture
async def engine(services: Services) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(services.database_url, pool_size=1)
    try:
        yield engine
    finally:
        await engine.dispose()


async def backend_pid(conn: AsyncConnection) -> int:
    pid = await conn.scalar(text("SELECT pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


async def queries_at_checkout(engine: AsyncEngine) -> list[str]:
    """The statements run on the pooled connection by the next checkout, before ours."""
    seen, stop = await query_log(engine)
    try:
        async with engine.connect() as conn:
            before_ours = list(seen)
            await conn.scalar(text("SELECT 1"))
    finally:
        stop()
    return before_ours


async def test_a_connection_used_moments_ago_is_handed_out_without_a_ping(
    engine: AsyncEngine,
) -> None:
    assert await queries_at_checkout(engine) == []


async def test_a_connection_idle_a_while_is_pinged_first(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_IDLE_SECONDS", 0.0)
    assert ";" in await queries_at_checkout(engine)


async def test_a_connection_postgresql_ended_is_replaced_at_checkout(
    engine: AsyncEngine, services: Services
) -> None:
    """What a restarted PostgreSQL does to every pooled connection: without the check, the
    next session's first statement failed."""
    async with engine.connect() as conn:
        ended = await backend_pid(conn)
    killer = make_engine(services.database_url, pool_size=1)
    try:
        async with killer.connect() as conn:
            assert await conn.scalar(text(f"SELECT pg_terminate_backend({ended})"))
    finally:
        await killer.dispose()
    await asyncio.sleep(0.2)  # the pooled connection's loop reads the end of its stream
    async with engine.connect() as conn:
        assert await backend_pid(conn) != ended
