"""`POST /webhooks/github`: verification, storage before answering, duplicates, failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import func, select

from adapters.github.verify import sign
from bot.deps import Deps, build_deps
from bot.intake.deliveries import MAX_BODY_BYTES
from bot.processes.app import create_app
from bot.settings import Settings
from bot.tables.mirror import Delivery
from tests.conftest import Services
from tests.support.deliveries import notifications, queued_deliveries
from tests.support.helpers import TEST_WEBHOOK_SECRET, GitHubWebhookSender, github_example

RunWorker = Callable[[], Awaitable[object]]


async def _count(deps: Deps) -> int:
    async with deps.sessions() as s:
        return (await s.execute(select(func.count()).select_from(Delivery))).scalar_one()


async def _queued_jobs(deps: Deps) -> int:
    return len(await queued_deliveries(deps))


def _body() -> bytes:
    return json.dumps(github_example("issues", "opened")).encode()


def _headers(body: bytes, **overrides: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": sign(TEST_WEBHOOK_SECRET.encode(), body),
    }
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v is not None}


@pytest.mark.parametrize(
    ("overrides", "status", "message"),
    [
        ({"X-Hub-Signature-256": None}, 401, "X-Hub-Signature-256"),
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, 401, "X-Hub-Signature-256"),
        ({"X-Hub-Signature-256": sign(b"another-secret", _body())}, 401, "X-Hub-Signature-256"),
        ({"X-Hub-Signature-256": "sha1=abc"}, 401, "X-Hub-Signature-256"),
        ({"X-Hub-Signature-256": "garbage"}, 401, "X-Hub-Signature-256"),
        ({"X-GitHub-Event": None}, 400, "missing X-GitHub-Event"),
        ({"X-GitHub-Event": "Issues; DROP"}, 400, "malformed X-GitHub-Event"),
        ({"X-GitHub-Delivery": None}, 400, "missing X-GitHub-Delivery"),
        ({"X-GitHub-Delivery": "../../etc/passwd"}, 400, "malformed X-GitHub-Delivery"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type"),
        ({"Content-Type": None}, 415, "Content-Type"),
    ],
)
async def test_bad_requests_are_refused_and_nothing_is_stored(
    client: httpx.AsyncClient,
    deps: Deps,
    overrides: dict[str, str | None],
    status: int,
    message: str,
) -> None:
    body = _body()
    response = await client.post(
        "/webhooks/github", content=body, headers=_headers(body, **overrides)
    )
    assert response.status_code == status
    assert message in response.json()["error"]
    assert await _count(deps) == 0
    assert await _queued_jobs(deps) == 0


async def test_signature_over_a_different_body_is_refused(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    body = _body()
    headers = _headers(body)
    tampered = body.replace(b"Spelling error", b"Spelling errorX")
    assert tampered != body
    response = await client.post("/webhooks/github", content=tampered, headers=headers)
    assert response.status_code == 401
    assert await _count(deps) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object"), (b"\xff\xfe", "not valid JSON")],
)
async def test_malformed_json_is_refused(
    client: httpx.AsyncClient, deps: Deps, body: bytes, message: str
) -> None:
    response = await client.post("/webhooks/github", content=body, headers=_headers(body))
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert await _count(deps) == 0


async def test_a_lone_surrogate_jsonb_would_refuse_is_refused_with_the_reason(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    """Valid JSON to Python's own parser, not to jsonb: 400 with the reason, where a 503
    had GitHub and the relay send it again and again."""
    body = b'{"action": "opened", "issue": {"title": "\\ud800"}}'
    response = await client.post("/webhooks/github", content=body, headers=_headers(body))
    assert response.status_code == 400
    assert response.json()["error"].startswith("body is not valid JSON: ")
    assert "surrogate" in response.json()["error"]
    assert await _count(deps) == 0


async def test_a_payload_postgresql_cannot_store_is_refused_not_retried_forever(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    """Data PostgreSQL refuses (a repository name longer than GitHub allows, past its
    column): 400 with PostgreSQL's reason, never 503, and nothing stored."""
    payload = {"action": "opened", "repository": {"full_name": "o/" + "r" * 300}}
    body = json.dumps(payload).encode()
    response = await client.post("/webhooks/github", content=body, headers=_headers(body))
    assert response.status_code == 400
    assert response.json()["error"].startswith("delivery cannot be stored: ")
    assert "too long" in response.json()["error"]
    assert await _count(deps) == 0


async def test_oversized_payload_is_refused_by_declared_length(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    body = _body()
    headers = _headers(body) | {"Content-Length": str(MAX_BODY_BYTES + 1)}

    async def stream() -> AsyncIterator[bytes]:
        yield body

    response = await client.post("/webhooks/github", content=stream(), headers=headers)
    assert response.status_code == 413
    assert await _count(deps) == 0


async def test_oversized_payload_is_refused_while_streaming(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    chunk = b" " * (1024 * 1024)

    async def stream() -> AsyncIterator[bytes]:
        yield b'{"a": "'
        for _ in range(26):
            yield chunk

    headers = _headers(b"") | {"Transfer-Encoding": "chunked"}
    response = await client.post("/webhooks/github", content=stream(), headers=headers)
    assert response.status_code == 413
    assert await _count(deps) == 0


async def test_accepted_delivery_is_stored_before_the_answer_and_queued_once(
    github: GitHubWebhookSender, deps: Deps
) -> None:
    payload = github_example("issues", "opened")
    async with notifications(deps) as heard:
        response = await github.send("issues", payload, delivery_id="d-1")
        assert response.status_code == 202
        await asyncio.wait_for(heard.get(), 5)  # an idle worker is woken at once
    pk = response.json()["delivery"]
    async with deps.sessions() as s:
        row = (await s.execute(select(Delivery).where(Delivery.id == pk))).scalar_one()
    assert (row.source, row.delivery_id, row.event, row.action) == (
        "github",
        "d-1",
        "issues",
        "opened",
    )
    assert row.repository == payload["repository"]["full_name"]
    assert row.payload == payload
    assert row.status == "pending"
    assert await queued_deliveries(deps) == [pk]


async def test_redelivery_is_acknowledged_and_not_processed_twice(
    github: GitHubWebhookSender, deps: Deps, run_worker: RunWorker
) -> None:
    payload = github_example("issues", "opened")
    first = await github.send("issues", payload, delivery_id="same-guid")
    await run_worker()
    again = await github.send("issues", payload, delivery_id="same-guid")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {"status": "duplicate"}
    assert await _count(deps) == 1
    assert await _queued_jobs(deps) == 0
    async with deps.sessions() as s:
        attempts = (await s.execute(select(Delivery.attempts))).scalar_one()
    assert attempts == 1


async def test_nul_characters_are_stored_not_refused(
    github: GitHubWebhookSender, deps: Deps, run_worker: RunWorker
) -> None:
    payload = github_example("issues", "opened")
    payload["issue"]["body"] = "before\x00after"
    response = await github.send("issues", payload)
    assert response.status_code == 202
    await run_worker()
    async with deps.sessions() as s:
        stored = (await s.execute(select(Delivery))).scalar_one()
    assert stored.payload["issue"]["body"] == "before\ufffdafter"
    assert stored.status == "done"


async def test_a_payload_stored_re_encoded_keeps_a_big_integer_exact(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    """A NUL makes the payload stored re-encoded: an integer past 64 bits stays exact."""
    body = (
        b'{"action": "opened", "issue": {"body": "a\\u0000b", "n": 123456789012345678901234567890}}'
    )
    response = await client.post("/webhooks/github", content=body, headers=_headers(body))
    assert response.status_code == 202
    async with deps.sessions() as s:
        stored = (await s.execute(select(Delivery))).scalar_one()
    assert stored.payload["issue"] == {"body": "a\ufffdb", "n": 123456789012345678901234567890}


async def test_postgres_unavailable_answers_503_and_enqueues_nothing(
    services: Services, settings: Settings, deps: Deps
) -> None:
    dead = await build_deps(
        settings,
        database_url="postgresql://postgres@/postgres?host=/nonexistent-openase-socket-dir",
        redis_url=services.redis_url,
    )
    app = create_app(settings, database_url="", redis_url="", deps=dead)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://openase.test"
        ) as http:
            response = await GitHubWebhookSender(http).send(
                "issues", github_example("issues", "opened")
            )
    finally:
        await dead.close()
    assert response.status_code == 503
    assert "could not be stored" in response.json()["error"]
    assert await _queued_jobs(deps) == 0


async def test_redis_down_still_stores_and_queues(
    services: Services, settings: Settings, deps: Deps, run_worker: RunWorker
) -> None:
    # Redis went away after start: a client whose socket leads nowhere.
    no_redis = Deps(
        settings=settings,
        engine=deps.engine,
        sessions=deps.sessions,
        redis=ArqRedis(unix_socket_path="/nonexistent-openase/redis.sock"),
        intake=deps.intake,
    )
    app = create_app(settings, database_url="", redis_url="", deps=no_redis)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://openase.test"
    ) as http:
        response = await GitHubWebhookSender(http).send(
            "issues", github_example("issues", "opened")
        )
    await no_redis.redis.aclose()
    # Stored in Postgres, so acknowledging is honest, and queued there: no Redis needed.
    assert response.status_code == 202
    assert await _queued_jobs(deps) == 1
    await run_worker()
    async with deps.sessions() as s:
        assert (await s.execute(select(Delivery.status))).scalar_one() == "done"
