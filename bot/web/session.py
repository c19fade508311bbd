"""Signed session cookies and CSRF tokens for the web page.

A session is `{"user", "kind", "csrf", "exp"}` as JSON, base64url-encoded and signed with
HMAC-SHA256 under the session key; it is checked in constant time and refused once
expired. The key is `OPENASE_SESSION_SECRET`, else derived from `OPENASE_ADMIN_TOKEN`, else
random per process. Every form carries the session's CSRF token (or, signed out, the
`openase_csrf` cookie's: double submit), and a POST whose `Origin` names another site is
refused as well.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bot.settings import Settings

SESSION_COOKIE = "openase_session"
CSRF_COOKIE = "openase_csrf"
SESSION_SECONDS = 12 * 3600
_PROCESS_KEY = secrets.token_bytes(32)


@dataclass(frozen=True)
class Session:
    user: str  # "admin", or a GitHub login
    kind: str  # "admin" | "github"
    csrf: str
    expires_at: int

    @property
    def label(self) -> str:
        return "admin" if self.kind == "admin" else f"@{self.user}"


def session_key(settings: Settings) -> bytes:
    if settings.session_secret is not None:
        return hashlib.sha256(settings.session_secret.get_secret_value().encode()).digest()
    if settings.admin_token is not None:
        token = settings.admin_token.get_secret_value().encode()
        return hmac.new(token, b"openase web session", hashlib.sha256).digest()
    return _PROCESS_KEY


def _b64(data: bytes) -> str:
    # Unpadded: a cookie value with `=` would be sent quoted.
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, body: bytes) -> str:
    return _b64(hmac.new(key, body, hashlib.sha256).digest())


def encode(settings: Settings, session: Session) -> str:
    body = json.dumps(
        {
            "user": session.user,
            "kind": session.kind,
            "csrf": session.csrf,
            "exp": session.expires_at,
        },
        separators=(",", ":"),
    ).encode()
    return f"{_b64(body)}.{_sign(session_key(settings), body)}"


def decode(settings: Settings, value: str | None) -> Session | None:
    """The session in a cookie value, or None when absent, forged, malformed or expired."""
    if not value or "." not in value or len(value) > 4096:
        return None
    payload, _, signature = value.rpartition(".")
    try:
        body = _unb64(payload)
    except ValueError:
        return None
    if not hmac.compare_digest(_sign(session_key(settings), body), signature):
        return None
    try:
        data: Any = json.loads(body)
        session = Session(str(data["user"]), str(data["kind"]), str(data["csrf"]), int(data["exp"]))
    except (ValueError, KeyError, TypeError):
        return None
    return session if session.expires_at > time.time() else None


def new_session(user: str, kind: str) -> Session:
    return Session(user, kind, secrets.token_urlsafe(24), int(time.time()) + SESSION_SECONDS)


def _secure(settings: Settings) -> bool:
    return settings.base_url.startswith("https://")


def set_session(response: Response, settings: Settings, session: Session) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        encode(settings, session),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=_secure(settings),
        path="/",
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def current(request: Request, settings: Settings) -> Session | None:
    return decode(settings, request.cookies.get(SESSION_COOKIE))


def csrf_token(request: Request, settings: Settings) -> str:
    """The token a form must carry: the session's, or the signed-out double-submit cookie's
    (made here when missing; `remember_csrf` puts it on the response)."""
    session = current(request, settings)
    if session is not None:
        return session.csrf
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and 16 <= len(existing) <= 128:
        return existing
    token: str = request.state.__dict__.setdefault("new_csrf", secrets.token_urlsafe(24))
    return token


def remember_csrf(request: Request, response: Response, settings: Settings) -> None:
    token = request.state.__dict__.get("new_csrf")
    if token:
        response.set_cookie(
            CSRF_COOKIE, token, httponly=True, samesite="lax", secure=_secure(settings), path="/"
        )


def csrf_valid(request: Request, settings: Settings, submitted: object) -> bool:
    """Whether a POST's form token matches, and it does not come from another site."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        own = f"{request.url.scheme}://{request.url.netloc}"
        if origin.rstrip("/") not in (own, settings.base_url.rstrip("/")):
            return False
    if not isinstance(submitted, str) or not submitted:
        return False
    session = current(request, settings)
    expected = session.csrf if session is not None else request.cookies.get(CSRF_COOKIE)
    return bool(expected) and hmac.compare_digest(submitted.encode(), str(expected).encode())
