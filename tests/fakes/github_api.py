"""A respx fake of the GitHub REST API: App JWT auth, installation tokens, repositories,
open issue and pull request lists with paging, ETags and rate-limit headers.

Objects are GitHub's published example payloads (tests/fixtures) with the few fields the
REST API adds over webhooks, so `githubkit_schemas` models accept every answer. The fake
checks what GitHub checks: a valid RS256 App JWT on `/app` routes, a live installation
token elsewhere, the Accept and X-GitHub-Api-Version headers.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import respx
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from bot.settings import Settings
from tests.helpers import github_example

Json = dict[str, Any]
Handler = Callable[..., httpx.Response]

SUPPORTED_API_VERSIONS = ("2022-11-28",)
WEB_URL = "https://ghe.example.test"


@dataclass
class FakeRepo:
    data: Json
    installation_id: int
    issues: list[Json] = field(default_factory=list)  # issue-shaped; PR items carry `pull_request`
    pulls: list[Json] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        name: str = self.data["full_name"]
        return name


@dataclass
class QueuedAnswer:
    """An answer served instead of the real one to the next request whose path matches."""

    path_regex: str
    status: int
    body: Any
    headers: dict[str, str]
    error: Exception | None = None  # raised instead, as a transport failure


class FakeGitHubAPI:
    """Install on a respx router; the state is plain attributes a test may read and change."""

    def __init__(
        self,
        router: respx.MockRouter,
        *,
        api_url: str,
        app_id: int,
        private_key_pem: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.base_path = httpx.URL(self.api_url).path.rstrip("/")
        self.app_id = app_id
        key = load_pem_private_key(private_key_pem.encode(), password=None)
        self.public_key = key.public_key()
        self.clock = clock
        self.installations: dict[int, Json] = {}
        self.repos: dict[str, FakeRepo] = {}  # by lower-case full name
        self.tokens: dict[str, tuple[int, datetime]] = {}  # token -> (installation, expiry)
        self.token_requests: list[int] = []
        self.make_token: Callable[[], str] = lambda: "ghs_" + secrets.token_hex(18)
        self.token_lifetime = timedelta(hours=1)
        # GitHub caps per_page at 100; a lower cap lets a test page without hundreds of items.
        self.max_per_page = 100
        self.rate_limit = 5000
        self.rate_remaining = 5000
        self.queued: list[QueuedAnswer] = []
        self.requests: list[httpx.Request] = []
        self.answers: list[tuple[httpx.Request, httpx.Response]] = []
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("POST", re.compile(r"/app/installations/(?P<inst>\d+)/access_tokens"), self._token),
            ("GET", re.compile(r"/repos/(?P<name>[^/]+/[^/]+)/installation"), self._installation),
            ("GET", re.compile(r"/repos/(?P<name>[^/]+/[^/]+)"), self._repo),
            ("GET", re.compile(r"/repos/(?P<name>[^/]+/[^/]+)/issues"), self._issues),
            ("GET", re.compile(r"/repositories/(?P<rid>\d+)/issues"), self._issues),
            ("GET", re.compile(r"/repos/(?P<name>[^/]+/[^/]+)/pulls"), self._pulls),
            ("GET", re.compile(r"/repositories/(?P<rid>\d+)/pulls"), self._pulls),
        ]
        router.route(host=httpx.URL(self.api_url).host).mock(side_effect=self._handle)
        # Only GitHub is faked: servers a test starts on loopback are reached for real.
        router.route(host__in=("127.0.0.1", "localhost", "::1")).pass_through()

    # --- building state --------------------------------------------------------------

    def add_installation(self, installation_id: int, account: str) -> Json:
        data = self._rewrite(github_example("installation", "created")["installation"], account)
        data.update(
            id=installation_id,
            app_id=self.app_id,
            app_slug="openase",
            suspended_at=None,
            suspended_by=None,
            created_at="2024-01-02T03:04:05Z",
            updated_at="2024-01-02T03:04:05Z",
        )
        data["account"]["login"] = account
        self.installations[installation_id] = data
        return data

    def add_repo(self, full_name: str, repo_id: int, installation_id: int) -> FakeRepo:
        data = self._rewrite(github_example("issues", "opened")["repository"], full_name)
        data.update(
            id=repo_id,
            full_name=full_name,
            name=full_name.split("/")[1],
            has_discussions=False,
            subscribers_count=1,
            network_count=0,
        )
        data["owner"]["login"] = full_name.split("/")[0]
        repo = FakeRepo(data=data, installation_id=installation_id)
        self.repos[full_name.lower()] = repo
        return repo

    def add_issue(
        self,
        repo: FakeRepo,
        number: int,
        *,
        title: str,
        labels: tuple[str, ...] = (),
        updated_at: str = "2024-03-01T10:00:00Z",
    ) -> Json:
        issue = self._rewrite(github_example("issues", "opened")["issue"], repo.full_name)
        issue.pop("pull_request", None)
        label = issue["labels"][0]
        issue.update(
            id=repo.data["id"] * 10_000 + number,
            number=number,
            title=title,
            labels=[{**label, "id": 1000 + i, "name": name} for i, name in enumerate(labels)],
            updated_at=updated_at,
            **self._links(repo, "issues", number),
        )
        repo.issues.append(issue)
        return issue

    def add_pull(
        self,
        repo: FakeRepo,
        number: int,
        *,
        title: str,
        body: str = "",
        head_ref: str = "feature",
        updated_at: str = "2024-03-02T10:00:00Z",
    ) -> Json:
        pr = self._rewrite(github_example("pull_request", "opened")["pull_request"], repo.full_name)
        pr.update(
            id=repo.data["id"] * 10_000 + 5000 + number,
            number=number,
            title=title,
            body=body,
            auto_merge=None,
            updated_at=updated_at,
            **self._links(repo, "pulls", number),
        )
        pr["head"]["ref"] = head_ref
        repo.pulls.append(pr)
        # The issues endpoint lists every PR too, as an issue with a `pull_request` key.
        as_issue = self.add_issue(repo, number, title=title, updated_at=updated_at)
        as_issue["pull_request"] = {
            "url": f"{self.api_url}/repos/{repo.full_name}/pulls/{number}",
            "html_url": f"{WEB_URL}/{repo.full_name}/pull/{number}",
            "diff_url": f"{WEB_URL}/{repo.full_name}/pull/{number}.diff",
            "patch_url": f"{WEB_URL}/{repo.full_name}/pull/{number}.patch",
            "merged_at": None,
        }
        return pr

    def queue(
        self,
        status: int,
        body: Any = None,
        *,
        path_regex: str = ".*",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Serve this answer to the next request whose API path matches `path_regex`."""
        self.queued.append(QueuedAnswer(path_regex, status, body, headers or {}))

    def fail(self, error: Exception, *, path_regex: str = ".*") -> None:
        """Fail the next request whose API path matches with `error` (a timeout, a refusal)."""
        self.queued.append(QueuedAnswer(path_regex, 0, None, {}, error))

    def _rewrite(self, template: Json, full_name: str) -> Json:
        """A fixture object moved to our API host and repository."""
        text = json.dumps(template)
        text = text.replace("https://api.github.com", self.api_url)
        text = text.replace("https://github.com", WEB_URL)
        text = text.replace("Codertocat/Hello-World", full_name)
        copy: Json = json.loads(text)
        return copy

    def _links(self, repo: FakeRepo, kind: str, number: int) -> Json:
        web = "pull" if kind == "pulls" else "issues"
        return {
            "url": f"{self.api_url}/repos/{repo.full_name}/{kind}/{number}",
            "html_url": f"{WEB_URL}/{repo.full_name}/{web}/{number}",
        }

    # --- serving ------------------------------------------------------------------------

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self._dispatch(request)
        self.answers.append((request, response))
        return response

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if not path.startswith(self.base_path + "/"):
            return self._answer(404, {"message": "Not Found"})
        path = path[len(self.base_path) :]
        if "application/vnd.github" not in request.headers.get("accept", ""):
            return self._answer(415, {"message": "Unsupported 'Accept' header"})
        if request.headers.get("x-github-api-version") not in SUPPORTED_API_VERSIONS:
            return self._answer(400, {"message": "Unsupported 'X-GitHub-Api-Version'"})
        for index, queued in enumerate(self.queued):
            if re.search(queued.path_regex, path):
                del self.queued[index]
                if queued.error is not None:
                    raise queued.error
                return self._answer(queued.status, queued.body, queued.headers)
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match and request.method == method:
                return handler(request, **match.groupdict())
        return self._answer(404, {"message": "Not Found"})

    def _answer(
        self, status: int, body: Any, headers: dict[str, str] | None = None, *, costs: bool = True
    ) -> httpx.Response:
        if costs and self.rate_remaining > 0:
            self.rate_remaining -= 1
        reset = int((self.clock() + timedelta(hours=1)).timestamp())
        sent = {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(self.rate_remaining),
            "x-ratelimit-used": str(self.rate_limit - self.rate_remaining),
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-resource": "core",
            "x-github-api-version-selected": SUPPORTED_API_VERSIONS[0],
            **(headers or {}),
        }
        if body is None:
            return httpx.Response(status, headers=sent)
        return httpx.Response(status, json=body, headers=sent)

    def _bearer(self, request: httpx.Request) -> str | None:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        return credential if scheme.lower() in ("bearer", "token") and credential else None

    def _app_authorized(self, request: httpx.Request) -> bool:
        credential = self._bearer(request)
        if credential is None:
            return False
        try:
            claims = jwt.decode(
                credential,
                self.public_key,  # type: ignore[arg-type]  # an RSA public key
                algorithms=["RS256"],
                issuer=str(self.app_id),
                # Times are checked below against the fake's clock, which tests move.
                options={
                    "require": ["iat", "exp", "iss"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            return False
        now = self.clock().timestamp()
        iat, exp = int(claims["iat"]), int(claims["exp"])
        # GitHub refuses a JWT issued in the future, expired, or living over 10 minutes.
        return iat <= now < exp and exp - iat <= 600

    def _installation_of(self, request: httpx.Request) -> int | None:
        credential = self._bearer(request)
        if credential is None or credential not in self.tokens:
            return None
        installation_id, expires_at = self.tokens[credential]
        return installation_id if expires_at > self.clock() else None

    def _unauthorized(self) -> httpx.Response:
        return self._answer(401, {"message": "Bad credentials"})

    def _token(self, request: httpx.Request, inst: str) -> httpx.Response:
        if not self._app_authorized(request):
            return self._answer(401, {"message": "A JSON web token could not be decoded"})
        if int(inst) not in self.installations:
            return self._answer(404, {"message": "Not Found"})
        self.token_requests.append(int(inst))
        token = self.make_token()
        expires_at = self.clock() + self.token_lifetime
        self.tokens[token] = (int(inst), expires_at)
        body = {
            "token": token,
            "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": {"issues": "write", "metadata": "read", "pull_requests": "write"},
            "repository_selection": "selected",
        }
        return self._answer(201, body)

    def _repo_for(
        self, request: httpx.Request, name: str | None, rid: str | None
    ) -> FakeRepo | None:
        if name is not None:
            return self.repos.get(name.lower())
        return next((r for r in self.repos.values() if str(r.data["id"]) == rid), None)

    def _installation(self, request: httpx.Request, name: str) -> httpx.Response:
        if not self._app_authorized(request):
            return self._answer(401, {"message": "A JSON web token could not be decoded"})
        repo = self.repos.get(name.lower())
        if repo is None:
            return self._answer(404, {"message": "Not Found"})
        return self._answer(200, self.installations[repo.installation_id])

    def _repo(self, request: httpx.Request, name: str) -> httpx.Response:
        installation_id = self._installation_of(request)
        if installation_id is None:
            return self._unauthorized()
        repo = self.repos.get(name.lower())
        if repo is None or repo.installation_id != installation_id:
            return self._answer(404, {"message": "Not Found"})
        return self._answer(200, repo.data)

    def _issues(
        self, request: httpx.Request, name: str | None = None, rid: str | None = None
    ) -> httpx.Response:
        return self._list(request, self._repo_for(request, name, rid), "issues")

    def _pulls(
        self, request: httpx.Request, name: str | None = None, rid: str | None = None
    ) -> httpx.Response:
        return self._list(request, self._repo_for(request, name, rid), "pulls")

    def _list(self, request: httpx.Request, repo: FakeRepo | None, kind: str) -> httpx.Response:
        installation_id = self._installation_of(request)
        if installation_id is None:
            return self._unauthorized()
        if repo is None or repo.installation_id != installation_id:
            return self._answer(404, {"message": "Not Found"})
        params = request.url.params
        state = params.get("state", "open")
        per_page = min(int(params.get("per_page", "30")), 100, self.max_per_page)
        page = int(params.get("page", "1"))
        source = repo.issues if kind == "issues" else repo.pulls
        # Default order of both endpoints: newest first.
        items = sorted(
            (i for i in source if state == "all" or i["state"] == state),
            key=lambda i: i["number"],
            reverse=True,
        )
        body = items[(page - 1) * per_page : page * per_page]
        last = max(1, -(-len(items) // per_page))
        headers = {"etag": 'W/"' + hashlib.sha256(json.dumps(body).encode()).hexdigest() + '"'}
        link = self._link_header(repo, kind, state, per_page, page, last)
        if link:
            headers["link"] = link
        if request.headers.get("if-none-match") == headers["etag"]:
            return self._answer(304, None, headers, costs=False)  # free, as on GitHub
        return self._answer(200, body, headers)

    def _link_header(
        self, repo: FakeRepo, kind: str, state: str, per_page: int, page: int, last: int
    ) -> str:
        # GitHub's links name the repository by id, not by the path the client asked for.
        base = f"{self.api_url}/repositories/{repo.data['id']}/{kind}"

        def url(n: int) -> str:
            return f"{base}?state={state}&per_page={per_page}&page={n}"

        links = []
        if page > 1:
            links += [f'<{url(page - 1)}>; rel="prev"', f'<{url(1)}>; rel="first"']
        if page < last:
            links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
        return ", ".join(links)


@contextmanager
def fake_github_api(
    settings: Settings, clock: Callable[[], datetime] | None = None
) -> Iterator[FakeGitHubAPI]:
    """The fake on `settings.api_url` for the App in `settings`; no other HTTP gets out."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield FakeGitHubAPI(
            router,
            api_url=settings.api_url,
            app_id=settings.github_app_id or 0,
            private_key_pem=settings.github_private_key_pem() or "",
            clock=clock or (lambda: datetime.now(UTC)),
        )
