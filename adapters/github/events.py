"""GitHub webhook payloads -> normalized events (in progress)."""

from __future__ import annotations

from adapters.base import ParsedDelivery


def parse(event: str, payload: dict[str, object]) -> ParsedDelivery:
    return ParsedDelivery(events=(), ignored_reason=f"event {event!r} is not used")
