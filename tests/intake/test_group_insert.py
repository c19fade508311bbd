"""Webhooks stored together (bot/intake/group_insert.py): those that arrive while an INSERT
is in flight go in one statement, each answered with its own row; a duplicate in the same
statement is a duplicate, and one row PostgreSQL refuses fails alone."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from sqlalchemy import select

from bot.deps import Deps
from bot.intake.deliveries import store_delivery
from bot.intake.group_insert import GroupInsert, NewDelivery
from bot.tables.mirror import Delivery


def _delivery(delivery_id: str, payload: str | None = None) -> NewDelivery:
    return NewDelivery(
        source="github",
        delivery_id=delivery_id,
        event="issues",
        action="opened",
        installation_id=7,
        repository="octo/hello",
        payload=payload or json.dumps({"action": "opened", "n": delivery_id}),
        status="pending",
    )


class Counting(GroupInsert):
    """Counts the statements it sends (the class under test otherwise unchanged)."""

    def __init__(self, pool: object) -> None:
        super().__init__(pool)
        self.sizes: list[int] = []

    async def _many(self, deliveries: list[NewDelivery]) -> list[int | None]:
        self.sizes.append(len(deliveries))
        return await super()._many(deliveries)

    async def _one(self, delivery: NewDelivery) -> int | None:
        self.sizes.append(1)
        return await super()._one(delivery)


async def _stored(deps: Deps) -> dict[str, int]:
    async with deps.sessions() as session:
        rows = await session.execute(select(Delivery.delivery_id, Delivery.id))
        return {delivery_id: pk for delivery_id, pk in rows}


async def test_deliveries_arriving_together_are_one_insert_each_with_its_own_row(
    deps: Deps,
) -> None:
    inserts = Counting(deps.intake)
    ids = await asyncio.gather(*(inserts.store(_delivery(f"d-{n}")) for n in range(20)))
    stored = await _stored(deps)
    assert ids == [stored[f"d-{n}"] for n in range(20)]
    assert inserts.sizes == [20]
    alone = await inserts.store(_delivery("later"))  # nothing else waiting: at once, alone
    assert alone == (await _stored(deps))["later"]
    assert inserts.sizes == [20, 1]


async def test_a_delivery_twice_in_one_insert_is_stored_once_the_second_a_duplicate(
    deps: Deps,
) -> None:
    inserts = GroupInsert(deps.intake)
    ids = await asyncio.gather(
        inserts.store(_delivery("first")),
        inserts.store(_delivery("again")),
        inserts.store(_delivery("again")),
    )
    stored = await _stored(deps)
    assert list(ids) == [stored["first"], stored["again"], None]
    assert await inserts.store(_delivery("again")) is None  # and later, too


async def test_a_row_postgresql_refuses_fails_alone(deps: Deps) -> None:
    inserts = Counting(deps.intake)
    # Python's JSON parser takes a lone surrogate; PostgreSQL's jsonb does not.
    refused = _delivery("refused", payload='{"title": "\\ud800"}')
    results = await asyncio.gather(
        inserts.store(_delivery("a")),
        inserts.store(refused),
        inserts.store(_delivery("b")),
        return_exceptions=True,
    )
    stored = await _stored(deps)
    assert results[0] == stored["a"]
    assert isinstance(results[1], asyncpg.DataError)
    assert results[2] == stored["b"]
    assert "refused" not in stored
    assert inserts.sizes == [3, 1, 1, 1]  # the batch, then each alone


async def test_a_store_that_is_away_fails_every_waiting_request(deps: Deps) -> None:
    down = await asyncpg.create_pool("postgresql://openase@127.0.0.1:1/openase", min_size=0)
    try:
        inserts = GroupInsert(down)
        results = await asyncio.gather(
            *(inserts.store(_delivery(f"x-{n}")) for n in range(3)), return_exceptions=True
        )
    finally:
        await down.close()
    assert all(isinstance(result, OSError) for result in results), results


async def test_the_webhook_path_inserts_through_the_deps_pool_and_follows_a_new_one(
    deps: Deps,
) -> None:
    async def store(delivery_id: str, on: Deps) -> int | None:
        return await store_delivery(
            on, source="github", delivery_id=delivery_id, event="ping", payload={"zen": "z"}
        )

    assert await store("one", deps) is not None
    first = deps.intake_inserts
    assert isinstance(first, GroupInsert)
    down = await asyncpg.create_pool("postgresql://openase@127.0.0.1:1/openase", min_size=0)
    try:
        deps.intake = down
        with pytest.raises(OSError, match="Connect call failed"):
            await store("two", deps)
        assert deps.intake_inserts is not first
    finally:
        deps.intake = first.pool
        await down.close()
    assert await store("two", deps) is not None
    assert set(await _stored(deps)) == {"one", "two"}
