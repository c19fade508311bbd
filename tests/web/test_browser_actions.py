"""Issue #16, a ticket's actions pressed in Debian's chromium against the whole of OpenASE
(tests/support/lifecycle.py's world: a control worker, a runner, the fake GitHub): Run,
Hold, Unhold, Pin harness, Approve, Retry, Ask and a run page's Cancel, each showing its
outcome, and the ticket page following the run live without a reload. Screenshots land in
tests/artifacts/screenshots/."""

from __future__ import annotations

from typing import Any

from bot.config.states import State
from bot.web.session import SESSION_COOKIE, encode, new_session
from tests.conftest import OpenWorld
from tests.support.browser import chromium, screenshot, served
from tests.support.lifecycle import WRITER, World

LAPTOP = {"width": 1366, "height": 800}
PHONE = {"width": 390, "height": 844}


async def _signed_in_page(
    browser: Any, w: World, url: str, viewport: dict[str, int]
) -> tuple[Any, list[str]]:
    """A page of a browser signed in as the repository's writer; its console errors."""
    context = await browser.new_context(viewport=viewport)
    cookie = encode(w.deps.settings, new_session(WRITER, "github"))
    await context.add_cookies([{"name": SESSION_COOKIE, "value": cookie, "url": url}])
    page = await context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    return page, problems


async def _outcome(page: Any, text: str) -> str:
    outcome = page.locator("#outcome")
    await outcome.wait_for()
    said = str(await outcome.inner_text())
    assert text in said, said
    return said


async def test_each_action_pressed_in_a_browser(open_world: OpenWorld) -> None:
    async with chromium() as browser, open_world() as w, served(w.deps) as url:
        w.add_issue(1, "Add a PASS file", "Please add it.")
        await w.open_issue(1)
        ticket = await w.ticket_id(1)
        page, problems = await _signed_in_page(browser, w, url, LAPTOP)
        await page.goto(f"{url}/tickets/{ticket}")
        await page.get_by_role("heading", name="Actions").wait_for()

        # Run: the page says it was done, then follows the run to review without a reload.
        await page.get_by_role("button", name="Run").click()
        await _outcome(page, f"Run by @{WRITER}: done.")
        await screenshot(page, "actions-run")
        await page.locator("#status").get_by_text("In review").wait_for(timeout=60_000)
        assert "/tickets/octo/hello/1?action=" in page.url  # still the page it landed on

        await page.get_by_role("button", name="Hold").click()
        await _outcome(page, "Hold by @alice: done.")
        assert "On hold." in await page.locator("#status").inner_text()
        await page.get_by_role("button", name="Unhold").click()
        await _outcome(page, "Unhold by @alice: done.")

        await page.get_by_text("Pin a harness").click()
        await page.get_by_label("Harness, as NAME or NAME@VERSION").fill("coder@1")
        await page.get_by_role("button", name="Pin harness").click()
        await _outcome(page, "The next runs use harness `coder@1`.")

        await page.get_by_role("button", name="Approve").click()
        await _outcome(page, "Approve by @alice: done.")
        await w.reach(1, State.DONE)
        await page.locator("#status").get_by_text("Done").wait_for(timeout=30_000)

        # Not possible now: the page says why, and nothing changes.
        await page.get_by_text("Ask the agent about the code").click()
        await page.get_by_label("Question").fill("What does src/app.py print?")
        await page.get_by_role("button", name="Ask").click()
        await page.wait_for_url("**/runs/t*-ask-*")
        await _outcome(page, "Ask by @alice: done.")
        await page.get_by_role("heading", name="The agent's summary").wait_for(timeout=60_000)
        await screenshot(page, "actions-ask-answer")
        assert problems == []


async def test_retry_with_guidance_and_cancel_on_the_run_page(open_world: OpenWorld) -> None:
    async with chromium() as browser, open_world() as w, served(w.deps) as url:
        w.add_issue(2, "Slow", "[slow] add PASS")
        await w.label(2, "openase")
        await w.reach(2, State.IN_PROGRESS)
        (run,) = await w.runs(2)
        page, problems = await _signed_in_page(browser, w, url, PHONE)
        await page.goto(f"{url}/runs/{run.id}")
        await page.get_by_role("button", name="Cancel this run").click()
        await _outcome(page, "Cancel by @alice: done.")
        assert f"/runs/{run.id}?action=" in page.url
        await w.reach(2, State.CANCELED)

        ticket = await w.ticket_id(2)
        await page.goto(f"{url}/tickets/{ticket}")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the ticket page is {width}px wide on a phone"
        await page.get_by_text("Retry, with guidance for the agent").click()
        await page.get_by_label("Guidance for the agent").fill("Add the file, nothing else.")
        await page.get_by_role("button", name="Retry").click()
        await _outcome(page, "Retry by @alice: done.")
        await screenshot(page, "actions-retry-phone")
        await w.reach(2, State.IN_PROGRESS)
        runs = await w.runs(2)
        assert "Add the file, nothing else." in runs[-1].spec["prompt"]
        assert problems == []
