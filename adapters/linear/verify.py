"""Linear webhook verification: `Linear-Signature` (hex HMAC-SHA256 of the raw body) and
the payload's `webhookTimestamp`, which bounds how late a captured delivery can be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "linear-signature"
DELIVERY_HEADER = "linear-delivery"
EVENT_HEADER = "linear-event"
TIMESTAMP_FIELD = "webhookTimestamp"
# Linear's own SDK accepts deliveries up to a minute old.
MAX_AGE_MS = 60_000


def sign(secret: bytes, body: bytes) -> str:
    """The header value Linear would send for `body`."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_valid(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is Linear's signature of `body`; compared in constant time."""
    if not header:
        return False
    expected = sign(secret, body)
    return hmac.compare_digest(expected.encode(), header.strip().lower().encode())


def timestamp_fresh(value: object, now_ms: int | None = None) -> bool:
    """True when `value` (the payload's `webhookTimestamp`, ms since epoch) is within a
    minute of now, either way (clocks drift)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    return abs(now - value) <= MAX_AGE_MS
