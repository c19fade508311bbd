"""What every benchmark stands on: real PostgreSQL and Redis, migrated.

Embedded ones in a fresh temporary directory, or the throwaway servers named by
OPENASE_BENCH_DATABASE_URL / OPENASE_BENCH_REDIS_URL (benchmarks that seed data empty
every table of those first, with `empty_tables`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import bot.tables.mirror  # noqa: F401  # every table (mirror, engine, harness store) on Base
from bot.processes.migrate import upgrade
from bot.servers.embedded import EmbeddedPostgres, EmbeddedRedis
from harness_store.db import Base


@dataclass(frozen=True)
class BenchServices:
    database_url: str
    redis_url: str
    root: Path  # a scratch directory, removed afterwards


@contextmanager
def bench_services() -> Iterator[BenchServices]:
    """Migrated PostgreSQL and Redis for one benchmark run, stopped afterwards."""
    database_url = os.environ.get("OPENASE_BENCH_DATABASE_URL")
    redis_url = os.environ.get("OPENASE_BENCH_REDIS_URL")
    # Short path: unix socket paths must stay under ~100 bytes.
    root = Path(tempfile.mkdtemp(prefix="oa-bench-"))
    pg = EmbeddedPostgres(root / "pg") if not database_url else None
    redis = EmbeddedRedis(root / "redis", persist=False) if not redis_url else None
    try:
        database_url = database_url or pg.start()  # type: ignore[union-attr]
        redis_url = redis_url or redis.start()  # type: ignore[union-attr]
        upgrade(database_url)
        yield BenchServices(database_url, redis_url, root)
    finally:
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


async def empty_tables(engine: AsyncEngine) -> None:
    """Every table emptied, ids restarted: each run starts from the same state."""
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
