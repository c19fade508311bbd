"""The shared clients a process builds once at start and passes down (STYLE practice 3)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from adapters.base import CodeHost, NormalizedEvent
from bot.jobs import CONTROL_QUEUE
from bot.registry import Clients, TrackerClients
from bot.servers.outages import Outages
from bot.settings import Settings
from harness_store.db import make_engine, make_sessionmaker, meet_array_types

__all__ = [
    "AfterCommit",
    "Deps",
    "EventReactor",
    "build_deps",
    "make_intake_pool",
    "plain_url",
    "redis_client",
]

# What a decision asks to be done once its transaction committed.
AfterCommit = Callable[[], Awaitable[None]]


class EventReactor(Protocol):
    """What the control worker does with a delivery's events besides mirroring them (the
    workflow engine, wired in by the composition root; ingest knows only this much)."""

    async def react(
        self,
        session: AsyncSession,
        events: Sequence[NormalizedEvent],
        installation_id: int | None,
    ) -> AfterCommit:
        """Decide in the caller's transaction; the returned call runs after its commit."""
        ...


@dataclass
class Deps:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: ArqRedis
    # A plain asyncpg pool for the webhook hot path: prepared INSERTs, no ORM.
    intake: Any  # asyncpg.Pool (asyncpg ships no type hints)
    # The workflow engine of a control worker; None where none runs (the web process, or no
    # GitHub App configured): ingest then only mirrors.
    workflow: EventReactor | None = None
    # The process's GitHub, Linear and Jira clients (tokens, rate limits, caches).
    clients: Clients = field(default_factory=Clients)
    # Which of PostgreSQL and Redis are away now (said once per outage, watched till back).
    outages: Outages = field(default_factory=Outages)
    # What inserts webhooks through `intake` together (bot/intake/group_insert.py), made
    # on the first one; a Deps given another pool makes its own.
    intake_inserts: Any = None

    def __post_init__(self) -> None:
        self.outages.probes.setdefault("postgres", self._ping_postgres)
        self.outages.probes.setdefault("redis", self.redis.ping)

    async def _ping_postgres(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    def github_app(self) -> CodeHost:
        """The GitHub App client (ConfigError when no App is configured)."""
        return self.clients.github_app(self.settings)

    def trackers(self) -> TrackerClients:
        """Linear's and Jira's clients (each None when not configured)."""
        return self.clients.trackers(self.settings)

    async def close(self) -> None:
        await self.outages.aclose()
        await self.clients.aclose()
        await self.redis.aclose(close_connection_pool=True)
        await self.intake.close()
        await self.engine.dispose()


# A Redis that does not answer (a cut network, a stopped server) fails each command within
# this long instead of hanging it: the outage is then noticed and waited out (bot/servers/
# outages.py). No command of ours blocks on the server for longer.
REDIS_CONNECT_TIMEOUT = 2.0
REDIS_COMMAND_TIMEOUT = 5.0

# A process's PostgreSQL connections: opened as needed, then kept. A worker runs up to 50
# jobs at once; this many sessions at a time was the most before too (10 kept and 10 more
# for bursts), but a burst's extra 10 were closed at its end and opened again at the next
# (nine new ones within 150 ms as 200 results came in under `make bench-scale`).
ENGINE_CONNECTIONS = 20


def redis_client(url: str, *, queue: str = CONTROL_QUEUE) -> ArqRedis:
    """An arq Redis client that connects on its first command, not here (arq's
    `create_pool` pings, so a process could not even start while Redis is away)."""
    pool = ConnectionPool.from_url(
        url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        socket_timeout=REDIS_COMMAND_TIMEOUT,
        encoding="utf8",
    )
    return ArqRedis(pool, default_queue_name=queue)


async def build_deps(settings: Settings, *, database_url: str, redis_url: str) -> Deps:
    """Clients of Postgres and Redis; the URLs come resolved (embedded or configured).
    Neither is connected here: a process starts while a store is away, and waits for it."""
    engine = make_engine(database_url, pool_size=ENGINE_CONNECTIONS, max_overflow=0)
    redis = redis_client(redis_url)
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
        # Its INSERT's arrays looked up as a connection opens, not in a webhook's answer.
        init=meet_array_types,
    )


async def _keep_session(connection: Any) -> None:
    """Release hook that leaves the session as it is (see make_intake_pool)."""


def plain_url(url: str) -> str:
    """asyncpg wants postgresql://, not SQLAlchemy's postgresql+asyncpg://."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
