"""POSTing a notification's JSON and turning the answer into the adapters' errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from adapters.errors import RateLimited, RequestRejected, TransientError

TIMEOUT_SECONDS = 15.0
USER_AGENT = "OpenASE-Notifications"
DEFAULT_RETRY_AFTER = 60.0


async def post(
    service: str, url: str, body: bytes, headers: dict[str, str], *, seconds: float
) -> int:
    """POST `body` to `url`; the status on 2xx. `service` names the receiver in errors (the
    URL never appears in one)."""
    sent = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    try:
        async with httpx.AsyncClient(timeout=seconds, follow_redirects=False) as client:
            response = await client.post(url, content=body, headers=sent)
    except httpx.TimeoutException:
        raise TransientError(f"{service}: no answer within {seconds:g} s") from None
    except httpx.HTTPError as exc:  # connection refused, DNS, a reset: the network
        raise TransientError(f"{service}: {type(exc).__name__}") from None
    status = response.status_code
    if 200 <= status < 300:
        return status
    if status == 429:
        raise RateLimited(_retry_at(response), f"{service}: rate limited (HTTP 429)")
    if status >= 500 or status in (408, 425):
        raise TransientError(f"{service}: HTTP {status}")
    raise RequestRejected(status, f"{service} refused the notification: HTTP {status}")


def _retry_at(response: httpx.Response) -> datetime:
    try:
        seconds = float(response.headers.get("Retry-After", DEFAULT_RETRY_AFTER))
    except ValueError:
        seconds = DEFAULT_RETRY_AFTER
    return datetime.now(UTC) + timedelta(seconds=min(max(seconds, 1.0), 3600.0))
