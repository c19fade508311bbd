"""The setup page: registering the GitHub App in one click (GitHub's manifest flow, as
Probot does it).

1. `GET /setup` shows the deployment's App (if any) and a form: a personal account or an
   organization, the App's name, its webhook URL.
2. `POST /setup` (CSRF-checked) keeps a single-use `state` in Redis for ten minutes, bound
   to this browser by a cookie, and answers a page whose form posts the manifest to
   GitHub's web host (`/settings/apps/new` or `/organizations/ORG/settings/apps/new`).
3. GitHub creates the App and sends the browser to `GET /setup/github/callback` with a
   `code`; the state is taken (once), the code exchanged for the App's credentials
   (`POST /app-manifests/{code}/conversions`), and they are kept in the data dir
   (bot/config/github_app.py). This process acts as the App at once; a worker in another
   process picks the file up within seconds (bot/processes/worker.py).

Who may: with OPENASE_ADMIN_TOKEN set, only a signed-in admin; without one, only requests
from this machine (loopback, no proxy headers, a loopback Host so that DNS rebinding does
not count) and only while no App is configured.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import structlog
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from adapters.errors import AdapterError, RequestRejected
from bot.api.request import admin_token, deps_of
from bot.config.github_app import adopt_app, app_from_environment, save_app, stored_app
from bot.config.manifest import load_app_yml, registration_manifest
from bot.errors import ConfigError
from bot.intake.recovery import recovery_summary
from bot.intake.relay_status import RelayStatus, read_relay_status
from bot.registry import RegisteredApp, convert_manifest
from bot.settings import Settings
from bot.web.pages import Refused, form_of, html_endpoint, page, settings_of, writer

log = structlog.get_logger(__name__)

STATE_SECONDS = 600
STATE_KEY = "openase:setup:state:"
STATE_COOKIE = "openase_setup"
CALLBACK_PATH = "/setup/github/callback"
# GitHub's own limits: an App's name has at most 34 characters; an account login 39.
MAX_NAME = 34
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_STATE = re.compile(r"^[A-Za-z0-9_-]{20,100}$")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")


@dataclass(frozen=True)
class Registration:
    """What the form asks for, checked."""

    owner: str  # "personal" | "organization"
    organization: str | None
    name: str
    webhook_url: str | None


# --- who may use the page --------------------------------------------------------------------


def _may_set_up(request: Request, *, registering: bool) -> None:
    """Refused unless this request may see (or, `registering`, register) the App."""
    settings = settings_of(request)
    if admin_token(settings) is not None:
        session = writer(request)
        if session.kind != "admin":
            raise _refused(
                request,
                "Only the admin may register the GitHub App: sign in with OPENASE_ADMIN_TOKEN.",
                403,
            )
        return
    if not _from_this_machine(request):
        raise _refused(
            request,
            "Without OPENASE_ADMIN_TOKEN the setup page answers only on this machine "
            f"(open {settings.base_url}/setup here, or set OPENASE_ADMIN_TOKEN and sign in).",
            403,
        )
    if registering and _configured(settings):
        raise _refused(
            request,
            "A GitHub App is configured already. Set OPENASE_ADMIN_TOKEN and sign in as the "
            "admin to register another one.",
            403,
        )


def _from_this_machine(request: Request) -> bool:
    client = request.client.host if request.client else ""
    try:
        if not ipaddress.ip_address(client).is_loopback:
            return False
    except ValueError:
        return False
    # Behind a proxy on this machine every request looks local; and a page of another site
    # whose name was made to resolve to 127.0.0.1 (DNS rebinding) sends its own Host.
    if any(header in request.headers for header in _PROXY_HEADERS):
        return False
    host = (urlsplit(f"//{request.headers.get('host', '')}").hostname or "").lower()
    own = (urlsplit(settings_of(request).base_url).hostname or "").lower()
    return host in _LOOPBACK_HOSTS or host == own


def _configured(settings: Settings) -> bool:
    return settings.github_app_id is not None or settings.github_private_key_path is not None


# --- the pages -------------------------------------------------------------------------------


async def _setup(request: Request) -> Response:
    _may_set_up(request, registering=False)
    return await _setup_page(request, _defaults(request), None, 200)


async def _register(request: Request) -> Response:
    form = await form_of(request)
    _may_set_up(request, registering=True)
    settings = settings_of(request)
    if app_from_environment(settings):
        raise _refused(request, _ENVIRONMENT_WINS, 409)
    try:
        registration = _registration(form)
    except ValueError as problem:
        return await _setup_page(request, form, str(problem), 400)
    manifest = registration_manifest(
        load_app_yml(),
        base_url=_own_url(request),
        redirect_url=_own_url(request) + CALLBACK_PATH,
        webhook_url=registration.webhook_url,
        name=registration.name,
    )
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(24)
    record = json.dumps({"nonce": nonce, "owner": registration.organization})
    try:
        await deps_of(request).redis.set(STATE_KEY + state, record, ex=STATE_SECONDS)
    except (RedisError, OSError) as exc:
        log.warning("setup_state_unavailable", error=type(exc).__name__)
        raise _refused(request, "Redis is unavailable; try again in a moment.", 503) from None
    if registration.organization is None:
        target = f"{settings.web_url}/settings/apps/new"
    else:
        target = f"{settings.web_url}/organizations/{quote(registration.organization)}"
        target += "/settings/apps/new"
    context = {
        "title": "Register the GitHub App",
        "action": f"{target}?{urlencode({'state': state})}",
        "manifest": json.dumps(manifest),
        "registration": registration,
        "github": settings.web_url,
    }
    response = page(request, "setup_continue.html", context, form_targets=[_origin(target)])
    response.set_cookie(
        STATE_COOKIE,
        nonce,
        max_age=STATE_SECONDS,
        httponly=True,
        samesite="lax",  # sent on GitHub's top-level redirect back to us
        secure=_own_url(request).startswith("https://"),
        path="/setup",
    )
    log.info("setup_started", owner=registration.organization or "personal")
    return response


async def _callback(request: Request) -> Response:
    _may_set_up(request, registering=True)
    deps = deps_of(request)
    settings = deps.settings
    if app_from_environment(settings):
        raise _refused(request, _ENVIRONMENT_WINS, 409)
    code = request.query_params.get("code", "")
    state = request.query_params.get("state", "")
    if not await _take_state(request, state):
        raise _refused(
            request,
            "That registration link is stale, was used already, or was not started here. "
            "Start again from the setup page.",
            400,
        )
    try:
        app = await convert_manifest(settings.api_url, code)
    except RequestRejected as exc:
        log.info("setup_code_refused", status=exc.status)
        raise _refused(
            request,
            "GitHub did not accept that code: it was used already, is over an hour old, or "
            "is not GitHub's. Nothing was stored; start again from the setup page.",
            400,
        ) from None
    except AdapterError as exc:
        log.warning("setup_conversion_failed", error=str(exc))
        await _give_state_back(request, state)
        raise _refused(
            request,
            "GitHub did not answer. Nothing was stored; reload this page to try again (the "
            "code stays valid for an hour).",
            502,
        ) from None
    try:
        previous = stored_app(settings)
    except ConfigError:
        previous = None  # a damaged record is replaced by the new one
    path = save_app(settings, app)
    deps.settings = adopt_app(settings, app, previous=previous)
    # The home page's checklist said "no App": ask again on the next visit.
    request.app.state.home_checklist = None
    log.info("github_app_registered", app_id=app.id, slug=app.slug, path=str(path))
    response = page(
        request,
        "setup_done.html",
        {
            "title": "GitHub App registered",
            "app": app,
            "install_url": f"{app.html_url}/installations/new",
            "path": path,
            "secret_from_environment": _secret_from_environment(deps.settings, app),
        },
    )
    response.delete_cookie(STATE_COOKIE, path="/setup")
    return response


setup = html_endpoint(_setup)
register = html_endpoint(_register)
callback = html_endpoint(_callback)


async def _setup_page(
    request: Request, form: dict[str, str], error: str | None, status: int
) -> Response:
    settings = settings_of(request)
    relay = str(settings.webhook_proxy_url) if settings.webhook_proxy_url else None
    try:
        stored = stored_app(settings)
        damaged = None
    except ConfigError as problem:
        stored, damaged = None, str(problem)
    from_environment = app_from_environment(settings)
    context: dict[str, Any] = {
        "title": "Set up",
        "form": form,
        "error": error,
        "stored": stored,
        "damaged": damaged,
        "from_environment": from_environment,
        "environment_app_id": settings.github_app_id if from_environment else None,
        "may_register": not from_environment
        and (admin_token(settings) is not None or not _configured(settings)),
        "own_url": _own_url(request),
        "unreachable": relay is None and _unreachable(_own_url(request)),
        "relay": relay,
        "relay_status": await _relay_status(request) if relay else None,
        "recovery": await recovery_summary(deps_of(request)),
        "github": settings.web_url,
        "max_name": MAX_NAME,
    }
    return page(request, "setup.html", context, status)


def _defaults(request: Request) -> dict[str, str]:
    """The form as first shown: the webhook at the relay's channel when one is set (GitHub
    posts there and the relay brings it here), else at this deployment when GitHub can
    reach it, else none yet."""
    settings = settings_of(request)
    own = _own_url(request)
    if settings.webhook_proxy_url is not None:
        webhook_url = str(settings.webhook_proxy_url)
    else:
        webhook_url = "" if _unreachable(own) else own + "/webhooks/github"
    return {
        "owner": "personal",
        "organization": "",
        "name": str(load_app_yml().get("name", "OpenASE"))[:MAX_NAME],
        "webhook_url": webhook_url,
    }


async def _relay_status(request: Request) -> RelayStatus | str:
    """The relay's status, or why it cannot be told."""
    try:
        status = await read_relay_status(deps_of(request).redis)
    except (RedisError, OSError) as exc:
        log.warning("relay_status_unavailable", error=type(exc).__name__)
        return "unknown: Redis is unavailable"
    return status if status is not None else "not running (no process relays the channel now)"


def _registration(form: dict[str, str]) -> Registration:
    """The form's answers, or ValueError naming the field at fault."""
    owner = form.get("owner", "")
    if owner not in ("personal", "organization"):
        raise ValueError("owner: choose your personal account or an organization")
    organization = form.get("organization", "").strip() or None
    if owner == "organization":
        if organization is None or not _LOGIN.match(organization):
            raise ValueError(
                "organization: the organization's login (letters, digits and dashes, "
                "at most 39), as in github.com/LOGIN"
            )
    else:
        organization = None
    name = " ".join(form.get("name", "").split())
    if not name or len(name) > MAX_NAME:
        raise ValueError(f"name: the App's name, 1 to {MAX_NAME} characters (GitHub's limit)")
    webhook_url = form.get("webhook_url", "").strip() or None
    if webhook_url is not None:
        parts = urlsplit(webhook_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or len(webhook_url) > 2000:
            raise ValueError("webhook_url: an http(s) URL GitHub can reach, or empty for none")
    return Registration(owner, organization, name, webhook_url)


async def _take_state(request: Request, state: str) -> bool:
    """Whether `state` is one this browser started and it was not used: taken at once, so a
    second callback with it finds nothing."""
    if not _STATE.match(state):
        return False
    redis = deps_of(request).redis
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.get(STATE_KEY + state)
            pipe.delete(STATE_KEY + state)
            stored, _ = await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("setup_state_unavailable", error=type(exc).__name__)
        raise _refused(
            request, "Redis is unavailable; reload this page in a moment.", 503
        ) from None
    if stored is None:
        return False
    request.state.setup_record = stored
    try:
        nonce = json.loads(stored)["nonce"]
    except (ValueError, KeyError, TypeError):
        return False
    cookie = request.cookies.get(STATE_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(str(nonce).encode(), cookie.encode())


async def _give_state_back(request: Request, state: str) -> None:
    """After GitHub failed to answer: the same link may be tried again."""
    record = getattr(request.state, "setup_record", None)
    if record is None:
        return
    try:
        await deps_of(request).redis.set(STATE_KEY + state, record, ex=STATE_SECONDS)
    except (RedisError, OSError) as exc:
        log.warning("setup_state_unavailable", error=type(exc).__name__)


def _own_url(request: Request) -> str:
    """Where GitHub sends the browser back: the public URL when set, else the address this
    browser used (so that the state cookie, set for that host, comes back with it)."""
    settings = settings_of(request)
    if settings.public_url is not None:
        return settings.base_url
    return f"{request.url.scheme}://{request.url.netloc}"


def _unreachable(url: str) -> bool:
    """Whether GitHub surely cannot deliver webhooks to `url` (this machine, a private net)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _secret_from_environment(settings: Settings, app: RegisteredApp) -> bool:
    secret = settings.github_webhook_secret
    return (
        app.webhook_secret is not None
        and secret is not None
        and secret.get_secret_value() != app.webhook_secret
    )


_ENVIRONMENT_WINS = (
    "The GitHub App is configured in the environment (OPENASE_GITHUB_APP_ID, "
    "OPENASE_GITHUB_PRIVATE_KEY[_PATH]), which wins over one registered here. Unset them to "
    "register the App from this page."
)


def _refused(request: Request, message: str, status: int) -> Refused:
    title = "Setup refused" if status < 500 else "Unavailable"
    return Refused(page(request, "error.html", {"title": title, "message": message}, status))
