"""GitHub sign-in for the web page (OAuth web flow with the App's client id and secret).

`GET /login/github` sends the browser to GitHub with a `state` that is signed, names the
page to return to, and is bound to this browser by a nonce cookie. `GET
/login/github/callback` checks that state, exchanges the code for a user token, asks
GitHub who the user is, and lets them in only with write access (admin, maintain or write)
to a repository of an installation of the App, asked as the App. The user token is used
for those two requests only and never stored or logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from adapters.errors import AdapterError
from bot.api.request import deps_of
from bot.engine.access import WRITE_PERMISSIONS, GitHubPermissions, PermissionCache
from bot.errors import ConfigError
from bot.settings import Settings
from bot.tables.mirror import Repository
from bot.web.auth import safe_next
from bot.web.pages import page, settings_of
from bot.web.session import new_session, session_key, set_session

log = structlog.get_logger(__name__)

NONCE_COOKIE = "openase_oauth"
STATE_SECONDS = 600
# Repositories asked about per sign-in, at most: a large installation is not walked whole.
MAX_REPOS_CHECKED = 50
PERMISSIONS_TTL = 60.0  # seconds a writer's answer is trusted, as for slash commands


def configured(settings: Settings) -> bool:
    return bool(settings.github_client_id and settings.github_client_secret)


def _state(settings: Settings, nonce: str, next_path: str) -> str:
    body = json.dumps({"n": nonce, "next": next_path, "exp": int(time.time()) + STATE_SECONDS})
    payload = base64.urlsafe_b64encode(body.encode()).rstrip(b"=").decode()
    mac = hmac.new(session_key(settings), b"oauth-state:" + payload.encode(), hashlib.sha256)
    return f"{payload}.{mac.hexdigest()}"


def _read_state(settings: Settings, state: str, nonce: str | None) -> str | None:
    """The page to return to, if `state` is ours, fresh and bound to this browser's nonce."""
    payload, _, mac = state.rpartition(".")
    expected = hmac.new(session_key(settings), b"oauth-state:" + payload.encode(), hashlib.sha256)
    if not payload or not hmac.compare_digest(expected.hexdigest(), mac):
        return None
    try:
        data: Any = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    if not isinstance(data, dict) or int(data.get("exp", 0)) < time.time():
        return None
    if not nonce or not hmac.compare_digest(str(data.get("n", "")), nonce):
        return None
    return safe_next(str(data.get("next", "")))


async def start(request: Request) -> Response:
    settings = settings_of(request)
    if not configured(settings):
        return _refused(request, "GitHub sign-in is not configured.", 404)
    nonce = secrets.token_urlsafe(24)
    next_path = safe_next(request.query_params.get("next"))
    query = urlencode(
        {
            "client_id": settings.github_client_id,
            "redirect_uri": f"{settings.base_url}/login/github/callback",
            "state": _state(settings, nonce, next_path),
            "allow_signup": "false",
        }
    )
    response = RedirectResponse(f"{settings.web_url}/login/oauth/authorize?{query}", 303)
    response.set_cookie(
        NONCE_COOKIE,
        nonce,
        max_age=STATE_SECONDS,
        httponly=True,
        samesite="lax",  # sent on GitHub's top-level redirect back to us
        secure=settings.base_url.startswith("https://"),
        path="/login/github",
    )
    return response


async def callback(request: Request) -> Response:
    settings = settings_of(request)
    if not configured(settings):
        return _refused(request, "GitHub sign-in is not configured.", 404)
    code = request.query_params.get("code", "")
    state = request.query_params.get("state", "")
    next_path = _read_state(settings, state, request.cookies.get(NONCE_COOKIE))
    if next_path is None or not code or len(code) > 200:
        return _refused(request, "That sign-in link is stale or was not started here.", 400)
    try:
        login = await _github_user(settings, code)
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("web_github_login_failed", error=type(exc).__name__)
        return _refused(request, "GitHub did not confirm the sign-in; try again.", 502)
    if login is None:
        return _refused(request, "GitHub did not confirm the sign-in; try again.", 401)
    if not await _may_write(request, login):
        log.info("web_github_login_refused", login=login)
        return _refused(
            request,
            f"@{login} has no write access to a repository this GitHub App is installed on.",
            403,
        )
    response = RedirectResponse(next_path, status_code=303)
    set_session(response, settings, new_session(login, "github"))
    response.delete_cookie(NONCE_COOKIE, path="/login/github")
    log.info("web_login", kind="github", login=login)
    return response


async def _github_user(settings: Settings, code: str) -> str | None:
    """Exchange the code for a user token, and ask GitHub whose it is."""
    secret = settings.github_client_secret
    assert secret is not None  # `configured` checked it
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"{settings.web_url}/login/oauth/access_token",
            data={
                "client_id": settings.github_client_id,
                "client_secret": secret.get_secret_value(),
                "code": code,
                "redirect_uri": f"{settings.base_url}/login/github/callback",
            },
            headers={"Accept": "application/json"},
        )
        token = answer.json().get("access_token") if answer.status_code == 200 else None
        if not isinstance(token, str) or not token:
            return None
        user = await http.get(
            f"{settings.api_url}/user",
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
        )
    login = user.json().get("login") if user.status_code == 200 else None
    return login if isinstance(login, str) and login else None


async def _may_write(request: Request, login: str) -> bool:
    """Write access to any repository the App is installed on, asked as the App."""
    deps = deps_of(request)
    # One cache per app (not per process): an app built for a test starts with none.
    cache: PermissionCache = request.app.state.__dict__.setdefault(
        "github_permissions", PermissionCache(ttl=PERMISSIONS_TTL)
    )
    try:
        github = deps.github_app()
    except ConfigError:
        log.warning("web_github_login_without_app")
        return False
    async with deps.sessions() as session:
        repos = (
            await session.execute(
                select(Repository.full_name, Repository.installation_id)
                .where(Repository.active.is_(True), Repository.installation_id.is_not(None))
                .order_by(Repository.full_name)
                .limit(MAX_REPOS_CHECKED)
            )
        ).all()
    for full_name, installation_id in repos:
        if installation_id is None:  # excluded by the query; for the type checker
            continue
        source = GitHubPermissions(github, full_name, installation_id, cache=cache)
        try:
            if await source.permission(login) in WRITE_PERMISSIONS:
                return True
        except AdapterError as exc:
            log.warning("web_permission_unknown", repo=full_name, error=str(exc))
    return False


def _refused(request: Request, message: str, status: int) -> Response:
    return page(request, "error.html", {"title": "Sign-in refused", "message": message}, status)
