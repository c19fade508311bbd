"""Signing in to the web page: the admin token for a session cookie, CSRF on every form,
no open redirects, forged or expired cookies ignored, reads public or behind the login."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from bot.deps import Deps
from bot.tables.mirror import Installation, Repository
from bot.web.session import SESSION_COOKIE, Session, decode, encode
from tests.conftest import AppWith
from tests.fakes.github_api import FakeGitHubAPI
from tests.support.signing_in import TOKEN, csrf_of, sign_in


async def test_the_admin_token_signs_in_and_out(web: httpx.AsyncClient, deps: Deps) -> None:
    page = await web.get("/login?next=/harnesses")
    assert page.status_code == 200
    assert 'label for="token"' in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

    signed = await sign_in(web, next_path="/harnesses/coder")
    assert signed.status_code == 303
    assert signed.headers["location"] == "/harnesses/coder"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert TOKEN not in cookie
    session = decode(deps.settings, web.cookies[SESSION_COOKIE])
    assert session is not None
    assert session.kind == "admin"

    home = await web.get("/login")
    assert "Signed in as admin" in home.text
    out = await web.post("/logout", data={"csrf": csrf_of(home.text)})
    assert out.status_code == 303
    assert SESSION_COOKIE not in web.cookies


async def test_a_wrong_token_is_refused_and_not_echoed(web: httpx.AsyncClient) -> None:
    refused = await sign_in(web, token="guess<script>")
    assert refused.status_code == 401
    assert "not the admin token" in refused.text
    assert "guess<script>" not in refused.text
    assert SESSION_COOKIE not in web.cookies


async def test_forms_need_their_csrf_token_and_our_origin(web: httpx.AsyncClient) -> None:
    await web.get("/login")
    missing = await web.post("/login", data={"token": TOKEN})
    assert missing.status_code == 403
    forged = await web.post("/login", data={"csrf": "x" * 32, "token": TOKEN})
    assert forged.status_code == 403
    form = await web.get("/login")
    elsewhere = await web.post(
        "/login",
        data={"csrf": csrf_of(form.text), "token": TOKEN},
        headers={"Origin": "https://evil.example"},
    )
    assert elsewhere.status_code == 403
    assert SESSION_COOKIE not in web.cookies
    signed = await sign_in(web)
    assert signed.status_code == 303
    logout = await web.post("/logout", data={})
    assert logout.status_code == 403  # signing out needs the token too
    assert SESSION_COOKIE in web.cookies


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"]
)
async def test_next_never_leaves_the_site(web: httpx.AsyncClient, target: str) -> None:
    signed = await sign_in(web, next_path=target)
    assert signed.status_code == 303
    assert signed.headers["location"] == "/harnesses"


async def test_forged_tampered_and_expired_cookies_are_nobody(deps: Deps) -> None:
    settings = deps.settings.model_copy(update={"admin_token": SecretStr(TOKEN)})
    good = Session("admin", "admin", "c" * 32, int(time.time()) + 60)
    value = encode(settings, good)
    assert decode(settings, value) == good
    payload, _, signature = value.rpartition(".")
    assert decode(settings, payload + "." + signature[:-2] + "AA") is None
    other = settings.model_copy(update={"admin_token": SecretStr("another")})
    assert decode(other, value) is None  # rotating the token ends every session
    expired = Session("admin", "admin", "c" * 32, int(time.time()) - 1)
    assert decode(settings, encode(settings, expired)) is None
    for junk in ("", "x", "a.b", "%%%.%%%", "." * 5000):
        assert decode(settings, junk) is None


async def test_the_stylesheet_is_served(web: httpx.AsyncClient) -> None:
    css = await web.get("/static/app.css")
    assert css.status_code == 200
    assert ".board" in css.text


# --- GitHub sign-in ----------------------------------------------------------------------------


@pytest.fixture
async def oauth_web(
    app_with: AppWith, deps: Deps, github_api: FakeGitHubAPI
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with GitHub sign-in configured, and a repository of an installation."""
    github_api.add_installation(77, "octo")
    github_api.add_repo("octo/hello", 501, 77)
    github_api.permissions["alice"] = "write"
    github_api.permissions["mallory"] = "read"
    async with deps.sessions() as session, session.begin():
        session.add(Installation(id=77, account_login="octo", account_type="Organization"))
        session.add(Repository(id=501, installation_id=77, full_name="octo/hello"))
    async with app_with(
        github_client_id=github_api.oauth_client_id,
        github_client_secret=SecretStr(github_api.oauth_client_secret),
        public_url="http://openase.test",
    ) as http:
        yield http


async def _authorize(web: httpx.AsyncClient, next_path: str = "/tickets") -> tuple[str, str]:
    """Start the sign-in; the authorize URL's state and redirect_uri."""
    started = await web.get("/login/github", params={"next": next_path})
    assert started.status_code == 303
    target = httpx.URL(started.headers["location"])
    assert target.host == "ghe.example.test"  # Enterprise Server: its own web host
    assert target.path == "/login/oauth/authorize"
    assert target.params["client_id"] == "Iv1.testclient"
    return target.params["state"], target.params["redirect_uri"]


async def test_a_writer_signs_in_with_github(
    oauth_web: httpx.AsyncClient, github_api: FakeGitHubAPI, deps: Deps
) -> None:
    login_page = await oauth_web.get("/login")
    assert "Sign in with GitHub" in login_page.text
    state, redirect_uri = await _authorize(oauth_web, "/tickets")
    assert redirect_uri == "http://openase.test/login/github/callback"
    back = await oauth_web.get(
        "/login/github/callback", params={"code": github_api.oauth_code("alice"), "state": state}
    )
    assert back.status_code == 303
    assert back.headers["location"] == "/tickets"
    session = decode(deps.settings, oauth_web.cookies[SESSION_COOKIE])
    assert session is not None
    assert (session.user, session.kind) == ("alice", "github")
    assert not any(token in back.headers.get("set-cookie", "") for token in github_api.user_tokens)


async def test_github_sign_in_refuses_readers_and_forged_or_replayed_states(
    oauth_web: httpx.AsyncClient, github_api: FakeGitHubAPI
) -> None:
    state, _ = await _authorize(oauth_web)
    reader = await oauth_web.get(
        "/login/github/callback", params={"code": github_api.oauth_code("mallory"), "state": state}
    )
    assert reader.status_code == 403
    assert "no write access" in reader.text
    assert SESSION_COOKIE not in oauth_web.cookies

    state, _ = await _authorize(oauth_web)
    forged = await oauth_web.get(
        "/login/github/callback",
        params={"code": github_api.oauth_code("alice"), "state": state[:-4] + "0000"},
    )
    assert forged.status_code == 400
    # Another browser (without this one's nonce cookie) cannot use the state.
    oauth_web.cookies.delete("openase_oauth")
    stolen = await oauth_web.get(
        "/login/github/callback", params={"code": github_api.oauth_code("alice"), "state": state}
    )
    assert stolen.status_code == 400
    state, _ = await _authorize(oauth_web)
    bad_code = await oauth_web.get(
        "/login/github/callback", params={"code": "nope", "state": state}
    )
    assert bad_code.status_code == 401
    assert SESSION_COOKIE not in oauth_web.cookies


async def test_without_a_client_id_github_sign_in_is_absent(web: httpx.AsyncClient) -> None:
    assert "Sign in with GitHub" not in (await web.get("/login")).text
    assert (await web.get("/login/github")).status_code == 404
