"""GitHub webhook signature verification (`X-Hub-Signature-256`, HMAC-SHA256 of the raw body)."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "x-hub-signature-256"
_PREFIX = "sha256="


def sign(secret: bytes, body: bytes) -> str:
    """The header value GitHub would send for `body`."""
    return _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_valid(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is GitHub's signature of `body`; compared in constant time."""
    if not header or not header.startswith(_PREFIX):
        return False
    expected = sign(secret, body)
    return hmac.compare_digest(expected.encode(), header.strip().encode())
