"""The manifest flow's last step (`POST /app-manifests/{code}/conversions`): the code is
the only credential, so none is sent; the answer is read into the App's credentials, kept
out of repr; a refused code and a silent GitHub are told apart."""

from __future__ import annotations

import httpx
import pytest

from adapters.errors import RequestRejected, TransientError
from adapters.github.manifest import convert_manifest
from bot.settings import Settings
from tests.fakes.github_api import FakeGitHubAPI

MANIFEST = {
    "name": "OpenASE",
    "url": "https://bot.example.org/",
    "redirect_url": "https://bot.example.org/setup/github/callback",
    "hook_attributes": {"url": "https://bot.example.org/webhooks/github", "active": True},
}


async def test_a_code_becomes_the_apps_credentials(
    settings: Settings, github_api: FakeGitHubAPI
) -> None:
    code = github_api.registrations.create(MANIFEST)
    app = await convert_manifest(settings.api_url, code)

    request = github_api.requests[-1]
    assert (request.method, request.url.path) == (
        "POST",
        f"/api/v3/app-manifests/{code}/conversions",
    )
    assert "authorization" not in request.headers
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert (app.id, app.slug, app.name, app.owner) == (4242, "openase", "OpenASE", "octocat")
    assert app.html_url.endswith("/apps/openase")
    assert app.private_key == settings.github_private_key_pem()
    assert app.webhook_secret
    assert app.client_id.startswith("Iv1.")
    for secret in (app.private_key, app.webhook_secret, app.client_secret):
        assert secret not in repr(app)


async def test_an_app_without_a_webhook_has_no_secret(
    settings: Settings, github_api: FakeGitHubAPI
) -> None:
    manifest = {key: value for key, value in MANIFEST.items() if key != "hook_attributes"}
    app = await convert_manifest(settings.api_url, github_api.registrations.create(manifest))
    assert app.webhook_secret is None


async def test_a_code_works_once(settings: Settings, github_api: FakeGitHubAPI) -> None:
    code = github_api.registrations.create(MANIFEST)
    await convert_manifest(settings.api_url, code)
    with pytest.raises(RequestRejected) as refused:
        await convert_manifest(settings.api_url, code)
    assert refused.value.status == 404


@pytest.mark.parametrize("code", ["", "x" * 201, "ünïcode"])
async def test_a_malformed_code_is_not_sent(
    settings: Settings, github_api: FakeGitHubAPI, code: str
) -> None:
    with pytest.raises(RequestRejected):
        await convert_manifest(settings.api_url, code)
    assert github_api.requests == []


async def test_github_down_is_transient(settings: Settings, github_api: FakeGitHubAPI) -> None:
    github_api.queue(502, {"message": "Server Error"}, path_regex="/app-manifests/")
    with pytest.raises(TransientError):
        await convert_manifest(settings.api_url, "abc123")
    github_api.fail(httpx.ConnectError("refused"), path_regex="/app-manifests/")
    with pytest.raises(TransientError):
        await convert_manifest(settings.api_url, "abc123")
