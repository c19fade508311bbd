"""The setup page: the GitHub App registered from the manifest (GitHub's manifest flow),
kept in the data dir, used at once; who may use it; stale, reused and forged states and
codes refused with nothing stored."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from structlog.testing import capture_logs

from bot.config.github_app import APP_FILE, stored_app
from bot.deps import Deps
from bot.engine.jobs import ENGINE_CTX_KEY
from bot.intake.recovery import MARK as RECOVERY_MARK
from bot.intake.relay_status import RelayStatus, write_relay_status
from bot.processes.worker import make_worker
from bot.servers.services import webhook_secret
from bot.tables.mirror import Delivery
from bot.tables.sync import RedeliveryRequest, SyncMark
from bot.tables.workflow import TicketState
from bot.web.session import SESSION_COOKIE, encode, new_session
from bot.web.setup_page import STATE_KEY
from harness_store.db import transaction
from tests.conftest import AppWith, Services
from tests.fakes.github_api import WEB_URL, FakeGitHubAPI
from tests.support import helpers
from tests.support.helpers import TEST_WEBHOOK_SECRET, GitHubWebhookSender, github_example
from tests.support.signing_in import TOKEN, csrf_of, sign_in

HERE = "http://127.0.0.1:2080"  # how this machine's browser reaches `openase up`
NO_APP: dict[str, Any] = {
    "github_app_id": None,
    "github_private_key": None,
    "github_client_id": None,
    "github_client_secret": None,
}
Opened = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def fresh(app_with: AppWith, tmp_path: Path) -> Opened:
    """The app of a deployment with no GitHub App yet (as `openase up` starts: its own data
    dir, a generated webhook secret), reached from this machine (loopback client, a
    loopback Host) unless told otherwise."""

    @asynccontextmanager
    async def opened(base_url: str = HERE, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
        data_dir = tmp_path / "data"
        generated, _ = webhook_secret(data_dir)  # as `openase up` makes one
        fresh_settings = {
            "data_dir": data_dir,
            **NO_APP,
            "github_webhook_secret": SecretStr(generated),
            **changes,
        }
        async with app_with(base_url=base_url, **fresh_settings) as web:
            yield web

    return opened


async def start(web: httpx.AsyncClient, **fields: str) -> tuple[str, dict[str, Any], str]:
    """Submit the setup form; GitHub's URL the page posts to, the manifest, and the state."""
    form = await web.get("/setup")
    assert form.status_code == 200, form.text
    data = {
        "csrf": csrf_of(form.text),
        "owner": "personal",
        "name": "OpenASE test",
        "webhook_url": "https://bot.example.org/webhooks/github",
        **fields,
    }
    page = await web.post("/setup", data=data)
    assert page.status_code == 200, page.text
    action = re.search(r'<form id="to-github" method="post" action="([^"]+)"', page.text)
    manifest = re.search(r'name="manifest" value="([^"]+)"', page.text)
    assert action
    assert manifest
    url = action.group(1).replace("&amp;", "&")
    state = parse_qs(urlsplit(url).query)["state"][0]
    return url, json.loads(manifest.group(1).replace("&#34;", '"').replace("&amp;", "&")), state


async def back_from_github(
    web: httpx.AsyncClient, github_api: FakeGitHubAPI, manifest: dict[str, Any], state: str
) -> httpx.Response:
    """What GitHub does after the user confirmed: the App exists, the browser comes back."""
    code = github_api.registrations.create(manifest, state=state)
    return await web.get("/setup/github/callback", params={"code": code, "state": state})


async def test_one_click_registers_the_app_and_this_process_acts_as_it_at_once(
    fresh: Opened, github_api: FakeGitHubAPI, deps: Deps
) -> None:
    async with fresh() as web:
        home = await web.get("/")
        assert '<a class="button" href="/setup">Register the GitHub App</a>' in home.text

        url, manifest, state = await start(web)
        assert url.startswith(f"{WEB_URL}/settings/apps/new?state=")
        assert manifest["redirect_url"] == f"{HERE}/setup/github/callback"
        assert manifest["callback_urls"] == [f"{HERE}/login/github/callback"]
        assert manifest["hook_attributes"] == {
            "url": "https://bot.example.org/webhooks/github",
            "active": True,
        }
        assert manifest["name"] == "OpenASE test"
        assert manifest["default_permissions"]["issues"] == "write"  # app.yml's

        with capture_logs() as logs:
            done = await back_from_github(web, github_api, manifest, state)
        assert done.status_code == 200, done.text
        assert "GitHub App registered" in done.text
        assert f'href="{WEB_URL}/apps/openase-test/installations/new"' in done.text

        path = deps.settings.data_dir / APP_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        kept = stored_app(deps.settings)
        assert kept is not None
        assert kept.id == github_api.app_id
        assert kept.private_key == helpers.test_private_key()
        assert kept.webhook_secret
        assert kept.client_secret
        assert kept.client_id
        # This process acts as the App now: id, key, webhook secret, GitHub sign-in.
        assert deps.settings.github_app_id == github_api.app_id
        secret = deps.settings.github_webhook_secret
        assert secret is not None
        assert secret.get_secret_value() == kept.webhook_secret
        assert deps.settings.github_client_id == kept.client_id
        info = await deps.github_app().app_info()
        assert info.id == github_api.app_id
        # Never logged: not the key, not a secret.
        text = json.dumps(logs, default=str)
        for value in (kept.private_key[40:80], kept.webhook_secret, kept.client_secret):
            assert value not in text
        assert any(entry["event"] == "github_app_registered" for entry in logs)

        # The setup page now shows the App, with the link to install it.
        setup = await web.get("/setup")
        assert "openase-test" in setup.text
        assert "/installations/new" in setup.text
        assert 'action="/setup"' not in setup.text  # no second App without the admin


async def test_an_organization_registers_through_its_own_url_and_no_webhook_is_allowed(
    fresh: Opened, github_api: FakeGitHubAPI
) -> None:
    async with fresh() as web:
        url, manifest, state = await start(
            web, owner="organization", organization="acme-corp", webhook_url=""
        )
        assert url.startswith(f"{WEB_URL}/organizations/acme-corp/settings/apps/new?state=")
        assert "hook_attributes" not in manifest  # GitHub refuses one without a URL
        done = await back_from_github(web, github_api, manifest, state)
        assert done.status_code == 200


async def test_the_page_posts_to_github_only_and_binds_the_state_to_this_browser(
    fresh: Opened,
) -> None:
    async with fresh() as web:
        form = await web.get("/setup")
        page = await web.post(
            "/setup",
            data={"csrf": csrf_of(form.text), "owner": "personal", "name": "x", "webhook_url": ""},
        )
        policy = page.headers["content-security-policy"]
        assert f"form-action 'self' {WEB_URL};" in policy
        cookie = page.headers["set-cookie"]
        assert "openase_setup=" in cookie
        assert "HttpOnly" in cookie
        assert "Path=/setup" in cookie
        assert 'src="/static/setup.js"' in page.text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"owner": "robot"}, "owner: choose"),
        ({"owner": "organization", "organization": ""}, "organization: the organization"),
        ({"owner": "organization", "organization": "-bad-"}, "organization: the organization"),
        ({"name": ""}, "name: the App"),
        ({"name": "x" * 35}, "name: the App"),
        ({"webhook_url": "ftp://example.org/hook"}, "webhook_url: an http(s) URL"),
    ],
)
async def test_bad_answers_are_named_and_nothing_starts(
    fresh: Opened, deps: Deps, fields: dict[str, str], message: str
) -> None:
    async with fresh() as web:
        form = await web.get("/setup")
        data = {"csrf": csrf_of(form.text), "owner": "personal", "name": "ok", "webhook_url": ""}
        answer = await web.post("/setup", data={**data, **fields})
        assert answer.status_code == 400
        assert message in answer.text
        assert await deps.redis.keys(STATE_KEY + "*") == []


async def test_a_form_without_its_csrf_token_is_refused(fresh: Opened, deps: Deps) -> None:
    async with fresh() as web:
        answer = await web.post("/setup", data={"owner": "personal", "name": "x"})
        assert answer.status_code == 403
        assert await deps.redis.keys(STATE_KEY + "*") == []


async def test_a_reused_code_or_state_is_refused_and_nothing_more_is_stored(
    fresh: Opened, github_api: FakeGitHubAPI, deps: Deps
) -> None:
    # As the admin: without a token, the page would refuse anything once an App is there.
    async with fresh(admin_token=SecretStr(TOKEN)) as web:
        await sign_in(web)
        _, manifest, state = await start(web)
        code = github_api.registrations.create(manifest, state=state)
        first = await web.get("/setup/github/callback", params={"code": code, "state": state})
        assert first.status_code == 200
        path = deps.settings.data_dir / APP_FILE
        before = path.read_bytes()

        again = await web.get("/setup/github/callback", params={"code": code, "state": state})
        assert again.status_code == 400
        assert "stale, was used already, or was not started here" in again.text
        assert path.read_bytes() == before
        assert len(github_api.registrations.converted) == 1  # not even asked again


async def test_a_code_github_does_not_know_is_refused_and_nothing_is_stored(
    fresh: Opened, github_api: FakeGitHubAPI, deps: Deps
) -> None:
    async with fresh() as web:
        _, manifest, state = await start(web)
        github_api.registrations.create(manifest, state=state)  # the real code, not sent
        answer = await web.get(
            "/setup/github/callback", params={"code": "forged0123", "state": state}
        )
        assert answer.status_code == 400
        assert "GitHub did not accept that code" in answer.text
        assert not (deps.settings.data_dir / APP_FILE).exists()
        assert deps.settings.github_app_id is None


async def test_a_used_code_under_a_fresh_state_is_refused_by_github(
    fresh: Opened, github_api: FakeGitHubAPI, deps: Deps
) -> None:
    async with fresh(admin_token=SecretStr(TOKEN)) as web:
        await sign_in(web)
        _, manifest, state = await start(web)
        code = github_api.registrations.create(manifest, state=state)
        assert (
            await web.get("/setup/github/callback", params={"code": code, "state": state})
        ).status_code == 200
        path = deps.settings.data_dir / APP_FILE
        before = path.read_bytes()
        _, _, second_state = await start(web)
        answer = await web.get(
            "/setup/github/callback", params={"code": code, "state": second_state}
        )
        assert answer.status_code == 400
        assert "GitHub did not accept that code" in answer.text
        assert path.read_bytes() == before


@pytest.mark.parametrize("which", ["forged", "expired", "other browser", "malformed"])
async def test_a_state_not_started_here_is_refused(
    fresh: Opened, github_api: FakeGitHubAPI, deps: Deps, which: str
) -> None:
    async with fresh() as web:
        _, manifest, state = await start(web)
        code = github_api.registrations.create(manifest, state=state)
        if which == "forged":
            state = "A" * 43
        elif which == "expired":
            await deps.redis.delete(STATE_KEY + state)  # Redis let it go after ten minutes
        elif which == "other browser":
            web.cookies.delete("openase_setup", path="/setup")
            web.cookies.set("openase_setup", "someone-elses-nonce", path="/setup")
        else:
            state = "not a state!"
        answer = await web.get("/setup/github/callback", params={"code": code, "state": state})
        assert answer.status_code == 400
        assert "Start again from the setup page" in answer.text
        assert not (deps.settings.data_dir / APP_FILE).exists()
        assert github_api.registrations.converted == []


async def test_github_not_answering_leaves_the_link_usable(
    fresh: Opened, github_api: FakeGitHubAPI, deps: Deps
) -> None:
    async with fresh() as web:
        _, manifest, state = await start(web)
        code = github_api.registrations.create(manifest, state=state)
        github_api.fail(httpx.ConnectTimeout("no answer"), path_regex=r"/app-manifests/")
        answer = await web.get("/setup/github/callback", params={"code": code, "state": state})
        assert answer.status_code == 502
        assert "reload this page" in answer.text
        assert not (deps.settings.data_dir / APP_FILE).exists()
        retry = await web.get("/setup/github/callback", params={"code": code, "state": state})
        assert retry.status_code == 200


# --- who may use it --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "base_url"),
    [
        ({"x-forwarded-for": "203.0.113.9"}, HERE),  # a proxy on this machine
        ({}, "http://evil.example:2080"),  # DNS rebinding: another site's name, our address
    ],
)
async def test_without_a_token_only_this_machine_may_set_up(
    fresh: Opened, headers: dict[str, str], base_url: str
) -> None:
    async with fresh(base_url=base_url) as web:
        answer = await web.get("/setup", headers=headers)
        assert answer.status_code == 403
        assert "answers only on this machine" in answer.text


async def test_a_remote_client_may_not_set_up_without_a_token(
    app_with: AppWith, tmp_path: Path
) -> None:
    app_changes = {"data_dir": tmp_path, **NO_APP}
    async with app_with(base_url=HERE, **app_changes) as web:
        transport = web._transport
        assert isinstance(transport, httpx.ASGITransport)
        transport.client = ("198.51.100.7", 5000)
        answer = await web.get("/setup")
        assert answer.status_code == 403


async def test_without_a_token_nothing_is_registered_once_an_app_is(
    fresh: Opened, github_api: FakeGitHubAPI
) -> None:
    async with fresh() as web:
        _, manifest, state = await start(web)
        code = github_api.registrations.create(manifest, state=state)
        callback = {"code": code, "state": state}
        assert (await web.get("/setup/github/callback", params=callback)).status_code == 200
        page = await web.get("/setup")
        assert 'action="/setup"' not in page.text
        csrf = web.cookies["openase_csrf"]  # the signed-out form token (double submit)
        answer = await web.post("/setup", data={"csrf": csrf, "owner": "personal", "name": "2"})
        assert answer.status_code == 403
        assert "configured already" in answer.text
        again = await web.get("/setup/github/callback", params=callback)
        assert again.status_code == 403


async def test_with_a_token_only_the_signed_in_admin_may(
    fresh: Opened, github_api: FakeGitHubAPI, deps: Deps
) -> None:
    async with fresh(admin_token=SecretStr(TOKEN)) as web:
        signed_out = await web.get("/setup")
        assert signed_out.status_code == 303
        assert signed_out.headers["location"].startswith("/login?next=")

        writer = encode(deps.settings, new_session("octocat", "github"))
        web.cookies.set(SESSION_COOKIE, writer)
        assert (await web.get("/setup")).status_code == 403
        web.cookies.delete(SESSION_COOKIE)

        await sign_in(web)
        _, manifest, state = await start(web)
        assert (await back_from_github(web, github_api, manifest, state)).status_code == 200
        # The admin may register another App: it replaces the stored one.
        _, manifest, state = await start(web, name="OpenASE two")
        assert (await back_from_github(web, github_api, manifest, state)).status_code == 200
        kept = stored_app(deps.settings)
        assert kept is not None
        assert kept.slug == "openase-two"
        secret = deps.settings.github_webhook_secret
        assert secret is not None
        assert secret.get_secret_value() == kept.webhook_secret


async def test_an_app_from_the_environment_wins(fresh: Opened, deps: Deps) -> None:
    async with fresh(
        admin_token=SecretStr(TOKEN),
        github_app_id=99,
        github_private_key=helpers.test_private_key(),
    ) as web:
        await sign_in(web)
        page = await web.get("/setup")
        assert "Configured in the environment: App id <code>99</code>" in page.text
        assert 'action="/setup"' not in page.text
        answer = await web.post(
            "/setup", data={"csrf": csrf_of(page.text), "owner": "personal", "name": "x"}
        )
        assert answer.status_code == 409
        assert "wins over one registered here" in answer.text
        assert deps.settings.github_app_id == 99


async def test_a_webhook_secret_from_the_environment_stays_and_the_page_says_so(
    fresh: Opened, github_api: FakeGitHubAPI, deps: Deps
) -> None:
    async with fresh(github_webhook_secret=SecretStr("chosen-by-the-team")) as web:
        _, manifest, state = await start(web)
        done = await back_from_github(web, github_api, manifest, state)
        assert done.status_code == 200
        assert "differs from the new App" in done.text
        secret = deps.settings.github_webhook_secret
        assert secret is not None
        assert secret.get_secret_value() == "chosen-by-the-team"
        assert deps.settings.github_app_id == github_api.app_id


async def test_a_running_worker_acts_as_the_app_registered_after_it_started(
    fresh: Opened, github_api: FakeGitHubAPI, deps: Deps, services: Services
) -> None:
    """`openase up` started with no App: the worker sharing its Deps takes the new App's
    deliveries into the engine without a restart."""
    async with fresh() as web:
        worker = make_worker(deps.settings, redis_url=services.redis_url, deps=deps)
        running = asyncio.create_task(worker.main())
        try:
            for _ in range(100):
                if ENGINE_CTX_KEY in worker.ctx:
                    break
                await asyncio.sleep(0.05)
            assert worker.ctx[ENGINE_CTX_KEY]() is None  # started without an App
            _, manifest, state = await start(web)
            assert (await back_from_github(web, github_api, manifest, state)).status_code == 200
            kept = stored_app(deps.settings)
            assert kept is not None
            assert kept.webhook_secret is not None

            github_api.add_installation(77, "acme")
            repo = github_api.add_repo("acme/api", 501, 77)
            github_api.commit(repo, {"README.md": "# api\n"})
            issue = github_api.add_issue(repo, 7, title="Fix the parser", labels=("openase",))
            payload = {
                "action": "labeled",
                "issue": issue,
                "label": issue["labels"][0],
                "repository": repo.data,
                "sender": github_example("issues", "labeled")["sender"],
                "installation": {"id": 77, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u"},
            }
            old = GitHubWebhookSender(web, secret=TEST_WEBHOOK_SECRET)
            assert (await old.send("issues", payload)).status_code == 401
            sent = await GitHubWebhookSender(web, secret=kept.webhook_secret).send(
                "issues", payload
            )
            assert sent.status_code == 202

            async def claimed() -> str | None:
                async with deps.sessions() as session:
                    return await session.scalar(select(TicketState.state))

            for _ in range(200):
                if await claimed():
                    break
                await asyncio.sleep(0.05)
            async with deps.sessions() as session:
                stored = (
                    await session.execute(
                        select(Delivery.status, Delivery.error, Delivery.attempts)
                    )
                ).all()
            # What the delivery became, should this fail again (it did, rarely, in full runs).
            assert await claimed() == "todo", (stored, deps.workflow, worker.ctx.get("ingest_pump"))
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await worker.close()


async def test_a_damaged_record_is_shown_and_a_new_registration_replaces_it(
    fresh: Opened, github_api: FakeGitHubAPI, deps: Deps
) -> None:
    async with fresh() as web:
        (deps.settings.data_dir / APP_FILE).write_text("{half")
        page = await web.get("/setup")
        assert page.status_code == 200
        assert "not a GitHub App record" in page.text
        _, manifest, state = await start(web)
        assert (await back_from_github(web, github_api, manifest, state)).status_code == 200
        kept = stored_app(deps.settings)
        assert kept is not None
        assert kept.id == github_api.app_id


async def test_with_a_relay_the_channel_is_the_webhook_and_its_state_is_shown(
    fresh: Opened, github_api: FakeGitHubAPI, deps: Deps
) -> None:
    channel = "https://smee.io/aBcD1234"
    async with fresh(webhook_proxy_url=channel) as web:
        page = await web.get("/setup")
        assert f'name="webhook_url" type="text" value="{channel}"' in page.text
        assert "not running (no process relays the channel now)" in page.text
        assert "GitHub cannot reach" not in page.text  # the relay is the way in

        since = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
        status = RelayStatus(
            state="connected", channel=channel, connected_since=since, events_stored=3
        )
        await write_relay_status(deps.redis, status)
        page = await web.get("/setup")
        assert "connected since 2026-12-06 09:30:00 UTC" in page.text
        assert "3 stored" in page.text

        _, manifest, state = await start(web, webhook_url=channel)
        assert manifest["hook_attributes"] == {"url": channel, "active": True}
        assert (await back_from_github(web, github_api, manifest, state)).status_code == 200


async def test_the_page_counts_what_recovery_asked_for(fresh: Opened, deps: Deps) -> None:
    at = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    async with transaction(deps.sessions) as session:
        session.add(SyncMark(name=RECOVERY_MARK, at=at))
        for guid, error in (("g-1", None), ("g-2", None), ("g-3", "Validation Failed")):
            session.add(
                RedeliveryRequest(
                    guid=guid, github_delivery_id=1, event="issues", delivered_at=at, error=error
                )
            )
        session.add(
            Delivery(source="github", delivery_id="g-1", event="issues", payload={}, status="done")
        )
    async with fresh() as web:
        page = await web.get("/setup")
    assert "2026-12-06 08:00:00 UTC" in page.text
    assert "3 (3 in the last 24 h), 1 arrived since" in page.text
    assert "<dt>refused by GitHub</dt><dd>1</dd>" in page.text
