"""A GitHub App's credentials: the App JWT it signs, and the installation tokens it gets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from adapters.base import AccessToken, PayloadError
from adapters.errors import AdapterError

# GitHub refuses a JWT issued "in the future" (clock drift) or living over 10 minutes.
JWT_BACKDATE = timedelta(seconds=60)
JWT_LIFETIME = timedelta(minutes=9)


def utcnow() -> datetime:
    return datetime.now(UTC)


def app_jwt(app_id: int, private_key: RSAPrivateKey | str, *, now: datetime | None = None) -> str:
    """A JWT authenticating as the App itself (RS256, backdated for clock drift)."""
    now = now or utcnow()
    claims = {
        "iat": int((now - JWT_BACKDATE).timestamp()),
        "exp": int((now + JWT_LIFETIME).timestamp()),
        "iss": str(app_id),
    }
    return jwt.encode(claims, private_key, algorithm="RS256")


def load_private_key(pem: str) -> RSAPrivateKey:
    """The App's private key from PEM text; AdapterError says what is wrong with it."""
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise AdapterError("the GitHub App private key is not a PEM private key") from exc
    if not isinstance(key, RSAPrivateKey):
        raise AdapterError("the GitHub App private key is not an RSA key (GitHub signs RS256)")
    return key


def parse_access_token(data: Any, installation_id: int) -> AccessToken:
    """The token in an `access_tokens` answer."""
    # No assumption about the token's length or alphabet: GitHub changes both.
    value = data.get("token") if isinstance(data, dict) else None
    expires = data.get("expires_at") if isinstance(data, dict) else None
    if not isinstance(value, str) or not value or not isinstance(expires, str):
        raise PayloadError(
            f"access_tokens answer for installation {installation_id} lacks token or expires_at"
        )
    try:
        expires_at = datetime.fromisoformat(expires)
    except ValueError:
        raise PayloadError(f"access_tokens answer: bad expires_at {expires[:40]!r}") from None
    return AccessToken(value, expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC))
