"""Asking Redis about many keys in one command each (bot/engine/runs/lookups.py), as the
engine tick's sweep and resend do: real Redis, answers in the keys' order, and nothing
sent for no keys."""

from __future__ import annotations

from bot.deps import Deps
from bot.engine.runs.lookups import ask_existing, ask_values


async def test_many_keys_are_answered_in_order_in_one_command_each(deps: Deps) -> None:
    redis = deps.redis
    await redis.set("lookups:a", "1")
    # A hash: it exists, though MGET would say None of it (machines are hashes).
    await redis.hset("lookups:h", mapping={"f": "v"})  # type: ignore[misc]  # redis-py union
    pipe = redis.pipeline(transaction=False)
    assert ask_existing(pipe, ["lookups:a", "lookups:missing", "lookups:h"])
    assert ask_values(pipe, ["lookups:missing", "lookups:a"])
    assert len(pipe.command_stack) == 2
    existing, values = await pipe.execute()
    assert existing == [1, 0, 1]
    assert values == [None, b"1"]


async def test_no_keys_queue_nothing(deps: Deps) -> None:
    pipe = deps.redis.pipeline(transaction=False)
    assert not ask_existing(pipe, [])
    assert not ask_values(pipe, [])
    assert pipe.command_stack == []
