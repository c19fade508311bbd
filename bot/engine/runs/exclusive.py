"""One dispatcher per ticket at a time, across every worker.

A label's webhook, the tick's due tickets and a freed slot may all ask to dispatch the same
ticket at once. The claim lets only one of them start a run, but each would first prepare
it and mint a git token (a GitHub API call) for a run that never exists. A short Redis key
per ticket lets the first go on and tells the others someone is on it; it expires by
itself, so a dispatcher that died frees the ticket within `HOLD`. Without Redis the
dispatchers go on unguarded (the claim still decides; sending needs Redis anyway).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

HOLD_MS = 30_000  # longer than any dispatch's preparation and claim take
# Delete the key only while it is still ours (it may have expired and been taken since).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def dispatching_key(ticket_id: int) -> str:
    return f"openase:dispatching:{ticket_id}"


@asynccontextmanager
async def sole_dispatcher(redis: Redis, ticket_id: int) -> AsyncIterator[bool]:
    """Whether this dispatcher is the ticket's only one now (False: another is on it)."""
    key, mine = dispatching_key(ticket_id), secrets.token_hex(8)
    try:
        held = bool(await redis.set(key, mine, nx=True, px=HOLD_MS))
    except (RedisError, OSError):
        held = None  # Redis away: no guard, the claim alone decides
    if held is False:
        yield False
        return
    try:
        yield True
    finally:
        if held:
            with contextlib.suppress(RedisError, OSError):  # else it expires by itself
                await redis.register_script(_RELEASE)(keys=[key], args=[mine])
