"""Jira webhook authenticity.

Jira Cloud signs a webhook that has a secret with `X-Hub-Signature: sha256=<hex>`, the
HMAC-SHA256 of the raw body (the WebSub convention). Setups that cannot sign (Jira
automation rules, older Server versions) put a secret token in the webhook's URL instead;
both are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "x-hub-signature"
DELIVERY_HEADER = "x-atlassian-webhook-identifier"
_PREFIX = "sha256="


def sign(secret: bytes, body: bytes) -> str:
    """The header value Jira sends for `body`."""
    return _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_valid(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is Jira's signature of `body` with `secret`."""
    if not header or not header.strip().lower().startswith(_PREFIX):
        return False
    expected = sign(secret, body)
    given = _PREFIX + header.strip()[len(_PREFIX) :].lower()
    return hmac.compare_digest(expected.encode(), given.encode())


def token_valid(secret: bytes, token: str | None) -> bool:
    """True when the URL's `token` query parameter is the secret."""
    if not token:
        return False
    return hmac.compare_digest(secret, token.encode())
