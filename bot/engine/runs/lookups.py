"""Asking Redis about many keys in few commands.

redis-py spends some 50 us of CPU sending and reading each command of a pipeline, so a
command per run (its result, its liveness, its job) made the engine tick's sweep of 200
open runs some 50 ms of CPU. MGET answers any number of string keys in one command; a
script answers whether each of any number of keys exists (EXISTS of many keys only counts
them)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio.client import Pipeline

# KEYS: any; 1 or 0 for each, whether it exists.
_EXISTING = """
local existing = {}
for i, key in ipairs(KEYS) do
  existing[i] = redis.call('exists', key)
end
return existing
"""


def ask_existing(pipe: Pipeline, keys: Sequence[str]) -> bool:
    """Queue one command whose reply says, for each key in order, 1 if it exists, else 0;
    False (nothing queued, no reply to read) when there are no keys."""
    if not keys:
        return False
    # EVAL, not a registered script: a pipeline's scripts cost a SCRIPT EXISTS round trip.
    pipe.eval(_EXISTING, len(keys), *keys)
    return True


def ask_values(pipe: Pipeline, keys: Sequence[str]) -> bool:
    """Queue one MGET of the keys (None for each that is missing); False (nothing queued)
    when there are no keys."""
    if not keys:
        return False
    pipe.mget(list(keys))
    return True


async def answers(pipe: Pipeline) -> list[Any]:
    """The pipeline's replies. It takes a connection for the execution only and gives it
    back as that ends (no `async with`, whose exit would give it back a second time);
    shielded, so that a tick cancelled mid-read (its worker stopping) still lets it end
    and give the connection back, rather than leave it to the garbage collector's
    'unclosed client' warning."""
    return await asyncio.shield(pipe.execute())
