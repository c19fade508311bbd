"""Deliveries stored together: the webhooks that arrive while an INSERT is in flight go in
the next one, as one statement.

Each webhook is still answered only once its own row is committed. With no other
delivery waiting, one is inserted at once, alone (no added wait); under load the requests
that queue behind the inserts in flight are written by one statement and one commit,
where each paid a statement, a commit and a pool checkout of its own.

A batch PostgreSQL refuses as a whole for one row's data (a repository name past its column)
is written again row by row, so only that delivery fails; a lost connection fails each of
its requests with the error, as it would have alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg

# The payload goes to PostgreSQL as the text received: no re-encoding in Python.
_INSERT_ONE = """
INSERT INTO deliveries
    (source, delivery_id, event, action, installation_id, repository, payload, status, attempts)
VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, 0)
ON CONFLICT (source, delivery_id) DO NOTHING
RETURNING id
"""
_INSERT_MANY = """
INSERT INTO deliveries
    (source, delivery_id, event, action, installation_id, repository, payload, status, attempts)
SELECT source, delivery_id, event, action, installation_id, repository, payload::jsonb, status, 0
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
            $7::text[], $8::text[])
    AS row(source, delivery_id, event, action, installation_id, repository, payload, status)
ON CONFLICT (source, delivery_id) DO NOTHING
RETURNING id, source, delivery_id
"""
IN_FLIGHT = 4  # INSERTs at once (the pool has 16 connections)
MOST = 64  # deliveries in one INSERT


@dataclass(frozen=True)
class NewDelivery:
    source: str
    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    repository: str | None
    payload: str  # JSON text
    status: str

    def arguments(self) -> tuple[Any, ...]:
        return (
            self.source,
            self.delivery_id,
            self.event,
            self.action,
            self.installation_id,
            self.repository,
            self.payload,
            self.status,
        )


class GroupInsert:
    """Inserts deliveries through `pool`, those waiting together."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._waiting: list[tuple[NewDelivery, asyncio.Future[int | None]]] = []
        self._inserting: set[asyncio.Task[None]] = set()  # referenced while they run

    async def store(self, delivery: NewDelivery) -> int | None:
        """The stored row's id; None when this delivery id is already stored."""
        done: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((delivery, done))
        if len(self._inserting) < IN_FLIGHT:
            task = asyncio.get_running_loop().create_task(self._insert_waiting())
            self._inserting.add(task)
            task.add_done_callback(self._inserting.discard)
        return await done

    async def _insert_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MOST], self._waiting[MOST:]
            await self._insert(batch)

    async def _insert(self, batch: list[tuple[NewDelivery, asyncio.Future[int | None]]]) -> None:
        try:
            if len(batch) == 1:
                ids = [await self._one(batch[0][0])]
            else:
                ids = await self._many([delivery for delivery, _ in batch])
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as error:
            if len(batch) == 1:
                _settle(batch[0][1], error=error)
                return
            for delivery, done in batch:  # one row's data: each alone, only it fails
                try:
                    _settle(done, await self._one(delivery))
                except Exception as alone:
                    _settle(done, error=alone)
            return
        except BaseException as error:  # a lost connection, a timeout: each says so
            for _, done in batch:
                _settle(done, error=error)
            if not isinstance(error, Exception):
                raise
            return
        for (_, done), pk in zip(batch, ids, strict=True):
            _settle(done, pk)

    async def _one(self, delivery: NewDelivery) -> int | None:
        async with self.pool.acquire() as conn:
            pk: int | None = await conn.fetchval(_INSERT_ONE, *delivery.arguments())
        return pk

    async def _many(self, deliveries: list[NewDelivery]) -> list[int | None]:
        columns = list(zip(*(delivery.arguments() for delivery in deliveries), strict=True))
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_INSERT_MANY, *columns)
        stored = {(row["source"], row["delivery_id"]): row["id"] for row in rows}
        ids: list[int | None] = []
        for delivery in deliveries:
            # A delivery sent twice in one batch: the first in order is stored, the other
            # is the duplicate, as if they had come one after the other.
            ids.append(stored.pop((delivery.source, delivery.delivery_id), None))
        return ids


def _settle(
    done: asyncio.Future[int | None], pk: int | None = None, *, error: BaseException | None = None
) -> None:
    if done.done():  # its request was cancelled (the client went away): nothing to tell
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(pk)
