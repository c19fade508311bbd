"""Sessions that only read (harness_store/db.py `reading`): one round trip a statement, no
BEGIN or ROLLBACK around them, writes refused before they are sent, and the connection
back in the pool as it was. Real PostgreSQL; the transaction control sent on the
connection is read from asyncpg's own query log (which has what asyncpg runs unprepared:
BEGIN, COMMIT, ROLLBACK, text; not the prepared statements SQLAlchemy runs)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.tables.machines import MachineControl
from harness_store.db import WriteInReadingSession, make_engine, make_sessionmaker, reading
from harness_store.db import transaction as in_transaction
from tests.conftest import Services
from tests.support.query_log import query_log


@pytest.fixture
async def engine(services: Services) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(services.database_url, pool_size=1)  # one connection: the same each time
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_a_reading_session_sends_its_statements_and_nothing_else(
    engine: AsyncEngine,
) -> None:
    sessions = make_sessionmaker(engine)
    seen, _ = await query_log(engine)
    async with reading(sessions) as session:
        assert await session.get(MachineControl, "reading-none") is None
        assert await session.scalar(select(func.now())) is not None
    assert seen == []

    async with sessions() as session:  # what a plain session costs, for comparison
        await session.scalar(select(func.now()))
    assert [query.split()[0].rstrip(";") for query in seen] == ["BEGIN", "ROLLBACK"]


async def test_a_write_in_a_reading_session_is_refused_before_it_is_sent(
    engine: AsyncEngine,
) -> None:
    sessions = make_sessionmaker(engine)
    seen, _ = await query_log(engine)
    row = {"name": "reading-m1", "state": "paused", "changed_by": "alice"}
    async with reading(sessions) as session:
        with pytest.raises(WriteInReadingSession, match="does not write: INSERT INTO"):
            await session.execute(insert(MachineControl).values(**row))
        session.add(MachineControl(**row))
        with pytest.raises(WriteInReadingSession, match="objects to flush"):
            await session.flush()
        session.expunge_all()
        with pytest.raises(WriteInReadingSession):  # text: not known to be a read
            await session.execute(text("DELETE FROM machine_controls WHERE name = 'reading-m1'"))
    assert seen == []  # nothing sent: not even the text DELETE
    async with reading(sessions) as session:
        assert await session.get(MachineControl, "reading-m1") is None


async def test_the_connection_goes_back_to_the_pool_transactional(engine: AsyncEngine) -> None:
    """A reading session's connection is the next transaction's: that one still rolls back
    as a whole."""
    sessions: async_sessionmaker[AsyncSession] = make_sessionmaker(engine)
    async with reading(sessions) as session:
        await session.scalar(select(func.now()))

    class Undo(Exception):
        pass

    async def insert_then_fail() -> None:
        async with in_transaction(sessions) as session:
            await session.execute(
                insert(MachineControl).values(name="reading-m2", state="paused", changed_by="bob")
            )
            raise Undo

    with pytest.raises(Undo):
        await insert_then_fail()
    async with reading(sessions) as session:
        assert await session.get(MachineControl, "reading-m2") is None
