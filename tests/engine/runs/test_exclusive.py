"""One dispatcher per ticket at a time (bot/engine/runs/exclusive.py), on the real Redis:
the others are told someone is on it, the key goes with its holder, and a holder that died
frees the ticket by expiry. Without it, a label's webhook and the tick dispatching the same
ticket together each minted a git token for one run."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from bot.deps import Deps
from bot.engine.runs.exclusive import HOLD_MS, dispatching_key, sole_dispatcher, sole_holder


async def test_one_dispatcher_at_a_time_and_the_ticket_is_free_after(deps: Deps) -> None:
    redis = deps.redis
    async with sole_dispatcher(redis, 7) as first:
        assert first
        async with sole_dispatcher(redis, 7) as second:
            assert not second
        async with sole_dispatcher(redis, 8) as other_ticket:
            assert other_ticket
        assert await redis.exists(dispatching_key(7))  # the second left the first's key
    assert not await redis.exists(dispatching_key(7))
    async with sole_dispatcher(redis, 7) as again:
        assert again


async def test_a_key_that_expired_and_was_taken_is_not_released_by_its_old_holder(
    deps: Deps,
) -> None:
    redis = deps.redis
    async with sole_dispatcher(redis, 9) as first:
        assert first
        # The first holder took too long: its key expired and another dispatcher took it.
        await redis.set(dispatching_key(9), "someone-else")
    assert await redis.get(dispatching_key(9)) == b"someone-else"
    await redis.delete(dispatching_key(9))


async def test_a_holder_that_died_frees_the_ticket_by_expiry(deps: Deps) -> None:
    async with sole_dispatcher(deps.redis, 10) as held:
        assert held
        assert 0 < await deps.redis.pttl(dispatching_key(10)) <= HOLD_MS


async def test_without_redis_the_dispatcher_goes_on() -> None:
    gone = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        async with sole_dispatcher(gone, 7) as sole:
            assert sole
    finally:
        await gone.aclose()


async def test_a_renewed_key_outlives_its_hold_while_its_holder_works(deps: Deps) -> None:
    """The engine tick's key: held for as long as the tick runs, yet a worker killed
    mid-tick stops the others' ticks only for the short hold (it was two minutes)."""
    redis, key = deps.redis, "openase:test:renewed"
    async with sole_holder(redis, key, 300, renew=True) as held:
        assert held
        await asyncio.sleep(1.0)  # more than three holds
        async with sole_holder(redis, key, 300) as another:
            assert not another  # still held: renewed meanwhile
        assert 0 < await redis.pttl(key) <= 300
    assert not await redis.exists(key)  # released, and the renewing has stopped
    await asyncio.sleep(0.2)
    assert not await redis.exists(key)


async def test_a_renewed_key_taken_by_another_is_not_renewed_or_released(deps: Deps) -> None:
    redis, key = deps.redis, "openase:test:taken"
    async with sole_holder(redis, key, 300, renew=True) as held:
        assert held
        await redis.set(key, "someone-else", px=5_000)  # it ran out and was taken
        await asyncio.sleep(0.3)
        assert 300 < await redis.pttl(key) <= 5_000  # not pulled back to this holder's hold
    assert await redis.get(key) == b"someone-else"
    await redis.delete(key)
