"""`/schedules`: each repository's schedules with next run and last slot; Pause, Resume and
Run now — admin only, CSRF-checked, kept in PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import select

from bot.deps import Deps
from bot.effects.issues import PERFORMERS
from bot.effects.perform import perform_pending
from bot.tables.schedules import ScheduleControl, ScheduleSlot
from bot.web.session import SESSION_COOKIE, encode, new_session
from tests.conftest import AppWith
from tests.fakes.github_api import FakeGitHubAPI
from tests.support.schedules import CONFIG, TRACKER_CONTROL, scheduled_repo
from tests.support.signing_in import TOKEN as ADMIN_TOKEN
from tests.support.signing_in import csrf_of, sign_in

URL = "/schedules/octo/sched/weekly-deps"
# The web process reads the control config of its settings (none here: the default provider).
WEB_CONFIG = CONFIG.replace(", provider: script", "")


async def paused(deps: Deps) -> dict[str, tuple[bool, str]]:
    async with deps.sessions() as session:
        rows = await session.scalars(select(ScheduleControl))
        return {row.schedule: (row.paused, row.changed_by) for row in rows}


async def act(web: httpx.AsyncClient, action: str) -> httpx.Response:
    token = csrf_of((await web.get("/schedules")).text)
    return await web.post(URL, data={"csrf": token, "action": action})


async def test_the_admin_pauses_resumes_and_runs_now(
    web: httpx.AsyncClient, deps: Deps, github_api: FakeGitHubAPI
) -> None:
    repo = await scheduled_repo(deps, github_api, WEB_CONFIG)
    await sign_in(web)
    page = (await web.get("/schedules")).text
    assert "weekly-deps" in page
    assert "<code>0 9 * * 1</code> Europe/Berlin" in page
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:00:00\+00:00">', page)
    assert "Pause weekly-deps" in page
    assert "Run now weekly-deps" in page

    done = await act(web, "pause")
    assert (done.status_code, done.headers["location"]) == (303, "/schedules")
    assert await paused(deps) == {"weekly-deps": (True, "admin")}
    page = (await web.get("/schedules")).text
    assert "<strong>paused</strong>" in page
    assert "Resume weekly-deps" in page
    assert "Pause weekly-deps" not in page

    assert (await act(web, "resume")).status_code == 303
    assert await paused(deps) == {"weekly-deps": (False, "admin")}

    assert (await act(web, "run")).status_code == 303
    async with deps.sessions() as session:
        slot = await session.scalar(select(ScheduleSlot))
    assert slot is not None
    assert (slot.outcome, slot.by) == ("filed", "admin")
    assert await perform_pending(deps, PERFORMERS) == 1
    (issue,) = [i for i in repo.issues if "openase:schedule" in (i.get("body") or "")]
    assert f"filed #{issue['number']}" in (await web.get("/schedules")).text


async def test_only_the_admin_with_the_forms_token_may(
    web: httpx.AsyncClient, deps: Deps, github_api: FakeGitHubAPI
) -> None:
    await scheduled_repo(deps, github_api, WEB_CONFIG)
    signed_out = await web.post(URL, data={"csrf": "x", "action": "pause"})
    assert signed_out.status_code == 303
    assert signed_out.headers["location"].startswith("/login?next=")

    web.cookies.set(SESSION_COOKIE, encode(deps.settings, new_session("octocat", "github")))
    page = await web.get("/schedules")
    assert page.status_code == 200
    assert "weekly-deps" in page.text
    assert "Pause weekly-deps" not in page.text
    refused = await web.post(URL, data={"csrf": csrf_of(page.text), "action": "pause"})
    assert refused.status_code == 403
    assert "Only the admin may pause, resume or run a schedule" in refused.text
    web.cookies.delete(SESSION_COOKIE)

    await sign_in(web)
    forged = await web.post(URL, data={"csrf": "forged-token-of-some-length", "action": "pause"})
    assert forged.status_code == 403
    unknown = await act(web, "reboot")
    assert unknown.status_code == 400
    assert "action: pause, resume or run." in unknown.text
    token = csrf_of((await web.get("/schedules")).text)
    missing = await web.post(
        "/schedules/octo/sched/nightly", data={"csrf": token, "action": "pause"}
    )
    assert missing.status_code == 404
    assert await paused(deps) == {}


async def test_a_teams_and_a_projects_schedules_are_shown_and_controlled(
    app_with: AppWith, deps: Deps, github_api: FakeGitHubAPI, tmp_path: Path
) -> None:
    control = tmp_path / "control.yml"
    control.write_text("providers: {claude: {cli: claude_code}}\n" + TRACKER_CONTROL)
    await scheduled_repo(deps, github_api, WEB_CONFIG)
    async with app_with(admin_token=SecretStr(ADMIN_TOKEN), config=control) as web:
        await sign_in(web)
        page = (await web.get("/schedules")).text
        assert '<td data-label="Repository or team">Linear team ENG</td>' in page
        assert '<td data-label="Repository or team">Jira project PROJ</td>' in page
        assert 'action="/schedules/linear:ENG/weekly-triage"' in page
        assert 'action="/schedules/jira:PROJ/weekly-scan"' in page

        token = csrf_of(page)
        done = await web.post(
            "/schedules/linear:ENG/weekly-triage", data={"csrf": token, "action": "pause"}
        )
        assert done.status_code == 303
        done = await web.post(
            "/schedules/jira:PROJ/weekly-scan", data={"csrf": token, "action": "run"}
        )
        assert done.status_code == 303
        missing = await web.post(
            "/schedules/jira:PROJ/weekly-triage", data={"csrf": token, "action": "run"}
        )
        assert missing.status_code == 404
        assert "jira:PROJ has no schedule &#39;weekly-triage&#39;." in missing.text
        page = (await web.get("/schedules")).text
        assert "Resume weekly-triage" in page
    async with deps.sessions() as session:
        controls = (await session.scalars(select(ScheduleControl))).all()
        slots = (await session.scalars(select(ScheduleSlot))).all()
    assert [(c.scope, c.schedule, c.paused) for c in controls] == [
        ("linear:ENG", "weekly-triage", True)
    ]
    assert [(s.scope, s.schedule, s.outcome, s.by) for s in slots] == [
        ("jira:PROJ", "weekly-scan", "filed", "admin")
    ]


async def test_a_repository_whose_bad_cron_stops_its_schedules_is_named(
    web: httpx.AsyncClient, deps: Deps, github_api: FakeGitHubAPI
) -> None:
    await scheduled_repo(deps, github_api, WEB_CONFIG.replace('"0 9 * * 1"', '"0 9 * * 1-9"'))
    await sign_in(web)
    page = (await web.get("/schedules")).text
    assert "No schedules." not in page
    assert '<section class="bad" role="alert" aria-label="octo/sched: config problems">' in page
    cron = "schedules[0].cron: &#39;0 9 * * 1-9&#39; is not a valid cron expression"
    assert f"<li>.github/openase.yml, line 5: {cron}" in page
