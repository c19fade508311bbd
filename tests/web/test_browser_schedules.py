"""`/schedules` in Debian's chromium: a repository's, a Linear team's and a Jira project's
schedules side by side, the admin pausing one and running another now, at a laptop's and a
phone's width. Screenshots land in tests/artifacts/screenshots/."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from bot.deps import Deps
from bot.tables.schedules import ScheduleControl, ScheduleSlot
from tests.fakes.github_api import FakeGitHubAPI
from tests.support.browser import chromium, screenshot, served
from tests.support.schedules import CONFIG, TRACKER_CONTROL, scheduled_repo
from tests.support.signing_in import TOKEN

LAPTOP = {"width": 1366, "height": 800}
PHONE = {"width": 390, "height": 844}


async def test_the_admin_pauses_and_runs_schedules_in_a_browser(
    deps: Deps, github_api: FakeGitHubAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    control = tmp_path / "control.yml"
    control.write_text("providers: {claude: {cli: claude_code}}\n" + TRACKER_CONTROL)
    await scheduled_repo(deps, github_api, CONFIG.replace(", provider: script", ""))
    settings = deps.settings.model_copy(update={"admin_token": SecretStr(TOKEN), "config": control})
    monkeypatch.setattr(deps, "settings", settings)
    async with chromium() as browser, served(deps) as url:
        context = await browser.new_context(viewport=LAPTOP)
        page = await context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        await page.goto(f"{url}/login?next=/schedules")
        await page.fill("#token", TOKEN)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"{url}/schedules")

        rows = page.locator("table.schedules tbody tr")
        assert await rows.count() == 3
        owners = await page.locator('td[data-label="Repository or team"]').all_inner_texts()
        assert owners == ["octo/sched", "Linear team ENG", "Jira project PROJ"]

        await page.get_by_role("button", name="Pause weekly-triage").click()
        await page.get_by_role("button", name="Resume weekly-triage").wait_for()
        team = page.locator("tr", has=page.get_by_role("rowheader", name="weekly-triage"))
        assert "paused" in await team.inner_text()

        await page.get_by_role("button", name="Run now weekly-scan").click()
        project = page.locator("tr", has=page.get_by_role("rowheader", name="weekly-scan"))
        await project.get_by_text("filed").wait_for()
        await screenshot(page, "schedules-laptop")
        # On a phone each schedule is a card of labelled cells: nothing to scroll sideways.
        await page.set_viewport_size(PHONE)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"]
        await screenshot(page, "schedules-phone")
        assert problems == []
        await context.close()

    async with deps.sessions() as session:
        paused = (await session.scalars(select(ScheduleControl))).all()
        slots = (await session.scalars(select(ScheduleSlot))).all()
    assert [(c.scope, c.schedule, c.paused, c.changed_by) for c in paused] == [
        ("linear:ENG", "weekly-triage", True, "admin")
    ]
    assert [(s.scope, s.schedule, s.outcome) for s in slots] == [
        ("jira:PROJ", "weekly-scan", "filed")
    ]
