"""Domain errors of the adapters (STYLE practice 7): what went wrong talking to a tracker.

Callers retry only what is transient: `RateLimited` (at `retry_at`) and `TransientError`
(with backoff). `RequestRejected` means retrying the same request cannot help.
Messages are written for an operator and never contain a token.
"""

from __future__ import annotations

from datetime import UTC, datetime


class AdapterError(Exception):
    """Base of every error an adapter raises on purpose."""


class RateLimited(AdapterError):
    """The tracker's rate limit is exhausted; nothing should be sent before `retry_at`."""

    def __init__(self, retry_at: datetime, message: str | None = None) -> None:
        self.retry_at = retry_at
        when = retry_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        super().__init__(message or f"rate limit exhausted; retry after {when}")

    def seconds_left(self, now: datetime | None = None) -> float:
        """Seconds from `now` until the limit resets (never negative)."""
        return max(0.0, (self.retry_at - (now or datetime.now(UTC))).total_seconds())


class Paced(RateLimited):
    """Not sent: our own budget of content-creating requests (GitHub's secondary rate
    limits) has no room before `retry_at`. Nothing went out; the same request may go then."""


class TransientError(AdapterError):
    """A server error, timeout or network failure: the same request may succeed later."""


class RequestRejected(AdapterError):
    """The tracker refused the request (bad credentials, no access, not found)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class BranchMissing(RequestRejected):
    """The repository has commits but no branch of that name (it was renamed or deleted)."""

    def __init__(self, message: str) -> None:
        super().__init__(404, message)
