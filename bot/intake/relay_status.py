"""The webhook relay's state, where any web process can read it (the setup page does).

The process running the relay keeps one JSON document in Redis under `RELAY_STATUS_KEY`,
written on every change and refreshed while the relay runs; it expires `STATUS_TTL`
seconds after the last refresh, so a relay that died without a word stops being shown.
With several `serve` replicas relaying, the last one to write is shown.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Literal

import structlog
from redis.asyncio import Redis

log = structlog.get_logger(__name__)

RELAY_STATUS_KEY = "openase:relay:status"
STATUS_TTL = 90  # seconds; the relay refreshes it at least every STATUS_REFRESH
STATUS_REFRESH = 30.0

RelayState = Literal["connecting", "connected", "reconnecting"]
_STATES: frozenset[str] = frozenset({"connecting", "connected", "reconnecting"})
_TIMES = ("connected_since", "last_event_at", "next_retry_at")


@dataclass(frozen=True)
class RelayStatus:
    """Where the relay stands. Times are timezone-aware (UTC)."""

    state: RelayState
    channel: str  # the channel's URL: anyone who has it can read the deliveries
    connected_since: datetime | None = None
    last_event_at: datetime | None = None
    events_stored: int = 0  # deliveries this relay stored (redeliveries included)
    last_error: str | None = None  # why the channel was last lost, or a delivery not stored
    next_retry_at: datetime | None = None  # when reconnecting: the next attempt

    def to_json(self) -> str:
        document: dict[str, Any] = asdict(self)
        for name in _TIMES:
            moment = document[name]
            document[name] = moment.isoformat() if moment is not None else None
        return json.dumps(document)

    @classmethod
    def from_json(cls, text: str | bytes) -> RelayStatus:
        """Parse `to_json`'s output (ValueError, KeyError or TypeError when it is not)."""
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("state") not in _STATES:
            raise ValueError("not a relay status")
        known = {f.name for f in fields(cls)}
        values = {name: value for name, value in document.items() if name in known}
        for name in _TIMES:
            if values.get(name) is not None:
                values[name] = datetime.fromisoformat(values[name])
        return cls(**values)


async def read_relay_status(redis: Redis) -> RelayStatus | None:
    """The relay's current status; None when no relay runs (or it stopped writing).

    Raises RedisError (or OSError) when Redis does not answer.
    """
    text = await redis.get(RELAY_STATUS_KEY)
    if text is None:
        return None
    try:
        return RelayStatus.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("relay_status_unreadable", error=str(exc))
        return None


async def write_relay_status(redis: Redis, status: RelayStatus) -> None:
    """Publish `status` for STATUS_TTL seconds (raises RedisError or OSError)."""
    await redis.set(RELAY_STATUS_KEY, status.to_json(), ex=STATUS_TTL)


async def clear_relay_status(redis: Redis) -> None:
    """The relay stopped: show none (raises RedisError or OSError)."""
    await redis.delete(RELAY_STATUS_KEY)
