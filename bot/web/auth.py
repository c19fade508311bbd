"""Signing in to the web page: the admin token exchanged for a session cookie.

`GET /login` shows the form, `POST /login` checks the token in constant time and sets the
session (303 back to `next`, which must be a path on this site), `POST /logout` ends it.
Both POSTs need the form's CSRF token. A wrong token is a 401 with the form again, and the
failure is logged without the token.
"""

from __future__ import annotations

import hmac

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bot.api.request import admin_token
from bot.web.pages import Refused, form_of, page, settings_of
from bot.web.session import clear_session, new_session, set_session

log = structlog.get_logger(__name__)


def safe_next(value: str | None) -> str:
    """Only a path on this site: never `//evil.example` or `https://…` (open redirects)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/harnesses"
    return value


async def login_form(request: Request) -> Response:
    return _form(request, safe_next(request.query_params.get("next")), None, 200)


def _form(request: Request, next_path: str, error: str | None, status: int) -> Response:
    settings = settings_of(request)
    context = {
        "title": "Sign in",
        "next": next_path,
        "error": error,
        "token_configured": admin_token(settings) is not None,
        "github_sign_in": bool(settings.github_client_id and settings.github_client_secret),
    }
    return page(request, "login.html", context, status)


async def login(request: Request) -> Response:
    try:
        form = await form_of(request)
    except Refused as refused:
        return refused.response
    settings = settings_of(request)
    next_path = safe_next(form.get("next"))
    expected = admin_token(settings)
    given = form.get("token", "")
    if expected is None:
        return _form(request, next_path, "Sign-in with a token is not configured.", 400)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        log.info("web_login_refused", client=request.client.host if request.client else None)
        return _form(request, next_path, "That token is not the admin token.", 401)
    response = RedirectResponse(next_path, status_code=303)
    set_session(response, settings, new_session("admin", "admin"))
    log.info("web_login", kind="admin")
    return response


async def logout(request: Request) -> Response:
    try:
        await form_of(request)
    except Refused as refused:
        return refused.response
    response = RedirectResponse("/", status_code=303)
    clear_session(response)
    return response
