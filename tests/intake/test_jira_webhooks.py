"""`POST /webhooks/jira`: signature or URL token, dedupe on the webhook identifier, and a
signed delivery mirrored as a ticket with its comment."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from adapters.jira.verify import sign
from bot.deps import Deps
from bot.tables.mirror import Comment, Delivery, Ticket
from tests.conftest import AppWith
from tests.support.helpers import FIXTURES as SHARED_FIXTURES

SECRET = "jira-s3cret"
FIXTURES = SHARED_FIXTURES / "jira"
IngestAll = Callable[[], Awaitable[list[str]]]


def body_of(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def headers(body: bytes, **overrides: str | None) -> dict[str, str]:
    values: dict[str, str | None] = {
        "Content-Type": "application/json",
        "X-Atlassian-Webhook-Identifier": "10042",
        "X-Hub-Signature": sign(SECRET.encode(), body),
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


@pytest.fixture
async def jira(app_with: AppWith) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose settings have a Jira webhook secret."""
    async with app_with(jira_webhook_secret=SecretStr(SECRET)) as http:
        yield http


async def deliveries(deps: Deps) -> list[Delivery]:
    async with deps.sessions() as session:
        return list((await session.scalars(select(Delivery).order_by(Delivery.id))).all())


async def test_a_signed_delivery_is_stored_once(jira: httpx.AsyncClient, deps: Deps) -> None:
    body = body_of("issue_updated.json")
    first = await jira.post("/webhooks/jira", content=body, headers=headers(body))
    again = await jira.post("/webhooks/jira", content=body, headers=headers(body))
    assert first.status_code == 202
    assert again.status_code == 200
    (stored,) = await deliveries(deps)
    assert (stored.source, stored.delivery_id, stored.event) == (
        "jira",
        "10042",
        "jira_issue_updated",
    )


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"X-Hub-Signature": "sha256=" + "0" * 64}, 401, "invalid X-Hub-Signature"),
        ({"X-Hub-Signature": None}, 401, "missing X-Hub-Signature"),
        ({"X-Atlassian-Webhook-Identifier": "bad id!"}, 400, "malformed"),
        ({"Content-Type": "text/plain"}, 415, "Content-Type"),
    ],
)
async def test_bad_deliveries_are_refused_and_not_stored(
    jira: httpx.AsyncClient, deps: Deps, change: dict[str, str | None], status: int, says: str
) -> None:
    body = body_of("issue_created.json")
    answer = await jira.post("/webhooks/jira", content=body, headers=headers(body, **change))
    assert answer.status_code == status
    assert says in answer.text
    assert await deliveries(deps) == []


async def test_a_url_token_stands_in_for_a_signature(jira: httpx.AsyncClient, deps: Deps) -> None:
    body = body_of("issue_created.json")
    unsigned = headers(body, **{"X-Hub-Signature": None, "X-Atlassian-Webhook-Identifier": None})
    wrong = await jira.post("/webhooks/jira?token=nope", content=body, headers=unsigned)
    assert wrong.status_code == 401
    ok = await jira.post(f"/webhooks/jira?token={SECRET}", content=body, headers=unsigned)
    assert ok.status_code == 202
    # Without an identifier, the same body is the same delivery.
    again = await jira.post(f"/webhooks/jira?token={SECRET}", content=body, headers=unsigned)
    assert again.status_code == 200
    (stored,) = await deliveries(deps)
    assert stored.delivery_id.startswith("sha256-")


async def test_without_a_secret_jira_webhooks_are_unavailable(client: httpx.AsyncClient) -> None:
    body = body_of("issue_created.json")
    answer = await client.post("/webhooks/jira", content=body, headers=headers(body))
    assert answer.status_code == 503
    assert "JIRA_WEBHOOK_SECRET" in answer.text


async def test_a_jira_issue_and_its_comment_are_mirrored(
    jira: httpx.AsyncClient, deps: Deps, ingest_all: IngestAll
) -> None:
    for index, name in enumerate(("issue_created.json", "comment_created.json", "issue_done.json")):
        body = body_of(name)
        sent = await jira.post(
            "/webhooks/jira",
            content=body,
            headers=headers(body, **{"X-Atlassian-Webhook-Identifier": f"d{index}"}),
        )
        assert sent.status_code == 202
    assert await ingest_all() == ["done", "done", "done"]
    async with deps.sessions() as session:
        (ticket,) = (await session.scalars(select(Ticket))).all()
        (comment,) = (await session.scalars(select(Comment))).all()
    assert (ticket.source, ticket.key, ticket.title) == ("jira", "PROJ-7", "Add a PASS file")
    assert ticket.state == "closed"  # the Done move came last
    assert ticket.body == "The gate wants a PASS file at the root."
    assert comment.body == "/run"
    assert comment.ticket_id == ticket.id


async def test_a_comments_slim_issue_never_overwrites_the_mirrored_one(
    jira: httpx.AsyncClient, deps: Deps, ingest_all: IngestAll
) -> None:
    # The comment's copy of the issue has no description and no labels, and it is newer.
    comment = json.loads(body_of("comment_created.json"))
    comment["issue"]["fields"].pop("labels")
    comment["issue"]["fields"]["updated"] = "2026-11-01T10:00:00.000+0000"
    for index, body in enumerate((body_of("issue_created.json"), json.dumps(comment).encode())):
        sent = await jira.post(
            "/webhooks/jira",
            content=body,
            headers=headers(body, **{"X-Atlassian-Webhook-Identifier": f"s{index}"}),
        )
        assert sent.status_code == 202
    assert await ingest_all() == ["done", "done"]
    async with deps.sessions() as session:
        (ticket,) = (await session.scalars(select(Ticket))).all()
    assert ticket.body == "The gate wants a PASS file at the root."
    assert ticket.labels == ["openase"]
    assert (ticket.tracker or {})["project_key"] == "PROJ"
