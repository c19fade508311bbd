"""Missed deliveries recovered: GitHub's delivery log read back to the last pass, every
failed delivery the store lacks asked for again once, oldest first, a bounded number a
pass; against the fake's delivery log, real Postgres and the real webhook intake."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from copy import deepcopy
from typing import Any

import httpx
from sqlalchemy import select

from bot.deps import Deps
from bot.intake.recovery import MAX_PER_PASS, recover_deliveries
from bot.tables.mirror import Delivery, Ticket
from bot.tables.sync import RedeliveryRequest
from tests.fakes.github_api import FakeGitHubAPI
from tests.fakes.github_deliveries import before
from tests.support.helpers import GitHubWebhookSender, github_example

Json = dict[str, Any]


def opened(number: int) -> Json:
    """A real `issues.opened` payload for issue `number` of the example repository."""
    payload = deepcopy(github_example("issues", "opened"))
    payload["issue"]["number"] = number
    payload["issue"]["id"] = 1_000_000 + number
    payload["issue"]["title"] = f"Issue {number}"
    return payload


async def missed(github_api: FakeGitHubAPI, number: int, *, hours_ago: float, code: int) -> str:
    """A delivery GitHub attempted while the bot could not take it; its GUID."""
    guid = str(uuid.uuid4())
    github_api.delivery_log.add(
        guid, "issues", opened(number), status_code=code, at=before(github_api, hours=hours_ago)
    )
    return guid


async def redeliver_as_github(github: GitHubWebhookSender, github_api: FakeGitHubAPI) -> None:
    """GitHub sends each redelivery asked of it, under the delivery's own GUID."""
    for guid, event, payload in github_api.delivery_log.redelivered():
        response = await github.send(event, payload, delivery_id=guid)
        assert response.status_code in (200, 202), response.text
        github_api.delivery_log.add(guid, event, payload, status_code=202, redelivery=True)


async def titles(deps: Deps) -> list[str]:
    async with deps.sessions() as session:
        return sorted((await session.scalars(select(Ticket.title))).all())


async def test_deliveries_missed_while_down_are_redelivered_once_and_ingested(
    deps: Deps,
    github: GitHubWebhookSender,
    github_api: FakeGitHubAPI,
    ingest_all: Callable[[], Awaitable[list[str]]],
) -> None:
    # Delivered while the bot ran: GitHub logged it as a success, the store has it.
    received = str(uuid.uuid4())
    assert (await github.send("issues", opened(1), delivery_id=received)).status_code == 202
    github_api.delivery_log.add(received, "issues", opened(1), status_code=202)
    # Sent while it was down (no answer) or failing (a 502), then one GitHub gave up on
    # days ago, beyond the three days its log keeps.
    timed_out = await missed(github_api, 2, hours_ago=5, code=0)
    failed = await missed(github_api, 3, hours_ago=1, code=502)
    await missed(github_api, 4, hours_ago=80, code=503)

    report = await recover_deliveries(deps, deps.github_app())

    assert (report.missed, report.asked, report.refused, report.complete) == (2, 2, 0, True)
    asked = [guid for guid, _, _ in github_api.delivery_log.redelivered()]
    assert asked == [timed_out, failed]  # oldest first, as they happened
    await redeliver_as_github(github, github_api)
    await ingest_all()
    assert await titles(deps) == ["Issue 1", "Issue 2", "Issue 3"]

    # Another pass, and another after that: nothing is asked twice.
    again = await recover_deliveries(deps, deps.github_app())
    assert (again.missed, again.asked) == (0, 0)
    assert len(github_api.delivery_log.attempts) == 2
    async with deps.sessions() as session:
        stored = (await session.scalars(select(Delivery.delivery_id))).all()
    assert sorted(stored) == sorted([received, timed_out, failed])


async def test_a_pass_asks_a_bounded_number_and_the_next_one_goes_on(
    deps: Deps, github_api: FakeGitHubAPI
) -> None:
    guids = [await missed(github_api, n, hours_ago=10 - n, code=0) for n in range(1, 6)]

    first = await recover_deliveries(deps, deps.github_app(), limit=2)
    assert (first.missed, first.asked, first.complete) == (5, 2, False)
    second = await recover_deliveries(deps, deps.github_app(), limit=2)
    third = await recover_deliveries(deps, deps.github_app(), limit=2)
    assert (second.asked, third.asked, third.complete) == (2, 1, True)
    assert [guid for guid, _, _ in github_api.delivery_log.redelivered()] == guids
    assert MAX_PER_PASS >= 10  # a pass is bounded, not tiny


async def test_a_redelivery_github_refuses_is_recorded_and_not_asked_again(
    deps: Deps, github_api: FakeGitHubAPI
) -> None:
    guid = await missed(github_api, 7, hours_ago=2, code=500)
    github_api.queue(
        422, {"message": "Validation Failed"}, path_regex=r"/app/hook/deliveries/\d+/attempts"
    )

    report = await recover_deliveries(deps, deps.github_app())
    assert (report.asked, report.refused) == (0, 1)
    async with deps.sessions() as session:
        row = await session.get(RedeliveryRequest, guid)
    assert row is not None
    assert "422" in (row.error or "") or "Validation Failed" in (row.error or "")
    again = await recover_deliveries(deps, deps.github_app())
    assert (again.missed, again.asked, again.refused) == (0, 0, 0)


async def test_a_later_pass_reads_only_back_to_where_the_last_one_began(
    deps: Deps, github_api: FakeGitHubAPI
) -> None:
    for _ in range(250):  # three pages of old successes
        github_api.delivery_log.add(
            str(uuid.uuid4()),
            "issues",
            opened(9),
            status_code=202,
            at=before(github_api, hours=2),
        )

    def pages_read() -> int:
        return sum(1 for r in github_api.requests if r.url.path.endswith("/app/hook/deliveries"))

    await recover_deliveries(deps, deps.github_app())
    assert pages_read() == 3
    github_api.delivery_log.add(str(uuid.uuid4()), "issues", opened(10), status_code=0)
    later = await recover_deliveries(deps, deps.github_app())
    assert later.missed == 1
    assert pages_read() == 4  # one page: the rest is older than the last pass


async def test_the_worker_recovers_at_start_and_metrics_count_it(
    deps: Deps,
    github_api: FakeGitHubAPI,
    client: httpx.AsyncClient,
    run_worker: Callable[[], Awaitable[object]],
) -> None:
    await missed(github_api, 11, hours_ago=1, code=0)
    await missed(github_api, 12, hours_ago=1, code=504)

    await run_worker()  # a burst worker: its start-up pass runs

    assert len(github_api.delivery_log.attempts) == 2
    metrics = (await client.get("/metrics")).text
    assert 'openase_redeliveries_total{outcome="asked"} 2.0' in metrics
    assert 'openase_redeliveries_total{outcome="refused"} 0.0' in metrics
