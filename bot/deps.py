"""The shared clients a process builds once at start and passes down (STYLE practice 3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from arq.connections import ArqRedis, RedisSettings, create_pool
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.settings import Settings
from runner.contract import CONTROL_QUEUE  # arq's queue for the control plane

__all__ = ["CONTROL_QUEUE", "Deps", "build_deps", "make_intake_pool", "plain_url", "redis_settings"]
from harness_store.db import make_engine, make_sessionmaker


@dataclass
class Deps:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: ArqRedis
    # A plain asyncpg pool for the webhook hot path: one prepared INSERT per delivery, no ORM.
    intake: Any  # asyncpg.Pool (asyncpg ships no type hints)
    # The workflow engine (bot.engine.core.Engine) of a control worker; None where none runs
    # (the web process, or no GitHub App configured): ingest then only mirrors.
    workflow: Any = None

    async def close(self) -> None:
        # The process's GitHub App clients are cached apart from Deps (bot.intake.backfill, which
        # imports this module); their pooled connections end with the process's other ones.
        from bot.intake.backfill import close_github_apps
        from bot.trackers import close_tracker_clients

        await close_github_apps()
        await close_tracker_clients()
        await self.redis.aclose(close_connection_pool=True)
        await self.intake.close()
        await self.engine.dispose()


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 2
    settings.conn_retries = 1
    return settings


async def build_deps(settings: Settings, *, database_url: str, redis_url: str) -> Deps:
    """Connect to Postgres and Redis; the URLs come resolved (embedded or configured)."""
    engine = make_engine(database_url)
    redis = await create_pool(redis_settings(redis_url), default_queue_name=CONTROL_QUEUE)
    return Deps(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        redis=redis,
        intake=await make_intake_pool(database_url),
    )


async def make_intake_pool(database_url: str, *, size: int = 16) -> Any:
    """A lazily connecting asyncpg pool (min 0: building Deps never waits on Postgres)."""
    return await asyncpg.create_pool(
        plain_url(database_url),
        min_size=0,
        max_size=size,
        timeout=5,
        command_timeout=10,
        # Fewer round trips: the statement is prepared once per connection and cached.
        statement_cache_size=64,
        # The intake only runs one autocommitted INSERT and never sets session state, so the
        # default reset on release (a RESET ALL round trip per request) has nothing to undo.
        reset=_keep_session,
    )


async def _keep_session(connection: Any) -> None:
    """Release hook that leaves the session as it is (see make_intake_pool)."""


def plain_url(url: str) -> str:
    """asyncpg wants postgresql://, not SQLAlchemy's postgresql+asyncpg://."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
