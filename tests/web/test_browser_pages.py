"""The control plane's pages in Debian's chromium, at 1366 and 390 pixels wide: each one
renders with nothing scrolling sideways and no console error, the list filters, and the
dashboard draws its charts. Screenshots land in tests/artifacts/screenshots/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from bot.deps import Deps
from bot.tables.stats import rebuild as rebuild_stats
from bot.tables.workflow import Activity, Run, RunState
from harness_store.db import transaction
from tests.support.board import HOSTILE, a_result, add_repo, add_run, add_ticket, hook
from tests.support.browser import chromium, screenshot, served

LAPTOP = {"width": 1366, "height": 800}
PHONE = {"width": 390, "height": 844}


async def _seed(deps: Deps) -> None:
    await add_repo(deps, 1, "acme/a-repository-with-a-rather-long-name")
    first = await add_ticket(
        deps, "acme/a-repository-with-a-rather-long-name#1", repo_id=1, title=HOSTILE
    )
    second = await add_ticket(
        deps,
        "acme/a-repository-with-a-rather-long-name#2",
        repo_id=1,
        title="Add a login page",
        state="failed",
        last_failure="tests failed: 3 of 120",
    )
    await add_ticket(deps, "ENG-7", source="linear", title="Billing export", state=None)
    await add_run(
        deps,
        "t2-coder-0a1b2c3d",
        second,
        state=RunState.FINISHED,
        result=a_result("t2-coder-0a1b2c3d", hook("tests", 1, "FAILED test_login")),
    )
    recently = datetime.now(UTC) - timedelta(days=2)  # inside the dashboard's range
    async with transaction(deps.sessions) as session:
        await session.execute(
            update(Run)
            .where(Run.id == "t2-coder-0a1b2c3d")
            .values(
                queued_at=recently,
                started_at=recently,
                finished_at=recently + timedelta(minutes=4),
            )
        )
        session.add_all(
            Activity(ticket_id=ticket, kind="state", message=f"todo → {state}", at=recently)
            for ticket, state in ((first, "in_progress"), (second, "failed"))
        )
        # The run was stored as it ended, not taken by the engine: the dashboard's rollups
        # count it as the migration counts the runs it finds.
        await rebuild_stats(session)


async def _fits(page: Any, viewport: dict[str, int], what: str) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], f"{what}: {width}px wide on a {viewport['width']}px screen"


async def test_the_pages_fit_a_laptop_and_a_phone(deps: Deps) -> None:
    await _seed(deps)
    problems: list[str] = []
    pages = {
        "list": "/tickets/list",
        "list-search": "/tickets/list?q=login&state=failed",
        "activity": "/activity",
        "dashboard": "/metrics/dashboard?days=90",
        "ticket": "/tickets/acme/a-repository-with-a-rather-long-name/2",
        "run-folded": "/runs/t2-coder-0a1b2c3d",
    }
    async with chromium() as browser, served(deps) as url:
        for size, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
            page = await browser.new_page(viewport=viewport)
            page.on(
                "console",
                lambda message: (
                    problems.append(f"console: {message.text}") if message.type == "error" else None
                ),
            )
            for name, path in pages.items():
                answer = await page.goto(f"{url}{path}")
                assert answer is not None
                assert answer.status == 200, path
                await screenshot(page, f"{name}-{size}")
                await _fits(page, viewport, path)
            await page.close()
    assert problems == []


async def test_the_list_filters_and_the_dashboard_draws_in_a_browser(deps: Deps) -> None:
    await _seed(deps)
    async with chromium() as browser, served(deps) as url:
        page = await browser.new_page(viewport=LAPTOP)
        await page.goto(f"{url}/tickets/list")
        await page.get_by_label("Search title and description").fill("login")
        await page.get_by_role("button", name="Show").click()
        await page.wait_for_url("**/tickets/list?q=login*")
        rows = page.locator("table.ticket-list tbody tr")
        assert await rows.count() == 1
        assert "Add a login page" in await rows.first.inner_text()
        await rows.first.get_by_role("link").click()
        await page.get_by_role("heading", name="Description").wait_for()

        await page.goto(f"{url}/metrics/dashboard?days=90")
        # Each chart is an image of its own (its own request), loaded before `load` fires.
        charts = page.locator("figure.chart img[src^='/metrics/dashboard/charts/']")
        assert await charts.count() == 7
        drawn = await charts.evaluate_all(
            "images => images.every(image => image.complete && image.naturalWidth > 0)"
        )
        assert drawn
        outcomes = page.locator("table", has_text="Outcome")
        assert "gates_failed" in await outcomes.first.inner_text()  # the seeded run
        await page.close()
