"""`/healthz` and the home page, with Postgres or Redis unreachable or hanging (the outage
helpers, shared with the API, page and metrics tests, are in tests/support/outages.py)."""

from __future__ import annotations

import httpx

from bot.api.health import check_health
from bot.deps import Deps
from bot.tables.mirror import Delivery, Installation, Repository, Ticket
from harness_store.db import transaction
from tests.support.outages import (
    DEAD_PASSWORD,
    client_for,
    postgres_down,
    redis_down,
    redis_hanging,
)


async def test_healthz_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}
    assert response.headers["cache-control"] == "no-store"


async def test_healthz_names_unreachable_redis_and_stays_ready(deps: Deps) -> None:
    # Without Redis, webhooks are still stored (and wait in Postgres): degraded, still 200.
    async with redis_down(deps) as broken, client_for(broken) as http:
        response = await http.get("/healthz")
        again = await http.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["redis"] == "error: ConnectionError"
    assert set(body["away_seconds"]) == {"redis"}
    assert again.json()["away_seconds"]["redis"] >= body["away_seconds"]["redis"]
    assert "Traceback" not in response.text
    assert "/tmp/" not in response.text


async def test_healthz_names_unreachable_postgres_without_its_url(deps: Deps) -> None:
    async with postgres_down(deps) as broken, client_for(broken) as http:
        response = await http.get("/healthz")
    assert response.status_code == 503  # no webhook can be stored: not ready
    assert response.json()["status"] == "degraded"
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
    assert "OpenASE is running" in page
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
