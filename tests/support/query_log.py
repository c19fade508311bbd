"""What asyncpg sends unprepared on a pooled connection (BEGIN, COMMIT, ROLLBACK, pings,
text statements; not the prepared statements SQLAlchemy runs), from its own query log."""

from __future__ import annotations

from collections.abc import Callable

from asyncpg.connection import LoggedQuery
from sqlalchemy.ext.asyncio import AsyncEngine


async def query_log(engine: AsyncEngine) -> tuple[list[str], Callable[[], None]]:
    """The list the statements of `engine`'s pooled connection (a pool of one) are added
    to from now on, and how to stop adding them."""
    seen: list[str] = []
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None

    def log(record: LoggedQuery) -> None:
        seen.append(record.query)

    driver.add_query_logger(log)
    return seen, lambda: driver.remove_query_logger(log)
