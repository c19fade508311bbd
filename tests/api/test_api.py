"""The read API: filters, keyset pagination, every 400, 404, auth, and one webhook end to end.

State is inserted directly with the ORM models; the end-to-end test goes through the real
webhook intake and control worker instead.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.deps import Deps
from bot.tables.mirror import (
    Comment,
    Delivery,
    DeliveryTicket,
    PullRequest,
    Repository,
    Ticket,
    TicketPullRequest,
)
from harness_store.db import transaction
from tests.support.helpers import GitHubWebhookSender, github_example
from tests.support.outages import client_for, postgres_down

API = "/api/v1"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


async def add_repos(deps: Deps, *names: str) -> list[int]:
    """Repositories with ids 10, 11, ... in the order given."""
    async with transaction(deps.sessions) as session:
        for offset, name in enumerate(names):
            session.add(Repository(id=10 + offset, full_name=name))
    return [10 + offset for offset in range(len(names))]


async def add_ticket(
    deps: Deps,
    repo_id: int | None,
    number: int,
    *,
    state: str = "open",
    labels: tuple[str, ...] = (),
    source: str = "github",
    **fields: Any,
) -> int:
    async with transaction(deps.sessions) as session:
        ticket = Ticket(
            source=source,
            external_id=f"{repo_id}-{number}",
            repository_id=repo_id,
            number=number,
            key=f"{repo_id}#{number}",
            title=f"ticket {number}",
            state=state,
            labels=list(labels),
            **{"assignees": [], **fields},
        )
        session.add(ticket)
        await session.flush()
        return ticket.id


async def add_delivery(deps: Deps, guid: str, *, status: str = "done", **fields: Any) -> int:
    values: dict[str, Any] = {"event": "issues", "action": "edited", "payload": {"guid": guid}}
    values.update(fields)
    async with transaction(deps.sessions) as session:
        delivery = Delivery(source="github", delivery_id=guid, status=status, **values)
        session.add(delivery)
        await session.flush()
        return delivery.id


async def walk(client: httpx.AsyncClient, path: str, key: str, **params: Any) -> list[list[int]]:
    """Follow next_cursor to the end; the ids of each page."""
    pages: list[list[int]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item["id"] for item in body[key]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not terminate"


@pytest.fixture
async def seeded(deps: Deps) -> dict[str, int]:
    """Tickets across two repositories and a Linear team, by a short name."""
    api, web = await add_repos(deps, "Octo-Org/API", "octo-org/web")
    return {
        "api1": await add_ticket(deps, api, 1, labels=("bug", "p1")),
        "api2": await add_ticket(deps, api, 2, state="closed", labels=("bug",)),
        "api3": await add_ticket(deps, api, 3, labels=("p1",)),
        "web1": await add_ticket(deps, web, 1, labels=("p1", "bug", "ui")),
        "web2": await add_ticket(deps, web, 2, state="deleted"),
        "eng7": await add_ticket(deps, None, 7, source="linear", labels=("bug",)),
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["eng7", "web2", "web1", "api3", "api2", "api1"]),
        ({"repo": "octo-org/api"}, ["api3", "api2", "api1"]),
        ({"repo": "OCTO-ORG/Web"}, ["web2", "web1"]),
        ({"repo": "octo-org/nothing"}, []),
        ({"state": "closed"}, ["api2"]),
        ({"state": "deleted"}, ["web2"]),
        ({"label": "bug"}, ["eng7", "web1", "api2", "api1"]),
        ({"label": ["bug", "p1"]}, ["web1", "api1"]),
        ({"label": ["bug", "missing"]}, []),
        ({"repo": "octo-org/api", "state": "open", "label": "p1"}, ["api3", "api1"]),
        ({"source": "linear"}, ["eng7"]),
        ({"source": "github", "label": "bug", "state": "open"}, ["web1", "api1"]),
    ],
)
async def test_list_filters(
    client: httpx.AsyncClient, seeded: dict[str, int], params: dict[str, Any], expected: list[str]
) -> None:
    response = await client.get(f"{API}/tickets", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [t["id"] for t in body["tickets"]] == [seeded[name] for name in expected]
    assert body["next_cursor"] is None


async def test_list_item_shape(client: httpx.AsyncClient, deps: Deps) -> None:
    [repo] = await add_repos(deps, "octo-org/api")
    tid = await add_ticket(
        deps,
        repo,
        5,
        labels=("bug",),
        body="not in the listing",
        author_login="octocat",
        milestone="v1",
        html_url="https://github.com/octo-org/api/issues/5",
        external_created_at=T0,
        external_updated_at=T0,
    )
    [ticket] = (await client.get(f"{API}/tickets")).json()["tickets"]
    mirrored_at = ticket.pop("mirrored_at")
    assert datetime.fromisoformat(mirrored_at).tzinfo is not None
    assert ticket == {
        "id": tid,
        "source": "github",
        "external_id": f"{repo}-5",
        "key": f"{repo}#5",
        "repository": "octo-org/api",
        "number": 5,
        "title": "ticket 5",
        "state": "open",
        "state_reason": None,
        "author": "octocat",
        "labels": ["bug"],
        "assignees": [],
        "milestone": "v1",
        "html_url": "https://github.com/octo-org/api/issues/5",
        "created_at": "2024-05-01T12:00:00+00:00",
        "updated_at": "2024-05-01T12:00:00+00:00",
        "closed_at": None,
    }


async def test_pagination_walks_every_ticket_once(client: httpx.AsyncClient, deps: Deps) -> None:
    [repo] = await add_repos(deps, "octo-org/api")
    ids = [await add_ticket(deps, repo, n, labels=("bug",) if n % 2 else ()) for n in range(1, 12)]

    pages = await walk(client, f"{API}/tickets", "tickets", limit=3)
    assert [len(p) for p in pages] == [3, 3, 3, 2]
    assert [i for p in pages for i in p] == sorted(ids, reverse=True)

    bug_pages = await walk(client, f"{API}/tickets", "tickets", limit=2, label="bug")
    assert [i for p in bug_pages for i in p] == sorted(ids[0::2], reverse=True)

    # A page that ends exactly at the last ticket has no next cursor.
    assert [len(p) for p in await walk(client, f"{API}/tickets", "tickets", limit=11)] == [11]


async def test_default_limit_is_50(client: httpx.AsyncClient, deps: Deps) -> None:
    [repo] = await add_repos(deps, "octo-org/api")
    for n in range(51):
        await add_ticket(deps, repo, n)
    body = (await client.get(f"{API}/tickets")).json()
    assert len(body["tickets"]) == 50
    assert body["next_cursor"] is not None


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=ten", "limit: must be an integer"),
        ("limit=1.5", "limit: must be an integer"),
        ("limit=0", "limit: must be between 1 and 200, got 0"),
        ("limit=-3", "limit: must be between 1 and 200, got -3"),
        ("limit=201", "limit: must be between 1 and 200, got 201"),
        ("limit=99999999999999999999", "limit: must be an integer"),
        ("limit=", "limit: must not be empty"),
        ("state=opened", "state: unknown value 'opened'"),
        ("state=open&state=closed", "state: give it at most once"),
        ("source=gitlab", "source: unknown value 'gitlab'"),
        ("repo=octo-org", "repo: malformed; expected OWNER/NAME"),
        ("repo=a/b/c", "repo: malformed; expected OWNER/NAME"),
        ("repo=octo%20org/api", "repo: malformed; expected OWNER/NAME"),
        ("label=", "label: must not be empty"),
        ("cursor=%%%", "cursor: malformed"),
        ("cursor=not-base64!", "cursor: malformed"),
        (f"cursor={_cursor('hello')}", "cursor: malformed"),
        (f"cursor={_cursor('v1:tickets:0')}", "cursor: malformed"),
        (f"cursor={_cursor('v1:tickets:99999999999999999999')}", "cursor: malformed"),
        (f"cursor={_cursor('v1:deliveries:5')}", "cursor: belongs to another listing"),
        ("status=open", "status: unknown query parameter"),
        ("labels=bug", "labels: unknown query parameter"),
    ],
)
async def test_list_tickets_rejects_bad_parameters(
    client: httpx.AsyncClient, deps: Deps, query: str, message: str
) -> None:
    response = await client.get(f"{API}/tickets?{query}")
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=broken", "status: unknown value 'broken'; expected one of: pending, done"),
        ("event=Issue-Comment", "event: malformed"),
        ("ticket=abc", "ticket: must be a positive integer"),
        ("ticket=0", "ticket: must be a positive integer"),
        ("limit=500", "limit: must be between 1 and 200"),
        (f"cursor={_cursor('v1:tickets:5')}", "cursor: belongs to another listing"),
        ("state=open", "state: unknown query parameter"),
    ],
)
async def test_list_deliveries_rejects_bad_parameters(
    client: httpx.AsyncClient, deps: Deps, query: str, message: str
) -> None:
    response = await client.get(f"{API}/deliveries?{query}")
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)


@pytest.mark.parametrize("kind", ["tickets", "deliveries"])
@pytest.mark.parametrize(
    ("raw_id", "status", "message"),
    [
        ("abc", 400, "id: must be a positive integer, got 'abc'"),
        ("0", 400, "id: must be a positive integer"),
        ("-1", 400, "id: must be a positive integer"),
        ("99999999999999999999", 400, "id: must be a positive integer"),
        ("424242", 404, "id: no "),
    ],
)
async def test_detail_rejects_bad_and_unknown_ids(
    client: httpx.AsyncClient, deps: Deps, kind: str, raw_id: str, status: int, message: str
) -> None:
    response = await client.get(f"{API}/{kind}/{raw_id}")
    assert response.status_code == status
    assert response.json()["error"].startswith(message)


async def test_ticket_detail(client: httpx.AsyncClient, deps: Deps) -> None:
    [repo] = await add_repos(deps, "octo-org/api")
    tid = await add_ticket(deps, repo, 1, labels=("bug",), body="It breaks.", assignees=["hubot"])
    other = await add_ticket(deps, repo, 2)
    first = await add_delivery(deps, "d-1", action="opened")
    second = await add_delivery(deps, "d-2", status="failed", event="issue_comment")
    unrelated = await add_delivery(deps, "d-3")
    # Stored out of order: the API lists comments in the tracker's order.
    later = Comment(source="github", external_id="c2", ticket_id=tid, body="second")
    later.external_created_at = T0.replace(hour=14)
    earlier = Comment(source="github", external_id="c1", ticket_id=tid, body="first")
    earlier.external_created_at = T0.replace(hour=13)
    earlier.author_login = "octocat"
    deleted = Comment(source="github", external_id="c3", ticket_id=tid, deleted=True)
    async with transaction(deps.sessions) as session:
        session.add_all(
            [
                later,
                earlier,
                deleted,
                PullRequest(id=900, repository_id=repo, number=7, state="open", head_ref="w"),
                PullRequest(id=901, repository_id=repo, number=8, state="open"),
                DeliveryTicket(delivery_id=first, ticket_id=tid),
                DeliveryTicket(delivery_id=second, ticket_id=tid),
                DeliveryTicket(delivery_id=unrelated, ticket_id=other),
            ]
        )
        await session.flush()
        session.add(TicketPullRequest(ticket_id=tid, pull_request_id=900, via="branch"))

    response = await client.get(f"{API}/tickets/{tid}")
    assert response.status_code == 200
    ticket = response.json()
    assert ticket["repository"] == "octo-org/api"
    assert (ticket["labels"], ticket["assignees"], ticket["body"]) == (
        ["bug"],
        ["hubot"],
        "It breaks.",
    )
    assert [(c["body"], c["author"]) for c in ticket["comments"]] == [
        ("first", "octocat"),
        ("second", None),
    ]
    [pr] = ticket["pull_requests"]
    assert pr | {"id": 900, "number": 7, "repository": "octo-org/api", "via": "branch"} == pr
    assert (pr["head_ref"], pr["merged"]) == ("w", False)
    deliveries = ticket["deliveries"]
    assert [
        (d["id"], d["delivery_id"], d["event"], d["action"], d["status"]) for d in deliveries
    ] == [
        (second, "d-2", "issue_comment", "edited", "failed"),
        (first, "d-1", "issues", "opened", "done"),
    ]
    assert all(datetime.fromisoformat(d["received_at"]) for d in deliveries)
    assert ticket["deliveries_truncated"] is False


async def test_ticket_detail_caps_its_delivery_history(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    [repo] = await add_repos(deps, "octo-org/api")
    tid = await add_ticket(deps, repo, 1)
    pks = [await add_delivery(deps, f"d-{n}") for n in range(101)]
    async with transaction(deps.sessions) as session:
        session.add_all([DeliveryTicket(delivery_id=pk, ticket_id=tid) for pk in pks])

    ticket = (await client.get(f"{API}/tickets/{tid}")).json()
    assert [d["id"] for d in ticket["deliveries"]] == sorted(pks, reverse=True)[:100]
    assert ticket["deliveries_truncated"] is True
    # The whole history pages through the deliveries listing.
    pages = await walk(client, f"{API}/deliveries", "deliveries", ticket=tid, limit=200)
    assert pages == [sorted(pks, reverse=True)]


async def test_deliveries_listing(client: httpx.AsyncClient, deps: Deps) -> None:
    ok = await add_delivery(deps, "d-ok", repository="octo-org/api", installation_id=7)
    bad1 = await add_delivery(
        deps, "d-bad1", status="failed", error="no issue in payload", attempts=1
    )
    await add_delivery(deps, "d-ping", status="ignored", event="ping", action=None)
    bad2 = await add_delivery(deps, "d-bad2", status="failed", event="issue_comment")

    body = (await client.get(f"{API}/deliveries", params={"status": "failed"})).json()
    assert [d["id"] for d in body["deliveries"]] == [bad2, bad1]
    assert body["next_cursor"] is None
    item = body["deliveries"][1]
    received_at = item.pop("received_at")
    assert datetime.fromisoformat(received_at).tzinfo is not None
    assert item == {
        "id": bad1,
        "delivery_id": "d-bad1",
        "source": "github",
        "event": "issues",
        "action": "edited",
        "status": "failed",
        "error": "no issue in payload",
        "attempts": 1,
        "processed_at": None,
        "repository": None,
        "installation_id": None,
    }
    assert "payload" not in item

    events = (await client.get(f"{API}/deliveries", params={"event": "issues"})).json()
    assert [d["id"] for d in events["deliveries"]] == [bad1, ok]
    everything = await walk(client, f"{API}/deliveries", "deliveries", limit=3)
    assert [len(p) for p in everything] == [3, 1]
    assert everything[0][0] == bad2


async def test_delivery_detail_has_the_payload(client: httpx.AsyncClient, deps: Deps) -> None:
    [repo] = await add_repos(deps, "octo-org/api")
    tid = await add_ticket(deps, repo, 1)
    pk = await add_delivery(deps, "d-1", payload={"action": "edited", "issue": {"number": 1}})
    async with transaction(deps.sessions) as session:
        session.add(DeliveryTicket(delivery_id=pk, ticket_id=tid))

    delivery = (await client.get(f"{API}/deliveries/{pk}")).json()
    assert delivery["payload"] == {"action": "edited", "issue": {"number": 1}}
    assert delivery["tickets"] == [tid]
    assert (delivery["delivery_id"], delivery["status"]) == ("d-1", "done")


async def test_database_outage_is_a_503(deps: Deps) -> None:
    async with postgres_down(deps) as broken, client_for(broken) as http:
        response = await http.get(f"{API}/tickets")
    assert response.status_code == 503
    assert response.json() == {"error": "database unavailable; retry later"}


TOKEN = "admin-token-for-tests"


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("Bearer wrong-token", 401),
        (f"Basic {TOKEN}", 401),
        ("Bearer ", 401),
        (f"Bearer {TOKEN}x", 401),
        (f"Bearer {TOKEN}", 200),
        (f"bearer {TOKEN}", 200),
    ],
)
@pytest.mark.parametrize("path", [f"{API}/tickets", f"{API}/deliveries?status=failed"])
async def test_admin_token_guards_the_api(
    deps: Deps, path: str, authorization: str | None, status: int
) -> None:
    settings = deps.settings.model_copy(update={"admin_token": SecretStr(TOKEN)})
    headers = {"Authorization": authorization} if authorization else {}
    async with client_for(dataclasses.replace(deps, settings=settings)) as http:
        response = await http.get(path, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"].startswith("Authorization: ")
        assert TOKEN not in response.text


async def test_admin_token_hides_unknown_api_paths_but_not_health(deps: Deps) -> None:
    settings = deps.settings.model_copy(update={"admin_token": SecretStr(TOKEN)})
    async with client_for(dataclasses.replace(deps, settings=settings)) as http:
        assert (await http.get(f"{API}/nothing-here")).status_code == 401
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200


async def test_without_admin_token_reads_are_open(client: httpx.AsyncClient, deps: Deps) -> None:
    assert deps.settings.admin_token is None
    response = await client.get(f"{API}/tickets")
    assert response.status_code == 200
    assert response.json() == {"tickets": [], "next_cursor": None}


async def test_issue_webhook_reaches_the_api(
    client: httpx.AsyncClient,
    github: GitHubWebhookSender,
    run_worker: Callable[[], Awaitable[object]],
) -> None:
    payload = github_example("issues", "opened")
    response = await github.send("issues", payload, delivery_id="e2e-issue-opened")
    assert response.status_code == 202
    await run_worker()

    # The delivery's own record first: a failure shows its error here.
    deliveries = (await client.get(f"{API}/deliveries")).json()["deliveries"]
    assert [(d["delivery_id"], d["status"], d["error"]) for d in deliveries] == [
        ("e2e-issue-opened", "done", None)
    ]
    listing = await client.get(f"{API}/tickets", params={"repo": "codertocat/hello-world"})
    [ticket] = listing.json()["tickets"]
    assert ticket["repository"] == "Codertocat/Hello-World"
    assert (ticket["number"], ticket["state"], ticket["labels"]) == (1, "open", ["bug"])
    assert ticket["title"] == payload["issue"]["title"]

    detail = (await client.get(f"{API}/tickets/{ticket['id']}")).json()
    assert [
        (d["delivery_id"], d["event"], d["action"], d["status"]) for d in detail["deliveries"]
    ] == [("e2e-issue-opened", "issues", "opened", "done")]
