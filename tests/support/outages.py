"""An app over the test's healthy clients, and Deps whose PostgreSQL or Redis is unreachable
or hangs: for the outage tests of the API, the pages and the metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from arq.connections import ArqRedis

from bot.deps import Deps
from bot.processes.app import create_app
from bot.servers.outages import Outages
from harness_store.db import make_engine, make_sessionmaker

# A password that must never appear in an answer, whatever fails.
DEAD_PASSWORD = "hunter2-not-a-real-password"


@asynccontextmanager
async def client_for(deps: Deps) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client to an app built on these Deps (the URLs are unused when Deps are given)."""
    app = create_app(deps.settings, database_url="unused", redis_url="unused", deps=deps)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://openase.test") as http:
        yield http


@asynccontextmanager
async def redis_down(deps: Deps) -> AsyncIterator[Deps]:
    """Deps whose Redis is a unix socket nobody listens on."""
    dead = ArqRedis(unix_socket_path=f"/tmp/oa-dead-{uuid.uuid4().hex[:8]}.sock")
    outages = Outages()  # its own: the probes must ask the broken clients
    try:
        yield dataclasses.replace(deps, redis=dead, outages=outages)
    finally:
        await outages.aclose()
        await dead.aclose()


@asynccontextmanager
async def postgres_down(deps: Deps) -> AsyncIterator[Deps]:
    """Deps whose Postgres URL (with a password in it) points at a closed port."""
    engine = make_engine(f"postgresql://openase:{DEAD_PASSWORD}@127.0.0.1:1/openase")
    outages = Outages()
    try:
        yield dataclasses.replace(
            deps, engine=engine, sessions=make_sessionmaker(engine), outages=outages
        )
    finally:
        await outages.aclose()
        await engine.dispose()


@asynccontextmanager
async def redis_hanging(deps: Deps) -> AsyncIterator[Deps]:
    """Deps whose Redis accepts connections and never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent = ArqRedis(host="127.0.0.1", port=port)
    outages = Outages()
    try:
        yield dataclasses.replace(deps, redis=silent, outages=outages)
    finally:
        await outages.aclose()
        await silent.aclose()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
