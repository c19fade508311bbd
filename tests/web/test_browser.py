"""The web page in a real browser (Debian's chromium, headless, through Playwright): sign
in, write a new harness version, compare, roll back; watch a ticket move on the board and
an agent's output appear live. Screenshots of each step, at laptop and phone widths, are
kept in tests/artifacts/screenshots.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from bot.deps import Deps
from harness_store.db import transaction
from harness_store.models import HarnessVersion
from harness_store.store import list_versions, publish_harness
from tests.conftest import OpenWorld
from tests.support.board import a_result, add_repo, add_run, add_ticket, move
from tests.support.browser import chromium, screenshot, served
from tests.support.run_streams import emit, finish, runner_sink

TOKEN = "browser-admin-token"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as found:
        yield found


@pytest.fixture
def signed_settings(deps: Deps, monkeypatch: pytest.MonkeyPatch) -> Deps:
    """Reads and writes need a sign-in: the admin token is set."""
    monkeypatch.setattr(
        deps, "settings", deps.settings.model_copy(update={"admin_token": SecretStr(TOKEN)})
    )
    return deps


async def _page(browser: Any, viewport: dict[str, int], problems: list[str]) -> Any:
    page = await browser.new_page(viewport=viewport)
    page.set_default_timeout(10_000)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    return page


async def _reloaded_when_over(page: Any) -> None:
    """Half a second after a run ends its page reloads itself (to show the hooks, cost and
    duration); wait for that page, since a capture taken across the navigation can wait
    for a frame that never comes."""
    over = page.locator("#live-status").filter(has_text=re.compile(r"^The run is over\.$"))
    await over.wait_for(timeout=20_000)
    assert await page.locator("#output[data-live-run]").count() == 0


async def test_sign_in_write_a_version_compare_and_roll_back(
    signed_settings: Deps, browser: Any
) -> None:
    deps = signed_settings
    async with transaction(deps.sessions) as session:
        await publish_harness(
            session, "coder", "# Coder\n\nFix {{ ticket.key }}.\n", author="ann", message="first"
        )
    problems: list[str] = []
    async with served(deps) as url:
        page = await _page(browser, LAPTOP, problems)
        await page.goto(f"{url}/harnesses")
        assert "/login" in page.url  # reads need a sign-in here
        await page.get_by_label("Admin token").fill(TOKEN)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(re.compile(r"/harnesses$"))
        await screenshot(page, "harness-list")
        assert await page.get_by_role("link", name="coder").count() >= 1

        await page.goto(f"{url}/harnesses/coder/new")
        editor = page.get_by_label(re.compile("^Harness"))
        await editor.fill("# Coder\n\nFix {{ ticket.key }} carefully.\n\nOpen a PR.\n")
        await page.get_by_label("Message").fill("be careful")
        await page.get_by_role("button", name="Publish").click()
        await page.wait_for_url(re.compile(r"/harnesses/coder/versions/2$"))
        await screenshot(page, "harness-version-2")
        assert "carefully" in await page.inner_text("main")

        await page.goto(f"{url}/harnesses/coder/diff?from=1&to=2&view=split")
        await screenshot(page, "harness-diff-split")
        diff = await page.inner_text("main")
        assert "Open a PR." in diff
        assert "carefully" in diff

        await page.goto(f"{url}/harnesses/coder")
        await page.get_by_text("Roll back to 1").click()  # a <details>: opened by keyboard too
        await page.locator("#rollback-message-1").fill("too chatty")
        await page.get_by_role("button", name="Publish version 1 again").click()
        await page.wait_for_url(re.compile(r"/harnesses/coder/versions/3$"))
        await screenshot(page, "harness-rolled-back")

        phone = await _page(browser, PHONE, problems)
        await phone.context.add_cookies(await page.context.cookies())
        await phone.goto(f"{url}/harnesses/coder/diff?from=1&to=2")
        await screenshot(phone, "harness-diff-phone")
    async with deps.sessions() as session:
        versions = await list_versions(session, HarnessVersion, "coder")
    newest = max(versions, key=lambda v: v.version)
    assert newest.version == 3
    assert newest.content == "# Coder\n\nFix {{ ticket.key }}.\n"
    assert "too chatty" in newest.message
    assert problems == []


async def test_the_board_moves_and_a_running_agents_output_appears_live(
    deps: Deps, browser: Any
) -> None:
    await add_repo(deps, 1, "acme/api")
    waiting = await add_ticket(deps, "acme/api#1", repo_id=1, title="Add <b>login</b>")
    working = await add_ticket(
        deps, "acme/api#2", repo_id=1, title="Fix the build", state="in_progress"
    )
    await add_run(deps, "r1", working)
    problems: list[str] = []
    async with runner_sink(deps, "r1") as sink, served(deps) as url:
        page = await _page(browser, LAPTOP, problems)
        await page.goto(f"{url}/tickets")
        await page.locator("#live-status").filter(has_text=re.compile("^Live")).wait_for()
        await move(deps, waiting, state="in_review", attempt=1)
        card = page.locator(f'section.column[data-state="in_review"] #ticket-{waiting}')
        await card.wait_for(timeout=10_000)
        assert "Add <b>login</b>" in await card.inner_text()  # shown as text, not markup
        # Lines a card did not have are made in their place when the ticket needs them.
        await move(
            deps,
            waiting,
            held=True,
            waiting="⏳ Waiting for acme/api#2 to close first.",
            checks=[{"name": "openase/tests", "passed": True, "gate": "block"}],
        )
        await card.locator(".flag.held").wait_for(timeout=10_000)
        text = await card.inner_text()
        assert text.index("waiting:") < text.index("checks 1/1") < text.index("held")
        assert await card.locator(".waiting a").get_attribute("href") == "/tickets/acme/api/2"
        await move(deps, waiting, held=False, waiting=None)
        await card.locator(".flag.held").wait_for(state="hidden", timeout=10_000)
        assert await card.locator(".waiting").is_hidden()
        await screenshot(page, "board-live")

        await page.goto(f"{url}/runs/r1")
        await page.locator("#live-status").filter(has_text=re.compile("^Live")).wait_for()
        await emit(sink, "reading the code", "running the tests")
        await page.locator("#output").filter(has_text="running the tests").wait_for()
        await screenshot(page, "run-live")
        await finish(deps, "r1", a_result("r1"))
        await page.locator("#live-status").filter(has_text=re.compile("over")).wait_for()
        await _reloaded_when_over(page)
        await screenshot(page, "run-over")

        phone = await _page(browser, PHONE, problems)
        await phone.goto(f"{url}/tickets")
        await screenshot(phone, "board-phone")
        for opened in (page, phone):
            await opened.close()  # their event streams end with them
    assert problems == []


async def test_a_real_agents_output_appears_live_on_its_run_page(
    open_world: OpenWorld, browser: Any
) -> None:
    """The whole way: a labelled issue, a real runner running the agent, the run page."""
    problems: list[str] = []
    async with open_world() as w:
        w.add_issue(1, "Talk while working", "[talk] then add the PASS file")
        await w.label(1, "openase")
        row = await w.reach(1, "in_progress")
        run_id = row.run_id
        assert run_id is not None
        async with served(w.deps) as url:
            page = await _page(browser, LAPTOP, problems)
            await page.goto(f"{url}/runs/{run_id}")
            output = page.locator("#output")
            await output.filter(has_text="step 2 of 6").wait_for(timeout=20_000)
            seen_early = await output.inner_text()
            assert "step 6 of 6" not in seen_early  # it arrived while we watched
            await output.filter(has_text="step 6 of 6").wait_for(timeout=20_000)
            await (
                page.locator("#live-status")
                .filter(has_text=re.compile("over"))
                .wait_for(timeout=30_000)
            )
            await _reloaded_when_over(page)
            await screenshot(page, "run-real-agent")
            await page.close()
        await w.reach(1, "in_review")
    assert problems == []
