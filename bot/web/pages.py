"""What every page shares: the Jinja2 environment, who is asking, and the answers a page
gives when it may not be seen (login) or may not be written (403), or was forged (CSRF).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

import structlog
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bot.api.request import deps_of
from bot.settings import Settings
from bot.web.session import Session, csrf_token, csrf_valid, current, remember_csrf

_env = Environment(
    loader=PackageLoader("bot.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


class Refused(Exception):
    """A page request answered with `response` instead (login, 403, 404, bad CSRF)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def settings_of(request: Request) -> Settings:
    return deps_of(request).settings


def reads_public(settings: Settings) -> bool:
    if settings.web_reads is not None:
        return settings.web_reads == "public"
    return settings.admin_token is None


def reader(request: Request) -> Session | None:
    """Who is reading; sends signed-out people to the login page when reads need one."""
    settings = settings_of(request)
    session = current(request, settings)
    if session is None and not reads_public(settings):
        raise Refused(login_redirect(request))
    return session


def writer(request: Request) -> Session:
    """Who is writing; signed-out people go to the login page."""
    session = current(request, settings_of(request))
    if session is None:
        raise Refused(login_redirect(request))
    return session


def login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def is_admin(request: Request) -> bool:
    """Whether the reader signed in with the admin token (sends others to the login page
    when reads need one)."""
    session = reader(request)
    return session is not None and session.kind == "admin"


async def admin_action(
    request: Request, actions: Sequence[str], what: str
) -> tuple[Session, str, dict[str, str]]:
    """An admin's form POST: the session, the `action` (one of `actions`) and the form.
    Signed-out people go to the login page, a bad CSRF token is a 403, someone else a 403
    saying who may, an unknown action a 400 naming the ones there are."""
    user = writer(request)
    form = await form_of(request)
    if user.kind != "admin":
        message = f"Only the admin may {what}: sign in with OPENASE_ADMIN_TOKEN."
        raise Refused(page(request, "error.html", {"title": "Forbidden", "message": message}, 403))
    action = form.get("action", "")
    if action not in actions:
        listed = ", ".join(actions[:-1]) + f" or {actions[-1]}"
        raise bad_request(request, f"action: {listed}.")
    return user, action, form


async def form_of(request: Request) -> dict[str, str]:
    """The POSTed form, after its CSRF token and origin are checked (403 otherwise)."""
    form = await request.form()
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    if not csrf_valid(request, settings_of(request), values.get("csrf")):
        raise Refused(
            page(request, "error.html", {"title": "Forbidden", "message": CSRF_MESSAGE}, 403)
        )
    return values


CSRF_MESSAGE = (
    "The form's security token is missing or stale (or it came from another site). "
    "Reload the page and try again."
)


def page(
    request: Request,
    template: str,
    context: dict[str, Any],
    status: int = 200,
    *,
    form_targets: Sequence[str] = (),
) -> HTMLResponse:
    """Render `template`; `form_targets` are the other origins its forms may post to (the
    setup page's manifest goes to GitHub)."""
    settings = settings_of(request)
    session = current(request, settings)
    body = _env.get_template(template).render(
        request=request,
        user=session,
        csrf=csrf_token(request, settings),
        can_sign_in=True,
        **context,
    )
    response = HTMLResponse(body, status_code=status)
    remember_csrf(request, response, settings)
    # Pages show tickets and harnesses: no framing, no sniffing, no referrer leaks.
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    form_action = " ".join(("'self'", *form_targets))
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        f"frame-ancestors 'none'; form-action {form_action}; base-uri 'none'"
    )
    return response


def not_found(request: Request, what: str) -> Refused:
    return Refused(page(request, "error.html", {"title": "Not found", "message": what}, 404))


log = structlog.get_logger(__name__)
Handler = Callable[[Request], Awaitable[Response]]


def html_endpoint(handler: Handler) -> Handler:
    """Answer `Refused` with its response, and a database outage with a 503 page."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Refused as refused:
            return refused.response
        except (SQLAlchemyError, OSError, TimeoutError) as error:
            log.warning(
                "web_database_unavailable", path=request.url.path, error=type(error).__name__
            )
            message = "The database is unavailable; try again in a moment."
            return page(request, "error.html", {"title": "Unavailable", "message": message}, 503)

    return endpoint


def bad_request(request: Request, message: str) -> Refused:
    """A 400 page; `message` starts with the parameter at fault."""
    return Refused(page(request, "error.html", {"title": "Bad request", "message": message}, 400))
