from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import select

from bot.deps import Deps
from bot.tables.mirror import Delivery, Ticket
from tests.support.helpers import GitHubWebhookSender, github_example


async def test_ping_is_answered_and_stored(github: GitHubWebhookSender, deps: Deps) -> None:
    response = await github.send("ping", github_example("ping"))
    assert response.status_code == 200
    assert response.json()["status"] == "pong"
    async with deps.sessions() as s:
        rows = (await s.execute(select(Delivery.event, Delivery.status))).all()
    assert rows == [("ping", "ignored")]


async def test_issue_opened_reaches_the_mirror(
    github: GitHubWebhookSender, deps: Deps, run_worker: Callable[[], Awaitable[object]]
) -> None:
    payload = github_example("issues", "opened")
    response = await github.send("issues", payload)
    assert response.status_code == 202
    await run_worker()
    async with deps.sessions() as s:
        ticket = (await s.execute(select(Ticket))).scalar_one()
        status = (await s.execute(select(Delivery.status))).scalar_one()
    assert status == "done"
    assert ticket.number == payload["issue"]["number"]
    assert ticket.title == payload["issue"]["title"]
    assert ticket.key == f"{payload['repository']['full_name']}#{payload['issue']['number']}"
