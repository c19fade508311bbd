"""One dispatcher per ticket at a time, across every worker (and one engine tick).

A label's webhook, the tick's due tickets and a freed slot may all ask to dispatch the same
ticket at once. The claim lets only one of them start a run, but each would first prepare
it and mint a git token (a GitHub API call) for a run that never exists. A short Redis key
per ticket lets the first go on and tells the others someone is on it; it expires by
itself, so a dispatcher that died frees the ticket within `HOLD_MS`. Without Redis the
dispatchers go on unguarded (the claim still decides; sending needs Redis anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

# Renewed while its dispatcher works (a token mint may take seconds when GitHub is slow):
# a dispatcher killed mid-dispatch holds its ticket back only this long.
HOLD_MS = 10_000
# Delete the key only while it is still ours (it may have expired and been taken since).
RELEASE_IF_MINE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
# Extend the key's life only while it is still ours; 1 if it was.
RENEW_IF_MINE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


def dispatching_key(ticket_id: int) -> str:
    return f"openase:dispatching:{ticket_id}"


def sole_dispatcher(redis: Redis, ticket_id: int) -> AbstractAsyncContextManager[bool]:
    """Whether this dispatcher is the ticket's only one now (False: another is on it)."""
    return sole_holder(redis, dispatching_key(ticket_id), HOLD_MS, renew=True)


@asynccontextmanager
async def sole_holder(
    redis: Redis, key: str, hold_ms: int, *, renew: bool = False
) -> AsyncIterator[bool]:
    """Whether this is the only holder of `key` now (False: another holds it). The key is
    released on the way out, or expires after `hold_ms` if its holder died; without Redis
    every caller goes on (True), unguarded.

    With `renew` the key is extended to `hold_ms` again every third of it while the holder
    works: a holder's work may then last any time, and a holder that died (SIGKILL) still
    frees the key within `hold_ms`, however long its work could have taken."""
    mine = secrets.token_hex(8)
    try:
        held = bool(await redis.set(key, mine, nx=True, px=hold_ms))
    except (RedisError, OSError):
        held = None  # Redis away: no guard, the claim alone decides
    if held is False:
        yield False
        return
    renewing = (
        asyncio.get_running_loop().create_task(_renewing(redis, key, mine, hold_ms))
        if held and renew
        else None
    )
    try:
        yield True
    finally:
        if renewing is not None:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        if held:
            with contextlib.suppress(RedisError, OSError):  # else it expires by itself
                await redis.register_script(RELEASE_IF_MINE)(keys=[key], args=[mine])


async def _renewing(redis: Redis, key: str, mine: str, hold_ms: int) -> None:
    renew = redis.register_script(RENEW_IF_MINE)
    while True:
        await asyncio.sleep(hold_ms / 3000)
        try:
            if not await renew(keys=[key], args=[mine, hold_ms]):
                return  # lost (Redis came back empty, or it ran out): not ours to keep
        except (RedisError, OSError):
            continue  # Redis away: the key may outlive this blip; tried again
