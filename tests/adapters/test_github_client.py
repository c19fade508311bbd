"""The GitHub App client against a respx fake of the REST API (GHES-style base URL)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from githubkit.compat import type_validate_python
from githubkit_schemas.latest.models import (
    FullRepository,
    Installation,
    InstallationToken,
    Issue,
    PullRequestSimple,
)
from structlog.testing import capture_logs

from adapters.base import CachedPage, Page
from adapters.errors import AdapterError, RateLimited, RequestRejected, TransientError
from adapters.github.auth import app_jwt
from adapters.github.client import GitHubApp
from adapters.github.transport import API_VERSION, graphql_url
from bot.settings import Settings
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo, fake_github_api
from tests.support.helpers import TEST_API_URL
from tests.support.helpers import test_private_key as app_private_key

APP_ID = 4242
INSTALLATION = 77


class Clock:
    """A settable clock shared by the client and the fake."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class MemoryEtags:
    """An in-memory EtagStore."""

    def __init__(self) -> None:
        self.pages: dict[str, CachedPage] = {}

    async def get(self, url: str) -> CachedPage | None:
        return self.pages.get(url)

    async def put(self, url: str, page: CachedPage) -> None:
        self.pages[url] = page


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def github_api(settings: Settings, clock: Clock) -> Iterator[FakeGitHubAPI]:
    with fake_github_api(settings, clock) as fake:
        fake.add_installation(INSTALLATION, "acme")
        yield fake


@pytest.fixture
def repo(github_api: FakeGitHubAPI) -> FakeRepo:
    return github_api.add_repo("acme/widgets", 555, INSTALLATION)


@pytest.fixture
def app(clock: Clock) -> GitHubApp:
    return GitHubApp(
        api_url=TEST_API_URL, app_id=APP_ID, private_key=app_private_key(), clock=clock
    )


def _public_key() -> Any:
    return load_pem_private_key(app_private_key().encode(), password=None).public_key()


# --- auth -------------------------------------------------------------------------------


def test_app_jwt_claims_verify_with_the_public_key() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    token = app_jwt(APP_ID, app_private_key(), now=now)
    claims = jwt.decode(token, _public_key(), algorithms=["RS256"], issuer=str(APP_ID))
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert claims["iat"] == int(now.timestamp()) - 60  # backdated for clock drift
    assert claims["exp"] - int(now.timestamp()) <= 600
    assert claims["exp"] - claims["iat"] <= 600
    assert claims["exp"] > int(now.timestamp())


@pytest.mark.parametrize(
    ("api_url", "expected"),
    [
        ("https://github_api.github.com", "https://github_api.github.com/graphql"),
        ("https://github_api.github.com/", "https://github_api.github.com/graphql"),
        ("https://ghe.example.test/api/v3", "https://ghe.example.test/api/graphql"),
        ("https://ghe.example.test/api/v3/", "https://ghe.example.test/api/graphql"),
        ("http://127.0.0.1:9999", "http://127.0.0.1:9999/graphql"),
    ],
)
def test_graphql_url_sits_next_to_the_rest_base(api_url: str, expected: str) -> None:
    assert graphql_url(api_url) == expected


async def test_installation_token_is_fetched_once_for_many_requests(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo
) -> None:
    for _ in range(5):
        info = await app.repository("acme/widgets", INSTALLATION)
        assert info.id == 555
    assert github_api.token_requests == [INSTALLATION]
    (token,) = github_api.tokens
    repo_calls = [r for r in github_api.requests if r.url.path.endswith("/repos/acme/widgets")]
    assert len(repo_calls) == 5
    assert {r.headers["authorization"] for r in repo_calls} == {f"Bearer {token}"}


async def test_concurrent_callers_share_one_token_refresh(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo
) -> None:
    infos = await asyncio.gather(*(app.repository("acme/widgets", INSTALLATION) for _ in range(10)))
    assert {info.full_name for info in infos} == {"acme/widgets"}
    assert github_api.token_requests == [INSTALLATION]


async def test_token_is_refreshed_shortly_before_it_expires(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo, clock: Clock
) -> None:
    first = await app.installation_token(INSTALLATION)
    clock.advance(timedelta(minutes=54))  # 6 minutes left: still good
    assert await app.installation_token(INSTALLATION) == first
    clock.advance(timedelta(minutes=2))  # 4 minutes left: inside the refresh margin
    second = await app.installation_token(INSTALLATION)
    assert second != first
    assert github_api.token_requests == [INSTALLATION, INSTALLATION]
    await app.repository("acme/widgets", INSTALLATION)
    assert github_api.requests[-1].headers["authorization"] == f"Bearer {second}"


@pytest.mark.parametrize("length", [1, 40, 93, 255, 4000])
async def test_token_length_is_not_assumed(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo, length: int
) -> None:
    token = ("ghs_" + "Ab9_" * length)[:length]
    github_api.make_token = lambda: token
    await app.repository("acme/widgets", INSTALLATION)
    assert github_api.requests[-1].headers["authorization"] == f"Bearer {token}"


async def test_each_run_token_is_new_for_one_repository_and_never_the_bots_own(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo, clock: Clock
) -> None:
    own = await app.installation_token(INSTALLATION)
    writes = await app.run_token(INSTALLATION, "acme/widgets", write=True)
    reads = await app.run_token(INSTALLATION, "acme/widgets", write=False)
    again = await app.run_token(INSTALLATION, "acme/widgets", write=True)
    assert len({own, writes.value, reads.value, again.value}) == 4
    assert writes.expires_at == clock.now + timedelta(hours=1)
    assert "ghs_" not in repr(writes)
    # GitHub's `apps/create-installation-access-token` body (the fake checks it against
    # githubkit's models of GitHub's OpenAPI description): names without the owner.
    bodies = [body for _, body in github_api.calls("POST", r"/access_tokens$")]
    write = {"repositories": ["widgets"], "permissions": {"contents": "write"}}
    read = {"repositories": ["widgets"], "permissions": {"contents": "read"}}
    assert bodies == [None, write, read, write]
    assert github_api.token_scopes[reads.value] == read
    # The bot's own calls go on with the installation's token, fetched once.
    await app.repository("acme/widgets", INSTALLATION)
    assert github_api.requests[-1].headers["authorization"] == f"Bearer {own}"
    assert await app.installation_token(INSTALLATION) == own


async def test_a_run_token_for_a_repository_outside_the_installation_is_refused(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo
) -> None:
    with pytest.raises(RequestRejected) as caught:
        await app.run_token(INSTALLATION, "acme/gadgets", write=True)
    assert caught.value.status == 422
    with pytest.raises(ValueError, match="OWNER/REPO"):
        await app.run_token(INSTALLATION, "widgets", write=True)


async def test_a_revoked_token_is_replaced_once(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo
) -> None:
    await app.repository("acme/widgets", INSTALLATION)
    github_api.tokens.clear()  # revoked on GitHub's side
    info = await app.repository("acme/widgets", INSTALLATION)
    assert info.full_name == "acme/widgets"
    assert github_api.token_requests == [INSTALLATION, INSTALLATION]


async def test_bad_app_credentials_say_what_to_check_without_leaking_them(
    clock: Clock, github_api: FakeGitHubAPI, repo: FakeRepo
) -> None:
    wrong = GitHubApp(api_url=TEST_API_URL, app_id=9999, private_key=app_private_key(), clock=clock)
    with capture_logs() as logs, pytest.raises(RequestRejected) as caught:
        await wrong.installation_token(INSTALLATION)
    assert caught.value.status == 401
    assert "OPENASE_GITHUB_APP_ID" in str(caught.value)
    sent = github_api.requests[-1].headers["authorization"].removeprefix("Bearer ")
    assert sent not in str(caught.value)
    assert all(sent not in repr(entry) for entry in logs)


async def test_no_token_is_ever_logged(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo
) -> None:
    github_api.add_issue(repo, 1, title="one")
    with capture_logs() as logs:
        await app.repository("acme/widgets", INSTALLATION)
        await app.run_token(INSTALLATION, "acme/widgets", write=True)
        async for _ in app.pages(
            "/repos/acme/widgets/issues",
            installation_id=INSTALLATION,
            params={"state": "open"},
            convert=lambda item: item,
        ):
            pass
    assert logs, "the client logs its token refresh and requests"
    secrets = [*github_api.tokens, *(r.headers["authorization"] for r in github_api.requests)]
    for entry in logs:
        assert all(secret not in repr(entry) for secret in secrets)


def test_a_key_that_is_not_pem_is_refused() -> None:
    with pytest.raises(AdapterError, match="not a PEM private key"):
        GitHubApp(api_url=TEST_API_URL, app_id=APP_ID, private_key="not a key")


# --- request shapes ------------------------------------------------------------------------


async def test_every_call_uses_the_configured_base_url_and_github_headers(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo
) -> None:
    await app.repo_installation("acme/widgets")
    await app.repository("acme/widgets", INSTALLATION)
    assert [(r.method, r.url.path) for r in github_api.requests] == [
        ("GET", "/api/v3/repos/acme/widgets/installation"),
        ("POST", "/api/v3/app/installations/77/access_tokens"),
        ("GET", "/api/v3/repos/acme/widgets"),
    ]
    for request in github_api.requests:
        assert str(request.url).startswith(TEST_API_URL + "/")
        assert request.headers["accept"] == "application/vnd.github+json"
        assert request.headers["x-github-api-version"] == API_VERSION
        assert request.headers["user-agent"] == "openase"
    # App endpoints carry the App's JWT, which verifies with the App's public key.
    for request in github_api.requests[:2]:
        credential = request.headers["authorization"].removeprefix("Bearer ")
        claims = jwt.decode(credential, _public_key(), algorithms=["RS256"], issuer="4242")
        assert claims["exp"] - claims["iat"] <= 600


async def test_fake_answers_have_the_shapes_of_githubs_openapi_models(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo
) -> None:
    github_api.add_issue(repo, 1, title="an issue", labels=("bug",))
    github_api.add_pull(repo, 2, title="a fix", body="Fixes #1")
    await app.repo_installation("acme/widgets")
    await app.repository("acme/widgets", INSTALLATION)
    await app.run_token(INSTALLATION, "acme/widgets", write=False)
    for kind in ("issues", "pulls"):
        async for _ in app.pages(
            f"/repos/acme/widgets/{kind}",
            installation_id=INSTALLATION,
            params={"state": "open"},
            convert=lambda item: item,
        ):
            pass
    models: dict[str, Any] = {
        "/installation": Installation,
        "/access_tokens": InstallationToken,
        "/repos/acme/widgets": FullRepository,
    }
    checked = 0
    for request, response in github_api.answers:
        path = request.url.path
        if path.endswith("/issues"):
            items = [type_validate_python(Issue, item) for item in response.json()]
            assert any(item.pull_request for item in items)  # PRs are listed as issues too
            checked += 1
        elif path.endswith("/pulls"):
            [type_validate_python(PullRequestSimple, item) for item in response.json()]
            checked += 1
        else:
            model = next(m for suffix, m in models.items() if path.endswith(suffix))
            type_validate_python(model, response.json())
            checked += 1
    assert checked == 6


# --- paging and ETags ---------------------------------------------------------------------


def _issue_pages(app: GitHubApp, etags: MemoryEtags | None = None) -> Any:
    return app.pages(
        "/repos/acme/widgets/issues",
        installation_id=INSTALLATION,
        params={"state": "open"},
        convert=lambda item: int(item["number"]),
        etags=etags,
    )


async def test_pages_follow_next_links_asking_for_100_per_page(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo
) -> None:
    for number in range(1, 8):
        github_api.add_issue(repo, number, title=f"issue {number}")
    github_api.max_per_page = 3
    pages: list[Page[int]] = [page async for page in _issue_pages(app)]
    assert [page.items for page in pages] == [(7, 6, 5), (4, 3, 2), (1,)]
    lists = [r for r in github_api.requests if r.url.path.endswith("/issues")]
    assert lists[0].url.path == "/api/v3/repos/acme/widgets/issues"
    assert dict(lists[0].url.params) == {"state": "open", "per_page": "100"}
    # Later pages are GitHub's Link URLs, followed verbatim.
    assert [r.url.path for r in lists[1:]] == ["/api/v3/repositories/555/issues"] * 2
    assert [r.url.params["page"] for r in lists[1:]] == ["2", "3"]
    assert pages[-1].next_url is None


async def test_unchanged_pages_are_free_304s_that_still_follow_the_stored_next_link(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo
) -> None:
    for number in range(1, 6):
        github_api.add_issue(repo, number, title=f"issue {number}")
    github_api.max_per_page = 2
    etags = MemoryEtags()
    first = [page async for page in _issue_pages(app, etags)]
    assert len(etags.pages) == 3
    remaining = github_api.rate_remaining
    second = [page async for page in _issue_pages(app, etags)]
    assert [page.not_modified for page in second] == [True, True, True]
    assert [page.items for page in second] == [(), (), ()]
    assert [page.url for page in second] == [page.url for page in first]
    sent = [r.headers.get("if-none-match") for r in github_api.requests[-3:]]
    assert sent == [etags.pages[page.url].etag for page in first]
    assert github_api.rate_remaining == remaining  # 304s do not count against the limit


async def test_an_etag_is_stored_only_after_the_consumer_took_the_page(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo
) -> None:
    for number in range(1, 4):
        github_api.add_issue(repo, number, title=f"issue {number}")
    github_api.max_per_page = 2
    etags = MemoryEtags()
    pages = _issue_pages(app, etags)
    await anext(pages)
    assert etags.pages == {}  # the consumer may still fail to apply page 1
    await anext(pages)
    assert len(etags.pages) == 1
    await pages.aclose()


async def test_a_link_to_another_host_is_not_followed(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo
) -> None:
    github_api.queue(
        200, [], path_regex="/issues$", headers={"link": '<https://evil.test/x?page=2>; rel="next"'}
    )
    with pytest.raises(AdapterError, match="refusing to follow"):
        async for _ in _issue_pages(app):
            pass
    assert all(r.url.host == "ghe.example.test" for r in github_api.requests)


# --- rate limits and failures -----------------------------------------------------------------


async def test_a_403_with_an_exhausted_limit_raises_rate_limited_until_the_reset(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo, clock: Clock
) -> None:
    reset = int((clock.now + timedelta(minutes=17)).timestamp())
    github_api.queue(
        403,
        {"message": "API rate limit exceeded for installation ID 77."},
        path_regex="^/repos/acme/widgets$",
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
    )
    with pytest.raises(RateLimited) as caught:
        await app.repository("acme/widgets", INSTALLATION)
    assert caught.value.retry_at == datetime.fromtimestamp(reset, UTC)
    assert "rate limit" in str(caught.value)
    assert "/repos/acme/widgets" in str(caught.value)


@pytest.mark.parametrize("status", [403, 429])
async def test_retry_after_sets_the_retry_time(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo, clock: Clock, status: int
) -> None:
    github_api.queue(
        status,
        {"message": "You have exceeded a secondary rate limit."},
        path_regex="^/repos/acme/widgets$",
        headers={"retry-after": "120"},
    )
    with pytest.raises(RateLimited) as caught:
        await app.repository("acme/widgets", INSTALLATION)
    assert caught.value.retry_at == clock.now + timedelta(seconds=120)


async def test_a_secondary_limit_without_headers_waits_a_minute(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo, clock: Clock
) -> None:
    github_api.queue(
        403,
        {"message": "You have exceeded a secondary rate limit. Please wait."},
        path_regex="^/repos/acme/widgets$",
    )
    with pytest.raises(RateLimited) as caught:
        await app.repository("acme/widgets", INSTALLATION)
    assert caught.value.retry_at == clock.now + timedelta(seconds=60)


async def test_a_403_about_permissions_is_rejected_not_rate_limited(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo
) -> None:
    github_api.queue(
        403,
        {"message": "Resource not accessible by integration"},
        path_regex="^/repos/acme/widgets$",
    )
    with pytest.raises(RequestRejected, match="Resource not accessible by integration") as caught:
        await app.repository("acme/widgets", INSTALLATION)
    assert caught.value.status == 403


async def test_an_exhausted_budget_stops_before_the_next_request(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo, clock: Clock
) -> None:
    await app.installation_token(INSTALLATION)
    github_api.rate_remaining = 1  # the next answer says 0 remain
    await app.repository("acme/widgets", INSTALLATION)
    sent = len(github_api.requests)
    with pytest.raises(RateLimited, match="installation 77") as caught:
        await app.repository("acme/widgets", INSTALLATION)
    assert len(github_api.requests) == sent  # nothing was sent
    assert caught.value.retry_at == clock.now + timedelta(hours=1)
    clock.advance(timedelta(hours=1, seconds=1))
    github_api.rate_remaining = 5000
    assert (await app.repository("acme/widgets", INSTALLATION)).id == 555


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_server_error_is_transient(
    app: GitHubApp, github_api: FakeGitHubAPI, repo: FakeRepo, status: int
) -> None:
    github_api.queue(status, {"message": "Server Error"}, path_regex="^/repos/acme/widgets$")
    with pytest.raises(TransientError, match=f"GitHub answered {status}"):
        await app.repository("acme/widgets", INSTALLATION)


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
async def test_a_network_failure_is_transient(
    app: GitHubApp, github_api: FakeGitHubAPI, error: Exception
) -> None:
    github_api.fail(error, path_regex="/access_tokens$")
    with pytest.raises(TransientError, match=f"access_tokens failed: {type(error).__name__}"):
        await app.installation_token(INSTALLATION)


async def test_an_app_not_installed_on_the_repository_says_so(
    app: GitHubApp, github_api: FakeGitHubAPI
) -> None:
    with pytest.raises(RequestRejected, match="not installed on acme/missing") as caught:
        await app.repo_installation("acme/missing")
    assert caught.value.status == 404
