"""`/healthz` and the home page, with Postgres or Redis unreachable or hanging.

The outage helpers here build Deps that share the test's healthy clients except for the
one store made unreachable; tests/test_metrics.py and tests/test_api.py use them too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from arq.connections import ArqRedis

from bot.api.health import check_health
from bot.deps import Deps
from bot.processes.app import create_app
from bot.tables.mirror import Delivery, Installation, Repository, Ticket
from harness_store.db import make_engine, make_sessionmaker, transaction

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
    try:
        yield dataclasses.replace(deps, redis=dead)
    finally:
        await dead.aclose()


@asynccontextmanager
async def postgres_down(deps: Deps) -> AsyncIterator[Deps]:
    """Deps whose Postgres URL (with a password in it) points at a closed port."""
    engine = make_engine(f"postgresql://openase:{DEAD_PASSWORD}@127.0.0.1:1/openase")
    try:
        yield dataclasses.replace(deps, engine=engine, sessions=make_sessionmaker(engine))
    finally:
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
    try:
        yield dataclasses.replace(deps, redis=silent)
    finally:
        await silent.aclose()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_healthz_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}
    assert response.headers["cache-control"] == "no-store"


async def test_healthz_names_unreachable_redis(deps: Deps) -> None:
    async with redis_down(deps) as broken, client_for(broken) as http:
        response = await http.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["redis"] == "error: ConnectionError"
    assert "Traceback" not in response.text
    assert "/tmp/" not in response.text


async def test_healthz_names_unreachable_postgres_without_its_url(deps: Deps) -> None:
    async with postgres_down(deps) as broken, client_for(broken) as http:
        response = await http.get("/healthz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"] == "ok"
    assert checks["postgres"].startswith("error: ")
    assert DEAD_PASSWORD not in response.text
    assert "127.0.0.1" not in response.text


async def test_health_check_gives_up_on_a_silent_redis(deps: Deps) -> None:
    async with redis_hanging(deps) as broken:
        checks = await check_health(broken, time_limit=0.2)
    assert checks == {"postgres": "ok", "redis": "timeout after 0.2s"}


async def test_home_page_counts_and_links(client: httpx.AsyncClient, deps: Deps) -> None:
    async with transaction(deps.sessions) as session:
        session.add(Installation(id=1, account_login="octo-org", account_type="Organization"))
        await session.flush()
        session.add(Repository(id=10, installation_id=1, full_name="octo-org/api"))
        await session.flush()
        for number, state in enumerate(["open", "open", "open", "closed"], start=1):
            session.add(
                Ticket(
                    source="github",
                    external_id=str(number),
                    repository_id=10,
                    number=number,
                    key=f"octo-org/api#{number}",
                    state=state,
                )
            )
        for n, status in enumerate(["pending", "failed", "failed", "done"]):
            session.add(
                Delivery(
                    source="github", delivery_id=f"d{n}", event="issues", payload={}, status=status
                )
            )

    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<h1>OpenASE is running</h1>" in page
    for label, count in [
        ("installations", 1),
        ("repositories", 1),
        ("open tickets", 3),
        ("closed tickets", 1),
        ("pending deliveries", 1),
        ("failed deliveries", 2),
    ]:
        assert f"<tr><th>{label}</th><td>{count}</td></tr>" in page
    for href in ("/api/v1/tickets", "/api/v1/deliveries?status=failed", "/healthz", "/metrics"):
        assert f'href="{href}"' in page


async def test_home_page_says_the_database_is_unreachable(deps: Deps) -> None:
    async with postgres_down(deps) as broken, client_for(broken) as http:
        response = await http.get("/")
    assert response.status_code == 503
    assert "OpenASE is running" in response.text
    assert "database is unreachable" in response.text
    assert DEAD_PASSWORD not in response.text
