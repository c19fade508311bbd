"""The generic webhook: the notification as JSON, signed like GitHub signs its webhooks.

`X-OpenASE-Signature-256: sha256=<hex>` is the HMAC-SHA256 of the raw body with the
channel's secret; a receiver recomputes it over the bytes it got and compares in constant
time (`verify`). `X-OpenASE-Delivery` is the same on every retry of one notification, so a
receiver can drop a repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from adapters.notify.http import TIMEOUT_SECONDS, post

SIGNATURE_HEADER = "X-OpenASE-Signature-256"
EVENT_HEADER = "X-OpenASE-Event"
DELIVERY_HEADER = "X-OpenASE-Delivery"


def encode(message: dict[str, Any]) -> bytes:
    """The body as sent: compact JSON, keys sorted (any bytes verify; these are stable)."""
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, body: bytes) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` (what a receiver does)."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)


async def send(
    url: str,
    secret: str,
    message: dict[str, Any],
    *,
    delivery: str,
) -> int:
    """POST the signed message; the receiver's status."""
    body = encode(message)
    headers = {
        SIGNATURE_HEADER: signature(secret, body),
        EVENT_HEADER: str(message.get("event", "")),
        DELIVERY_HEADER: delivery,
    }
    return await post("the webhook", url, body, headers, seconds=TIMEOUT_SECONDS)
