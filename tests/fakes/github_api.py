"""A respx fake of the GitHub REST API: App JWT auth, installation tokens, repositories,
issue and pull request lists (state, sort, direction, the issues' `since`) with paging,
ETags and rate-limit headers; and the writes the outbox makes (labels, comments,
reactions, issue updates, check runs, PRs, merges).

Objects are GitHub's published example payloads (tests/fixtures) with the few fields the
REST API adds over webhooks, so `githubkit_schemas` models accept every answer. The fake
checks what GitHub checks: a valid RS256 App JWT on `/app` routes, a live installation
token elsewhere, the Accept and X-GitHub-Api-Version headers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import time
import typing
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import jwt
import pydantic
import respx
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from githubkit.compat import type_validate_python
from githubkit_schemas.latest import models as gh

from adapters.github.transport import graphql_url
from bot.settings import Settings
from tests.fakes.github_deliveries import FakeDeliveryLog
from tests.fakes.github_git import sync_from_git
from tests.fakes.github_manifests import FakeAppRegistrations
from tests.support.helpers import github_example

# The extension key of a recorded request: epoch seconds when it reached the fake.
ARRIVED = "openase_arrived"

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
    # Git content (see FakeGitHubAPI.commit): branch -> head sha, commit sha -> {path: bytes}.
    branches: dict[str, str] = field(default_factory=dict)
    trees: dict[str, dict[str, bytes]] = field(default_factory=dict)
    # A bare repository the branches and files are read from instead (see github_git.py).
    git_dir: Path | None = None

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
    method: str | None = None  # only requests of this method (any, if None)


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
        self.router = router  # other fakes (Linear) mount on it too
        # The OAuth app of the web page's GitHub sign-in.
        self.oauth_client_id = "Iv1.testclient"
        self.oauth_client_secret = "oauth-secret"
        self.oauth_codes: dict[str, str] = {}
        self.user_tokens: dict[str, str] = {}
        self.api_url = api_url.rstrip("/")
        self.base_path = httpx.URL(self.api_url).path.rstrip("/")
        # POST {graphql_url} (GHES: /api/graphql, beside /api/v3) goes to `graphql`, which
        # tests/fakes/github_graphql.py plugs in; queued answers match it as "/graphql".
        self.graphql_path = httpx.URL(graphql_url(self.api_url)).path
        self.graphql: Handler | None = None
        self.app_id = app_id
        self.private_key_pem = private_key_pem
        self.web_url = WEB_URL
        key = load_pem_private_key(private_key_pem.encode(), password=None)
        self.public_key = key.public_key()
        self.clock = clock
        self.installations: dict[int, Json] = {}
        self.repos: dict[str, FakeRepo] = {}  # by lower-case full name
        self.tokens: dict[str, tuple[int, datetime]] = {}  # token -> (installation, expiry)
        self.token_requests: list[int] = []
        # token -> what it was asked for (the request's JSON; {} for the installation's all)
        self.token_scopes: dict[str, Json] = {}
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
            ("GET", re.compile(r"/app"), self._app),
            ("POST", re.compile(r"/graphql"), self._graphql),
            ("GET", re.compile(r"/repos/(?P<name>[^/]+/[^/]+)/installation"), self._installation),
            ("GET", re.compile(r"/repos/(?P<name>[^/]+/[^/]+)"), self._repo),
            ("GET", re.compile(r"/repos/(?P<name>[^/]+/[^/]+)/issues"), self._issues),
            ("GET", re.compile(r"/repositories/(?P<rid>\d+)/issues"), self._issues),
            ("GET", re.compile(r"/repos/(?P<name>[^/]+/[^/]+)/pulls"), self._pulls),
            ("GET", re.compile(r"/repositories/(?P<rid>\d+)/pulls"), self._pulls),
            (
                "GET",
                re.compile(r"/repos/(?P<name>[^/]+/[^/]+)/git/ref/heads/(?P<branch>.+)"),
                self._branch_ref,
            ),
            (
                "GET",
                re.compile(r"/repos/(?P<name>[^/]+/[^/]+)/contents/(?P<path>.*)"),
                self._contents,
            ),
            (
                "GET",
                re.compile(
                    r"/orgs/(?P<org>[^/]+)/teams/(?P<slug>[^/]+)/memberships/(?P<login>[^/]+)"
                ),
                self._team_membership,
            ),
        ]
        self._init_writes()
        self._routes += self._write_routes()
        # The App's webhook delivery log (empty until a test logs deliveries in it).
        self.delivery_log = FakeDeliveryLog(self)
        # Apps created from a manifest (the setup page's registration), and their codes.
        self.registrations = FakeAppRegistrations(self)
        router.route(host=httpx.URL(self.api_url).host).mock(side_effect=self._serve)
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

    def commit(
        self,
        repo: FakeRepo,
        files: dict[str, str | bytes | None],
        *,
        branch: str | None = None,
    ) -> str:
        """A new commit on `branch` (the default one) changing `files` (None deletes); its sha."""
        branch = branch or str(repo.data["default_branch"])
        parent = repo.branches.get(branch)
        tree = dict(repo.trees.get(parent, {})) if parent else {}
        for path, content in files.items():
            if content is None:
                tree.pop(path, None)
            else:
                tree[path] = content.encode() if isinstance(content, str) else content
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"{parent}:{len(repo.trees)}".encode())
        for path in sorted(tree):
            digest.update(path.encode() + b"\0" + tree[path])
        sha = digest.hexdigest()
        repo.trees[sha] = tree
        repo.branches[branch] = sha
        return sha

    def queue(
        self,
        status: int,
        body: Any = None,
        *,
        path_regex: str = ".*",
        headers: dict[str, str] | None = None,
        method: str | None = None,
    ) -> None:
        """Serve this answer to the next request whose API path matches `path_regex`."""
        self.queued.append(QueuedAnswer(path_regex, status, body, headers or {}, method=method))

    def route(self, method: str, path_regex: str, handler: Handler) -> None:
        """Serve `method` on API paths matching `path_regex` (its named groups become the
        handler's keyword arguments): how a fake of one more part of GitHub plugs in."""
        self._routes.append((method, re.compile(path_regex), handler))

    def app_authorized(self, request: httpx.Request) -> bool:
        """Whether the request carries a valid App JWT (the `/app` endpoints need one)."""
        return self._app_authorized(request)

    def answer(
        self, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """An answer as GitHub gives it (rate-limit headers and all)."""
        return self._answer(status, body, headers)

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
        # When it reached "GitHub" (epoch seconds): what GitHub's rolling limits count by.
        request.extensions.setdefault(ARRIVED, time.time())
        self.requests.append(request)
        response = self._dispatch(request)
        self.answers.append((request, response))
        return response

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/login/oauth/access_token":
            return self._oauth_token(request)
        path = self._api_path(request)
        if path is None:
            return self._answer(404, {"message": "Not Found"})
        if path == "/user" and request.method == "GET":
            return self._oauth_user(request)
        if "application/vnd.github" not in request.headers.get("accept", ""):
            return self._answer(415, {"message": "Unsupported 'Accept' header"})
        if request.headers.get("x-github-api-version") not in SUPPORTED_API_VERSIONS:
            return self._answer(400, {"message": "Unsupported 'X-GitHub-Api-Version'"})
        for index, queued in enumerate(self.queued):
            if re.search(queued.path_regex, path) and queued.method in (None, request.method):
                del self.queued[index]
                if queued.error is not None:
                    raise queued.error
                return self._answer(queued.status, queued.body, queued.headers)
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match and request.method == method:
                return handler(request, **match.groupdict())
        return self._answer(404, {"message": "Not Found"})

    # --- OAuth web flow (sign-in to the web page) ---------------------------------------

    def oauth_code(self, login: str) -> str:
        """The code GitHub hands the browser after `login` authorised the OAuth app."""
        code = secrets.token_hex(10)
        self.oauth_codes[code] = login
        return code

    def _oauth_token(self, request: httpx.Request) -> httpx.Response:
        # GitHub answers a bad code with 200 and an `error` field, as here.
        form = dict(httpx.QueryParams(request.content.decode()))
        login = self.oauth_codes.pop(form.get("code", ""), None)
        if (
            login is None
            or form.get("client_id") != self.oauth_client_id
            or form.get("client_secret") != self.oauth_client_secret
        ):
            return httpx.Response(200, json={"error": "bad_verification_code"})
        token = f"ghu_{secrets.token_hex(16)}"
        self.user_tokens[token] = login
        return httpx.Response(
            200, json={"access_token": token, "token_type": "bearer", "scope": ""}
        )

    def _oauth_user(self, request: httpx.Request) -> httpx.Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        login = self.user_tokens.get(token) if scheme.lower() in ("bearer", "token") else None
        if login is None:
            return self._answer(401, {"message": "Bad credentials"})
        return self._answer(200, {"login": login, "id": abs(hash(login)) % 10**8, "type": "User"})

    def _api_path(self, request: httpx.Request) -> str | None:
        path = request.url.path
        if path == self.graphql_path:
            return "/graphql"
        if not path.startswith(self.base_path + "/"):
            return None
        return path[len(self.base_path) :]

    def _graphql(self, request: httpx.Request) -> httpx.Response:
        if self.graphql is None:
            return self._answer(404, {"message": "Not Found"})
        return self.graphql(request)

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
        scope: Any = {}
        if request.content:  # a narrower token: GitHub's schema, names without the owner
            scope = self._body(request, gh.AppInstallationsInstallationIdAccessTokensPostBody)
            if isinstance(scope, httpx.Response):
                return scope
        mine = {
            repo.data["name"].lower()
            for repo in self.repos.values()
            if repo.installation_id == int(inst)
        }
        if any(name.lower() not in mine for name in scope.get("repositories") or ()):
            return self._answer(
                422,
                {
                    "message": "There is at least one repository that does not exist or is "
                    "not accessible to the parent installation."
                },
            )
        self.token_requests.append(int(inst))
        token = self.make_token()
        expires_at = self.clock() + self.token_lifetime
        self.tokens[token] = (int(inst), expires_at)
        self.token_scopes[token] = scope
        body = {
            "token": token,
            "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": {"metadata": "read", **scope["permissions"]}
            if scope.get("permissions")
            else {"issues": "write", "metadata": "read", "pull_requests": "write"},
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
        order = _list_order(kind, params)
        if isinstance(order, str):
            return self._answer(422, {"message": order})
        key, descending = order
        items = sorted(
            (i for i in source if state == "all" or i["state"] == state),
            key=key,
            reverse=descending,
        )
        if kind == "issues" and "since" in params:  # the pulls endpoint has no `since`
            try:
                since = datetime.fromisoformat(params["since"])
            except ValueError:
                return self._answer(422, {"message": "Validation Failed: since"})
            items = [i for i in items if datetime.fromisoformat(i["updated_at"]) >= since]
        if kind == "pulls" and "head" in params:  # OWNER:BRANCH
            owner = repo.full_name.split("/")[0]
            items = [i for i in items if f"{owner}:{i['head']['ref']}" == params["head"]]
        if kind == "pulls" and "base" in params:
            items = [i for i in items if i["base"]["ref"] == params["base"]]
        body = items[(page - 1) * per_page : page * per_page]
        last = max(1, -(-len(items) // per_page))
        headers = {"etag": 'W/"' + hashlib.sha256(json.dumps(body).encode()).hexdigest() + '"'}
        link = self._link_header(repo, kind, params, per_page, page, last)
        if link:
            headers["link"] = link
        if request.headers.get("if-none-match") == headers["etag"]:
            return self._answer(304, None, headers, costs=False)  # free, as on GitHub
        return self._answer(200, body, headers)

    def _branch_ref(self, request: httpx.Request, name: str, branch: str) -> httpx.Response:
        installation_id = self._installation_of(request)
        if installation_id is None:
            return self._unauthorized()
        repo = self.repos.get(name.lower())
        if repo is None or repo.installation_id != installation_id:
            return self._answer(404, {"message": "Not Found"})
        sync_from_git(repo)
        if not repo.branches:
            return self._answer(409, {"message": "Git Repository is empty."})
        sha = repo.branches.get(branch)
        if sha is None:
            return self._answer(404, {"message": "Not Found"})
        base = f"{self.api_url}/repos/{repo.full_name}/git"
        body = {
            "ref": f"refs/heads/{branch}",
            "node_id": "REF_" + sha[:12],
            "url": f"{base}/refs/heads/{branch}",
            "object": {"type": "commit", "sha": sha, "url": f"{base}/commits/{sha}"},
        }
        return self._answer(200, body)

    def _contents(self, request: httpx.Request, name: str, path: str) -> httpx.Response:
        installation_id = self._installation_of(request)
        if installation_id is None:
            return self._unauthorized()
        repo = self.repos.get(name.lower())
        if repo is None or repo.installation_id != installation_id:
            return self._answer(404, {"message": "Not Found"})
        ref = request.url.params.get("ref") or str(repo.data["default_branch"])
        sync_from_git(repo)
        tree = repo.trees.get(repo.branches.get(ref, ref))
        if tree is None:
            return self._answer(404, {"message": f"No commit found for the ref {ref}"})
        path = path.strip("/")
        if path in tree:
            return self._answer(200, self._content_file(repo, path, ref, tree[path]))
        if any(p.startswith(path + "/") for p in tree):
            # A folder lists its entries; enough for callers that only tell it from a file.
            entries = sorted(
                {p[len(path) + 1 :].split("/")[0] for p in tree if p.startswith(path + "/")}
            )
            return self._answer(
                200, [{"type": "file", "name": e, "path": f"{path}/{e}"} for e in entries]
            )
        return self._answer(404, {"message": "Not Found"})

    def _content_file(self, repo: FakeRepo, path: str, ref: str, content: bytes) -> Json:
        blob = hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False)
        sha = blob.hexdigest()
        api = f"{self.api_url}/repos/{repo.full_name}"
        web = f"{WEB_URL}/{repo.full_name}"
        large = len(content) > 1024 * 1024  # GitHub sends no content for files over 1 MB
        encoded = base64.encodebytes(content).decode()  # wrapped lines, as GitHub sends them
        return {
            "type": "file",
            "encoding": "none" if large else "base64",
            "size": len(content),
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "content": "" if large else encoded,
            "sha": sha,
            "url": f"{api}/contents/{path}?ref={ref}",
            "git_url": f"{api}/git/blobs/{sha}",
            "html_url": f"{web}/blob/{ref}/{path}",
            "download_url": f"https://raw.ghe.example.test/{repo.full_name}/{ref}/{path}",
            "_links": {
                "self": f"{api}/contents/{path}?ref={ref}",
                "git": f"{api}/git/blobs/{sha}",
                "html": f"{web}/blob/{ref}/{path}",
            },
        }

    def _link_header(
        self,
        repo: FakeRepo,
        kind: str,
        params: httpx.QueryParams,
        per_page: int,
        page: int,
        last: int,
    ) -> str:
        # GitHub's links name the repository by id, not by the path the client asked for,
        # and carry the query asked (sort, since, ...) on to every page.
        base = f"{self.api_url}/repositories/{repo.data['id']}/{kind}"
        kept = {"state": params.get("state", "open")}
        kept |= {k: v for k, v in params.items() if k not in ("state", "per_page", "page")}

        def url(n: int) -> str:
            return str(httpx.URL(base, params={**kept, "per_page": per_page, "page": n}))

        links = []
        if page > 1:
            links += [f'<{url(page - 1)}>; rel="prev"', f'<{url(1)}>; rel="first"']
        if page < last:
            links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
        return ", ".join(links)

    # --- writes (outbox effects): labels, comments, reactions, issues, check runs, PRs ------
    # Request bodies are checked against githubkit's models of GitHub's schema (unknown
    # top-level fields included), so a body GitHub would refuse is refused here with 422.

    def _init_writes(self) -> None:
        self.repo_labels: dict[str, dict[str, Json]] = {}  # repo (lower) -> casefold name -> label
        self.comments: dict[int, Json] = {}  # by id, in creation order
        self.reactions: list[Json] = []
        self.check_runs: dict[int, Json] = {}  # by id
        self.annotations: dict[int, list[Json]] = {}  # check run id -> every annotation sent
        self.bot_user: Json = {
            **github_example("issue_comment", "created")["comment"]["user"],
            "login": "openase[bot]",
            "id": 900_001,
            "type": "Bot",
        }
        # Seconds each request takes when > 0; requests then overlap as they would on the
        # network, and `max_in_flight` records how many of one installation's overlapped.
        self.latency = 0.0
        self.in_flight: dict[int, int] = {}
        self.max_in_flight: dict[int, int] = {}
        self.merges: list[Json] = []  # the body of each merge that went through
        # Read by the merge gate and the review loop: who may write, other CI's commit
        # statuses by sha, the comments each review left on the diff.
        self.permissions: dict[str, str] = {}  # login -> admin | maintain | write | read
        self.team_members: dict[str, set[str]] = {}  # "org/team-slug" -> logins (active)
        self.statuses: dict[str, list[Json]] = {}
        self.review_comments: dict[int, list[Json]] = {}
        self._write_ids = iter(range(7_000_001, 8_000_000))

    def _write_routes(self) -> list[tuple[str, re.Pattern[str], Handler]]:
        repo = r"/repos/(?P<name>[^/]+/[^/]+)"
        routes: list[tuple[str, str, Handler]] = [
            ("GET", r"/labels/(?P<label>.+)", self._get_label),
            ("POST", r"/labels", self._create_label),
            ("GET", r"/issues/(?P<number>\d+)/labels", self._issue_labels),
            ("POST", r"/issues/(?P<number>\d+)/labels", self._add_labels),
            ("DELETE", r"/issues/(?P<number>\d+)/labels/(?P<label>.+)", self._remove_label),
            ("GET", r"/issues/(?P<number>\d+)/comments", self._list_comments),
            ("POST", r"/issues/(?P<number>\d+)/comments", self._create_comment),
            ("PATCH", r"/issues/comments/(?P<cid>\d+)", self._update_comment),
            ("POST", r"/issues/comments/(?P<cid>\d+)/reactions", self._react),
            ("POST", r"/pulls/comments/(?P<cid>\d+)/reactions", self._react),
            ("POST", r"/issues/(?P<number>\d+)/reactions", self._react),
            ("PATCH", r"/issues/(?P<number>\d+)", self._update_issue),
            ("POST", r"/issues", self._create_issue),
            ("GET", r"/commits/(?P<ref>[^/]+)/check-runs", self._list_check_runs),
            ("POST", r"/check-runs", self._create_check_run),
            ("PATCH", r"/check-runs/(?P<rid>\d+)", self._update_check_run),
            ("POST", r"/pulls", self._create_pull),
            ("GET", r"/pulls/(?P<number>\d+)", self._get_pull),
            ("PATCH", r"/pulls/(?P<number>\d+)", self._update_pull),
            ("PUT", r"/pulls/(?P<number>\d+)/merge", self._merge_pull),
            ("GET", r"/collaborators/(?P<login>[^/]+)/permission", self._permission),
            ("GET", r"/commits/(?P<ref>[^/]+)/status", self._combined_status),
            (
                "GET",
                r"/pulls/(?P<number>\d+)/reviews/(?P<rid>\d+)/comments",
                self._review_comments,
            ),
        ]
        return [(method, re.compile(repo + path), handler) for method, path, handler in routes]

    def calls(self, method: str, path_regex: str = ".*") -> list[tuple[str, Any]]:
        """(API path, JSON body or None) of each request of `method` whose path matches."""
        found = []
        for request in self.requests:
            path = self._api_path(request) or request.url.path
            if request.method == method and re.search(path_regex, path):
                found.append((path, json.loads(request.content) if request.content else None))
        return found

    def add_comment(
        self, repo: FakeRepo, number: int, body: str, *, login: str = "octocat"
    ) -> Json:
        """A comment by a person (not the App) on issue or PR `number`."""
        user = {**self.bot_user, "login": login, "id": 21_000 + len(login), "type": "User"}
        return self._new_comment(repo, number, body, user, app=None)

    def labels_of(self, repo: FakeRepo, number: int) -> list[str]:
        issue = self._issue(repo, number)
        return [] if issue is None else [label["name"] for label in issue["labels"]]

    def comments_on(self, repo: FakeRepo, number: int) -> list[Json]:
        return [c for c in self.comments.values() if c["_on"] == (repo.full_name.lower(), number)]

    def _serve(
        self, request: httpx.Request
    ) -> httpx.Response | Coroutine[Any, Any, httpx.Response]:
        if self.latency <= 0:
            return self._handle(request)
        return self._handle_slowly(request)  # respx awaits it (async clients only)

    async def _handle_slowly(self, request: httpx.Request) -> httpx.Response:
        installation_id = self._installation_of(request)
        if installation_id is not None:
            now = self.in_flight.get(installation_id, 0) + 1
            self.in_flight[installation_id] = now
            self.max_in_flight[installation_id] = max(
                now, self.max_in_flight.get(installation_id, 0)
            )
        try:
            await asyncio.sleep(self.latency)
            return self._handle(request)
        finally:
            if installation_id is not None:
                self.in_flight[installation_id] -= 1

    def _writable(self, request: httpx.Request, name: str) -> FakeRepo | httpx.Response:
        installation_id = self._installation_of(request)
        if installation_id is None:
            return self._unauthorized()
        repo = self.repos.get(name.lower())
        if repo is None or repo.installation_id != installation_id:
            return self._answer(404, {"message": "Not Found"})
        return repo

    def _body(self, request: httpx.Request, schema: Any) -> Any:
        """The JSON body if GitHub's schema accepts it, else the 4xx answer GitHub gives."""
        try:
            data = json.loads(request.content or b"null")
        except ValueError:
            return self._answer(400, {"message": "Problems parsing JSON"})
        members = typing.get_args(schema) or (schema,)
        known = {
            name for model in members if model is not type(None) for name in model.model_fields
        }
        unknown = sorted(set(data) - known) if isinstance(data, dict) else []
        try:
            type_validate_python(schema, data)
        except pydantic.ValidationError as exc:
            errors = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            return self._answer(422, {"message": "Invalid request.", "errors": errors})
        if unknown:
            return self._answer(422, {"message": f"Invalid request: unknown fields {unknown}"})
        return data

    def _issue(self, repo: FakeRepo, number: int) -> Json | None:
        return next((i for i in repo.issues if i["number"] == number), None)

    def _pull(self, repo: FakeRepo, number: int) -> Json | None:
        pull = next((p for p in repo.pulls if p["number"] == number), None)
        if pull is not None and repo.git_dir is not None and pull["state"] == "open":
            # An open PR's head follows its branch, as on GitHub.
            sync_from_git(repo)
            pull["head"]["sha"] = repo.branches.get(pull["head"]["ref"], pull["head"]["sha"])
        return pull

    def _repo_label(self, repo: FakeRepo, name: str) -> Json | None:
        labels = self.repo_labels.setdefault(repo.full_name.lower(), {})
        found = labels.get(name.casefold())
        if found is None:  # labels that only exist on issues (add_issue's) count too
            on_issues = (lb for i in repo.issues for lb in i["labels"])
            found = next((lb for lb in on_issues if lb["name"].casefold() == name.casefold()), None)
        return found

    def _new_label(self, repo: FakeRepo, name: str, color: str, description: str | None) -> Json:
        label = self._rewrite(github_example("label", "created")["label"], repo.full_name)
        label.update(
            id=next(self._write_ids),
            name=name,
            color=color,
            description=description,
            url=f"{self.api_url}/repos/{repo.full_name}/labels/{quote(name, safe='')}",
        )
        self.repo_labels.setdefault(repo.full_name.lower(), {})[name.casefold()] = label
        return label

    @staticmethod
    def _segment_encoded(request: httpx.Request, name: str) -> bool:
        """Whether the last path segment spells `name` URL-encoded ('/' as %2F), as GitHub needs."""
        raw = request.url.raw_path.split(b"?")[0].rsplit(b"/", 1)[-1].decode()
        return unquote(raw) == name

    def _get_label(self, request: httpx.Request, name: str, label: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        found = self._repo_label(repo, label) if self._segment_encoded(request, label) else None
        if found is None:
            return self._answer(404, {"message": "Not Found"})
        return self._answer(200, found)

    def _create_label(self, request: httpx.Request, name: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        body = self._body(request, gh.ReposOwnerRepoLabelsPostBody)
        if isinstance(body, httpx.Response):
            return body
        if self._repo_label(repo, body["name"]) is not None:
            errors = [{"resource": "Label", "code": "already_exists", "field": "name"}]
            return self._answer(422, {"message": "Validation Failed", "errors": errors})
        label = self._new_label(
            repo, body["name"], body.get("color") or "ededed", body.get("description")
        )
        return self._answer(201, label)

    def _issue_labels(self, request: httpx.Request, name: str, number: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        issue = self._issue(repo, int(number))
        if issue is None:
            return self._answer(404, {"message": "Not Found"})
        return self._answer(200, issue["labels"])

    def _add_labels(self, request: httpx.Request, name: str, number: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        body = self._body(request, gh.ReposOwnerRepoIssuesIssueNumberLabelsPostBodyOneof0)
        if isinstance(body, httpx.Response):
            return body
        issue = self._issue(repo, int(number))
        if issue is None:
            return self._answer(404, {"message": "Not Found"})
        for wanted in body.get("labels") or []:
            if any(lb["name"].casefold() == wanted.casefold() for lb in issue["labels"]):
                continue
            # GitHub creates a label that does not exist yet, in its default grey.
            label = self._repo_label(repo, wanted) or self._new_label(repo, wanted, "ededed", None)
            issue["labels"].append(label)
        return self._answer(200, issue["labels"])

    def _remove_label(
        self, request: httpx.Request, name: str, number: str, label: str
    ) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        issue = self._issue(repo, int(number))
        carried = [lb for lb in (issue or {}).get("labels", []) if lb["name"] == label]
        if issue is None or not carried or not self._segment_encoded(request, label):
            return self._answer(404, {"message": "Label does not exist"})
        issue["labels"] = [lb for lb in issue["labels"] if lb["name"] != label]
        return self._answer(200, issue["labels"])

    def _new_comment(
        self, repo: FakeRepo, number: int, body: str, user: Json, app: Json | None
    ) -> Json:
        comment = self._rewrite(
            github_example("issue_comment", "created")["comment"], repo.full_name
        )
        comment_id = next(self._write_ids)
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        comment.update(
            id=comment_id,
            node_id=f"IC_{comment_id}",
            body=body,
            user=user,
            performed_via_github_app=app,
            created_at=now,
            updated_at=now,
            author_association="NONE" if app else "MEMBER",
            url=f"{self.api_url}/repos/{repo.full_name}/issues/comments/{comment_id}",
            html_url=f"{WEB_URL}/{repo.full_name}/issues/{number}#issuecomment-{comment_id}",
            issue_url=f"{self.api_url}/repos/{repo.full_name}/issues/{number}",
        )
        comment["_on"] = (repo.full_name.lower(), number)
        self.comments[comment_id] = comment
        return comment

    @staticmethod
    def _public(comment: Json) -> Json:
        return {k: v for k, v in comment.items() if not k.startswith("_")}

    def _app(self, request: httpx.Request) -> httpx.Response:
        if not self._app_authorized(request):
            return self._answer(401, {"message": "A JSON web token could not be decoded"})
        app = {**self._app_object(), "installations_count": len(self.installations)}
        type_validate_python(gh.Integration, app)  # the shape GitHub documents
        return self._answer(200, app)

    def _app_object(self) -> Json:
        app: Json = json.loads(
            json.dumps(github_example("check_run", "created")["check_run"]["app"])
        )
        app.update(
            id=self.app_id, slug="openase", name="openase", html_url=f"{WEB_URL}/apps/openase"
        )
        return app

    def _list_comments(self, request: httpx.Request, name: str, number: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        if self._issue(repo, int(number)) is None:
            return self._answer(404, {"message": "Not Found"})
        params = request.url.params
        per_page = min(int(params.get("per_page", "30")), 100, self.max_per_page)
        page = int(params.get("page", "1"))
        items = [self._public(c) for c in self.comments_on(repo, int(number))]  # oldest first
        last = max(1, -(-len(items) // per_page))
        headers = {}
        if page < last:
            base = f"{self.api_url}/repos/{repo.full_name}/issues/{number}/comments"
            headers["link"] = f'<{base}?per_page={per_page}&page={page + 1}>; rel="next"'
        return self._answer(200, items[(page - 1) * per_page : page * per_page], headers)

    def _create_comment(self, request: httpx.Request, name: str, number: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        body = self._body(request, gh.ReposOwnerRepoIssuesIssueNumberCommentsPostBody)
        if isinstance(body, httpx.Response):
            return body
        if self._issue(repo, int(number)) is None:
            return self._answer(404, {"message": "Not Found"})
        comment = self._new_comment(
            repo, int(number), body["body"], self.bot_user, self._app_object()
        )
        return self._answer(201, self._public(comment))

    def _update_comment(self, request: httpx.Request, name: str, cid: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        body = self._body(request, gh.ReposOwnerRepoIssuesCommentsCommentIdPatchBody)
        if isinstance(body, httpx.Response):
            return body
        comment = self.comments.get(int(cid))
        if comment is None or comment["_on"][0] != repo.full_name.lower():
            return self._answer(404, {"message": "Not Found"})
        comment.update(body=body["body"], updated_at=self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"))
        return self._answer(200, self._public(comment))

    def _react(
        self, request: httpx.Request, name: str, cid: str | None = None, number: str | None = None
    ) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        body = self._body(request, gh.ReposOwnerRepoIssuesCommentsCommentIdReactionsPostBody)
        if isinstance(body, httpx.Response):
            return body
        if "/pulls/comments/" in request.url.path:
            subject: tuple[str, int] = ("review_comment", int(cid or 0))
        elif cid is not None:
            if int(cid) not in self.comments:
                return self._answer(404, {"message": "Not Found"})
            subject = ("issue_comment", int(cid))
        else:
            if self._issue(repo, int(number or 0)) is None:
                return self._answer(404, {"message": "Not Found"})
            subject = ("issue", int(number or 0))
        for reaction in self.reactions:
            if reaction["_subject"] == subject and reaction["content"] == body["content"]:
                return self._answer(200, self._public(reaction))  # GitHub: already there
        reaction_id = next(self._write_ids)
        reaction = {
            "id": reaction_id,
            "node_id": f"REA_{reaction_id}",
            "user": self.bot_user,
            "content": body["content"],
            "created_at": self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "_subject": subject,
        }
        self.reactions.append(reaction)
        return self._answer(201, self._public(reaction))

    def _create_issue(self, request: httpx.Request, name: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        body = self._body(request, gh.ReposOwnerRepoIssuesPostBody)
        if isinstance(body, httpx.Response):
            return body
        numbers = [i["number"] for i in repo.issues] + [p["number"] for p in repo.pulls]
        names = [lb if isinstance(lb, str) else lb.get("name") for lb in body.get("labels") or []]
        labels = [
            self._repo_label(repo, n) or self._new_label(repo, n, "ededed", None) for n in names
        ]
        issue = self.add_issue(repo, max(numbers, default=0) + 1, title=str(body["title"]))
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        issue.update(
            body=body.get("body"),
            labels=labels,
            user=self.bot_user,
            performed_via_github_app=self._app_object(),
            state="open",
            comments=0,
            created_at=now,
            updated_at=now,
            closed_at=None,
        )
        return self._answer(201, issue)

    def _update_issue(self, request: httpx.Request, name: str, number: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        body = self._body(request, gh.ReposOwnerRepoIssuesIssueNumberPatchBody)
        if isinstance(body, httpx.Response):
            return body
        issue = self._issue(repo, int(number))
        if issue is None:
            return self._answer(404, {"message": "Not Found"})
        for key in ("title", "body", "state", "state_reason"):
            if key in body:
                issue[key] = body[key]
        if body.get("state") == "closed":
            issue["closed_at"] = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._answer(200, issue)

    def _list_check_runs(self, request: httpx.Request, name: str, ref: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        params = request.url.params
        runs = [
            r
            for r in self.check_runs.values()
            if r["_repo"] == repo.full_name.lower()
            and r["head_sha"] == ref
            and params.get("check_name", r["name"]) == r["name"]
            and params.get("app_id", str(r["app"]["id"])) == str(r["app"]["id"])
        ]
        if params.get("filter", "latest") == "latest":  # the newest run of each name only
            newest = {r["name"]: r for r in sorted(runs, key=lambda r: r["id"])}
            runs = list(newest.values())
        runs.sort(key=lambda r: r["id"], reverse=True)
        per_page = min(int(params.get("per_page", "30")), 100, self.max_per_page)
        page = int(params.get("page", "1"))
        shown = [self._public(r) for r in runs[(page - 1) * per_page : page * per_page]]
        return self._answer(200, {"total_count": len(runs), "check_runs": shown})

    def _create_check_run(self, request: httpx.Request, name: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        schema = gh.ReposOwnerRepoCheckRunsPostBodyOneof0 | gh.ReposOwnerRepoCheckRunsPostBodyOneof1
        body = self._body(request, schema)
        if isinstance(body, httpx.Response):
            return body
        run = self._rewrite(github_example("check_run", "created")["check_run"], repo.full_name)
        run_id = next(self._write_ids)
        run.update(
            id=run_id,
            node_id=f"CR_{run_id}",
            name=body["name"],
            head_sha=body["head_sha"],
            external_id=body.get("external_id", ""),
            details_url=body.get("details_url"),
            status=body.get("status", "queued"),
            conclusion=None,
            started_at=None,
            completed_at=None,
            app=self._app_object(),
            pull_requests=[],
            url=f"{self.api_url}/repos/{repo.full_name}/check-runs/{run_id}",
            html_url=f"{WEB_URL}/{repo.full_name}/runs/{run_id}",
            output={"title": None, "summary": None, "text": None, "annotations_count": 0},
            _repo=repo.full_name.lower(),
            _actions=[],
        )
        self.annotations[run_id] = []
        self.check_runs[run_id] = run
        self._apply_check_run(run, body)
        return self._answer(201, self._public(run))

    def add_foreign_check_run(
        self, repo: FakeRepo, head_sha: str, name: str, *, app_id: int = 15368
    ) -> Json:
        """Another App's check run on a commit (CI), in progress until a test completes it."""
        run = self._rewrite(github_example("check_run", "created")["check_run"], repo.full_name)
        run_id = next(self._write_ids)
        run.update(
            id=run_id,
            name=name,
            head_sha=head_sha,
            status="in_progress",
            conclusion=None,
            app={**run["app"], "id": app_id, "slug": "ci"},
            _repo=repo.full_name.lower(),
            _actions=[],
        )
        self.annotations[run_id] = []
        self.check_runs[run_id] = run
        return run

    def _update_check_run(self, request: httpx.Request, name: str, rid: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        schema = (
            gh.ReposOwnerRepoCheckRunsCheckRunIdPatchBodyAnyof0
            | gh.ReposOwnerRepoCheckRunsCheckRunIdPatchBodyAnyof1
        )
        body = self._body(request, schema)
        if isinstance(body, httpx.Response):
            return body
        run = self.check_runs.get(int(rid))
        if run is None or run["_repo"] != repo.full_name.lower():
            return self._answer(404, {"message": "Not Found"})
        self._apply_check_run(run, body)
        return self._answer(200, self._public(run))

    def _apply_check_run(self, run: Json, body: Json) -> None:
        for key in ("name", "external_id", "details_url", "status", "started_at", "completed_at"):
            if key in body:
                run[key] = body[key]
        if body.get("conclusion"):
            run.update(conclusion=body["conclusion"], status="completed")
        if "actions" in body:
            run["_actions"] = body["actions"]
        output = body.get("output")
        if output:
            for key in ("title", "summary", "text"):
                if key in output:
                    run["output"][key] = output[key]
            # GitHub appends annotations with every update; it never replaces them.
            self.annotations[run["id"]].extend(output.get("annotations") or [])
            run["output"]["annotations_count"] = len(self.annotations[run["id"]])
            run["output"]["annotations_url"] = run["url"] + "/annotations"

    def _create_pull(self, request: httpx.Request, name: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        body = self._body(request, gh.ReposOwnerRepoPullsPostBody)
        if isinstance(body, httpx.Response):
            return body
        owner = repo.full_name.split("/")[0]
        branch = body["head"].split(":", 1)[-1]
        sync_from_git(repo)
        if repo.git_dir is not None and branch not in repo.branches:
            errors = [{"resource": "PullRequest", "field": "head", "code": "invalid"}]
            return self._answer(422, {"message": "Validation Failed", "errors": errors})
        for pull in repo.pulls:
            same = pull["head"]["ref"] == branch and pull["base"]["ref"] == body["base"]
            if same and pull["state"] == "open":
                message = f"A pull request already exists for {owner}:{branch}."
                errors = [{"resource": "PullRequest", "code": "custom", "message": message}]
                return self._answer(422, {"message": "Validation Failed", "errors": errors})
        number = max((i["number"] for i in repo.issues), default=0) + 1
        pull = self.add_pull(
            repo,
            number,
            title=body.get("title") or branch,
            body=body.get("body") or "",
            head_ref=branch,
        )
        pull["head"].update(
            sha=repo.branches.get(branch)
            or hashlib.sha1(branch.encode(), usedforsecurity=False).hexdigest(),
            label=f"{owner}:{branch}",
        )
        pull["base"].update(ref=body["base"], label=f"{owner}:{body['base']}")
        pull.update(
            state="open",
            draft=bool(body.get("draft")),
            merged=False,
            merged_at=None,
            merge_commit_sha=None,
            mergeable=True,
            mergeable_state="clean",
        )
        return self._answer(201, pull)

    def _get_pull(self, request: httpx.Request, name: str, number: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        pull = self._pull(repo, int(number))
        if pull is None:
            return self._answer(404, {"message": "Not Found"})
        return self._answer(200, pull)

    def _update_pull(self, request: httpx.Request, name: str, number: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        body = self._body(request, gh.ReposOwnerRepoPullsPullNumberPatchBody)
        if isinstance(body, httpx.Response):
            return body
        pull = self._pull(repo, int(number))
        if pull is None:
            return self._answer(404, {"message": "Not Found"})
        for key in ("title", "body", "state"):
            if key in body:
                pull[key] = body[key]
        if "base" in body:
            pull["base"]["ref"] = body["base"]
        return self._answer(200, pull)

    def _merge_pull(self, request: httpx.Request, name: str, number: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        body = self._body(request, gh.ReposOwnerRepoPullsPullNumberMergePutBody | None)
        if isinstance(body, httpx.Response):
            return body
        pull = self._pull(repo, int(number))
        if pull is None:
            return self._answer(404, {"message": "Not Found"})
        if pull.get("merged") or pull["state"] != "open" or pull.get("mergeable") is False:
            return self._answer(405, {"message": "Pull Request is not mergeable"})
        if (body or {}).get("sha") not in (None, pull["head"]["sha"]):
            message = "Head branch was modified. Review and try the merge again."
            return self._answer(409, {"message": message})
        sha = hashlib.sha1(f"merge {pull['id']}".encode(), usedforsecurity=False).hexdigest()
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        pull.update(merged=True, state="closed", merged_at=now, closed_at=now, merge_commit_sha=sha)
        self.merges.append({"number": int(number), **(body or {})})
        return self._answer(
            200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}
        )

    def _permission(self, request: httpx.Request, name: str, login: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        permission = self.permissions.get(login, "read")
        user = {**self.bot_user, "login": login, "type": "User", "id": abs(hash(login)) % 10**7}
        return self._answer(200, {"permission": permission, "role_name": permission, "user": user})

    def _team_membership(
        self, request: httpx.Request, org: str, slug: str, login: str
    ) -> httpx.Response:
        installation_id = self._installation_of(request)
        if installation_id is None:
            return self._unauthorized()
        # An installation token sees the teams of its own account only.
        if self.installations[installation_id]["account"]["login"].lower() != org.lower():
            return self._answer(404, {"message": "Not Found"})
        key = f"{org}/{slug}".lower()
        members = next((m for k, m in self.team_members.items() if k.lower() == key), set())
        if login.lower() not in {member.lower() for member in members}:
            return self._answer(404, {"message": "Not Found"})
        team_id = abs(hash(key)) % 10**7
        url = f"{self.api_url}/teams/{team_id}/memberships/{login}"
        return self._answer(200, {"url": url, "role": "member", "state": "active"})

    def _combined_status(self, request: httpx.Request, name: str, ref: str) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        statuses = self.statuses.get(ref, [])
        states = {status["state"] for status in statuses}
        state = (
            "failure"
            if states & {"failure", "error"}
            else "pending"
            if "pending" in states or not statuses
            else "success"
        )
        return self._answer(
            200,
            {
                "state": state,
                "sha": ref,
                "total_count": len(statuses),
                "statuses": statuses,
                "repository": repo.data,
                "commit_url": f"{self.api_url}/repos/{repo.full_name}/commits/{ref}",
                "url": f"{self.api_url}/repos/{repo.full_name}/commits/{ref}/status",
            },
        )

    def _review_comments(
        self, request: httpx.Request, name: str, number: str, rid: str
    ) -> httpx.Response:
        repo = self._writable(request, name)
        if isinstance(repo, httpx.Response):
            return repo
        return self._answer(200, self.review_comments.get(int(rid), []))


def _list_order(kind: str, params: httpx.QueryParams) -> tuple[Callable[[Json], Any], bool] | str:
    """How GET .../issues and .../pulls sort (`sort`, `direction`, GitHub's defaults), or
    the message of GitHub's 422 for a value it does not take."""
    keys: dict[str, Callable[[Json], Any]] = {
        "created": lambda i: i["number"],  # numbers follow creation
        "updated": lambda i: (datetime.fromisoformat(i["updated_at"]), i["number"]),
        "comments" if kind == "issues" else "popularity": lambda i: (
            i.get("comments", 0),
            i["number"],
        ),
    }
    sort = params.get("sort", "created")
    if sort not in keys:
        return f"Validation Failed: the fake sorts {kind} by {', '.join(keys)}, not {sort!r}"
    # Issues: newest first unless asked. Pulls: desc for `created`, otherwise asc.
    default = "desc" if kind == "issues" or sort == "created" else "asc"
    direction = params.get("direction", default)
    if direction not in ("asc", "desc"):
        return "Validation Failed: direction must be asc or desc"
    return keys[sort], direction == "desc"


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
