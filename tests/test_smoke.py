from __future__ import annotations

from sqlalchemy import select

from bot.deps import Deps
from bot.models import Delivery
from tests.helpers import GitHubWebhookSender, github_example


async def test_ping_is_answered(github: GitHubWebhookSender, deps: Deps) -> None:
    response = await github.send("ping", github_example("ping"))
    assert response.status_code == 200
    assert response.json()["status"] == "pong"
    async with deps.sessions() as s:
        rows = (await s.execute(select(Delivery.event, Delivery.status))).all()
    assert rows == [("ping", "ignored")]
