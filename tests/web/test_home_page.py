"""The home page: the setup checklist (what `openase doctor` prints) until everything is in
place, then counts and links; in the site's layout; the checklist kept for a while so a
reload does not ask GitHub again; readers only when reads need a sign-in."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from bot.deps import Deps
from bot.tables.mirror import Delivery, DeliveryStatus, Installation, Repository
from harness_store.db import transaction
from runner.contract import MACHINES_SET, machine_key
from runner.machine import MachineFacts
from tests.conftest import AppWith
from tests.fakes.github_api import FakeGitHubAPI
from tests.support.browser import chromium, screenshot, served
from tests.support.signing_in import sign_in

SCRIPT = """\
providers:
  script:
    cli: command
    argv: ["python3", "agent.py", "{prompt_file}"]
defaults:
  provider: script
"""


@pytest.fixture
def control(tmp_path: Any) -> Any:
    path = tmp_path / "control.yml"
    path.write_text(SCRIPT)
    return path


async def make_ready(deps: Deps, github_api: FakeGitHubAPI) -> None:
    """The App installed on a repository and a runner online with the `command` agent."""
    github_api.add_installation(77, "acme")
    async with transaction(deps.sessions) as session:
        session.add(Installation(id=77, account_login="acme", account_type="Organization"))
        await session.flush()
        session.add(Repository(id=5, full_name="acme/api", installation_id=77))
        session.add(
            Delivery(
                source="github",
                delivery_id="d-1",
                event="issues",
                status=DeliveryStatus.DONE,
                payload={},
            )
        )
    facts = MachineFacts(
        name="m1", labels=[], capacity=2, clis={"command": "any"}, sandbox="bubblewrap 0.8.0"
    )
    await deps.redis.hset(machine_key("m1"), mapping=facts.to_redis())  # type: ignore[misc]  # redis-py's union return
    await deps.redis.sadd(MACHINES_SET, "m1")  # type: ignore[misc]


def app_requests(github_api: FakeGitHubAPI) -> int:
    return sum(1 for r in github_api.requests if r.url.path.endswith("/app"))


async def test_a_new_deployment_shows_what_it_still_needs(
    app_with: AppWith, github_api: FakeGitHubAPI, control: Any
) -> None:
    async with app_with(config=control) as web:
        response = await web.get("/")
        assert response.status_code == 200
        page = response.text
        assert '<meta name="viewport"' in page  # the site's layout, fit for a phone
        assert '<nav aria-label="Main">' in page
        assert "What it still needs" in page
        assert "Tickets are not worked on until" in page
        assert "start one: `openase runner --machine NAME`" in page
        assert "install the App on a repository" in page
        assert "openase doctor" in page
        assert app_requests(github_api) == 1

        await web.get("/")  # a reload within the half minute asks GitHub nothing
        assert app_requests(github_api) == 1


async def test_a_ready_deployment_shows_counts_and_links(
    app_with: AppWith, deps: Deps, github_api: FakeGitHubAPI, control: Any
) -> None:
    await make_ready(deps, github_api)
    async with app_with(config=control) as web:
        page = (await web.get("/")).text
    assert "What it still needs" not in page
    assert "<h1>OpenASE is running</h1>" in page
    assert "<tr><th>repositories</th><td>1</td></tr>" in page
    assert 'href="/tickets"' in page


async def test_when_reads_need_a_sign_in_the_checklist_is_for_readers(
    app_with: AppWith, control: Any
) -> None:
    async with app_with(config=control, admin_token=SecretStr("tok")) as web:
        anonymous = (await web.get("/")).text
        assert "Sign in</a> to see what the deployment still needs" in anonymous
        assert "runners" not in anonymous
        assert "<tr><th>installations</th><td>0</td></tr>" in anonymous  # counts stay open
        await sign_in(web, "tok")
        signed_in = (await web.get("/")).text
        assert "What it still needs" in signed_in


async def test_on_a_phone_the_checklist_fits_the_screen(
    deps: Deps, github_api: FakeGitHubAPI, control: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deps, "settings", deps.settings.model_copy(update={"config": control}))
    async with chromium() as browser, served(deps) as url:
        page = await browser.new_page(viewport={"width": 390, "height": 844})
        await page.goto(f"{url}/")
        await page.get_by_role("heading", name="What it still needs").wait_for()
        await screenshot(page, "home-checklist-phone")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width}px wide on a 390px screen"
