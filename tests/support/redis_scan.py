"""Every key of a Redis, read whole whatever its type, to find where a secret is kept.

arq pickles what it stores (a job's arguments, its result): the values are searched as raw
bytes, key names too. `DUMP` is no shortcut: it may LZF-compress a string.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis


async def _values(redis: Redis, key: bytes) -> list[bytes]:
    # redis-py's stubs want key names as str and return unions; the keys are bytes as listed.
    commands: Any = redis
    kind = (await commands.type(key)).decode()
    if kind == "string":
        value = await commands.get(key)
        return [] if value is None else [value]
    if kind == "hash":
        fields = await commands.hgetall(key)
        return [part for pair in fields.items() for part in pair]
    if kind == "list":
        return list(await commands.lrange(key, 0, -1))
    if kind == "set":
        return list(await commands.smembers(key))
    if kind == "zset":
        return [member for member, _ in await commands.zrange(key, 0, -1, withscores=True)]
    if kind == "stream":
        entries = await commands.xrange(key)
        return [part for _, fields in entries for pair in fields.items() for part in pair]
    if kind == "none":  # gone since it was listed
        return []
    raise AssertionError(f"key {key!r} of a type this scan does not read: {kind}")


async def keys_holding(redis: Redis, secret: str) -> list[str]:
    """The keys whose name or value (any type) contains `secret`."""
    needle = secret.encode()
    found = []
    async for key in redis.scan_iter(count=500):
        values = await _values(redis, key)
        if needle in key or any(needle in value for value in values):
            found.append(key.decode(errors="replace"))
    return sorted(found)


async def key_count(redis: Redis) -> int:
    """How many keys there are (a scan that found nothing must have looked at something)."""
    return int(await redis.dbsize())
