"""The one-click registration in a real browser (Debian's chromium through Playwright), up to
GitHub and back: a local page plays GitHub's (it shows the manifest's App, and "Create
GitHub App" sends the browser back with a code). Screenshots in tests/artifacts/screenshots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.config.github_app import stored_app
from bot.deps import Deps
from bot.servers.services import webhook_secret
from tests.fakes.github_api import FakeGitHubAPI
from tests.fakes.github_manifests import github_web_app
from tests.support.browser import chromium, screenshot, served, serving

PHONE = {"width": 390, "height": 844}


async def test_register_the_app_in_the_browser_up_to_github_and_back(
    deps: Deps, github_api: FakeGitHubAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generated, _ = webhook_secret(tmp_path)
    async with serving(github_web_app(github_api.registrations)) as github_web:
        fresh = deps.settings.model_copy(
            update={
                "data_dir": tmp_path,
                "github_app_id": None,
                "github_private_key": None,
                "github_webhook_secret": SecretStr(generated),
                # GitHub's web host (the setting GitHub Enterprise Server needs), here a page
                # on this machine.
                "github_web_url": github_web,
            }
        )
        monkeypatch.setattr(deps, "settings", fresh)
        async with served(deps) as base, chromium() as browser:
            problems: list[str] = []
            page: Any = await browser.new_page(viewport=PHONE)
            page.set_default_timeout(10_000)
            page.on("pageerror", lambda error: problems.append(str(error)))

            await page.goto(f"{base}/")
            await page.get_by_role("link", name="Register the GitHub App").click()
            await page.get_by_role("heading", name="Set up the GitHub App").wait_for()
            await screenshot(page, "setup-form-phone")
            await page.get_by_label("The App's name").fill("OpenASE browser")
            await page.get_by_label("Webhook URL").fill("https://bot.example.org/webhooks/github")
            await page.get_by_role("button", name="Register on").click()

            # setup.js sends the manifest on to "GitHub", which asks to confirm.
            await page.get_by_role("heading", name="Create GitHub App for octocat").wait_for()
            assert page.url.startswith(f"{github_web}/settings/apps/new")
            await screenshot(page, "setup-github-confirm")
            await page.get_by_role("button", name="Create GitHub App").click()

            await page.get_by_role("heading", name="GitHub App registered").wait_for()
            assert page.url.startswith(f"{base}/setup/github/callback?code=")
            install = page.get_by_role("link", name="Install it on your repositories")
            assert (await install.get_attribute("href")).endswith(
                "/apps/openase-browser/installations/new"
            )
            await screenshot(page, "setup-done-phone")
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"]  # fits a phone: nothing scrolls sideways
            assert problems == []

    kept = stored_app(deps.settings)
    assert kept is not None
    assert kept.slug == "openase-browser"
    assert deps.settings.github_app_id == kept.id
