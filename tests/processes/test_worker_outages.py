"""The control worker through Redis outages (issue #19): a real worker (arq, our jobs and
crons) reaching the real Redis through a link the test cuts (tests/support/tcp_proxy.py),
while deliveries are queued in the real Postgres (bot/intake/pump.py), so they are ingested
whether Redis answers or not. No restart by hand: the same worker goes on."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from bot.deps import Deps, redis_client
from bot.intake.deliveries import store_delivery
from bot.processes.worker import make_worker
from bot.servers.outages import Outages
from bot.tables.mirror import Delivery
from tests.conftest import Services
from tests.support.helpers import github_example
from tests.support.tcp_proxy import RedisLink, cuttable_redis

# A silent partition times out arq's watching pipeline, whose UNWATCH then times out too:
# redis-py keeps the dead connection on the pipeline and says so when it is collected.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function Redis.__del__:pytest.PytestUnraisableExceptionWarning"
)


@pytest.fixture
async def link(services: Services) -> AsyncIterator[RedisLink]:
    async with cuttable_redis(services.redis_url) as made:
        yield made


@asynccontextmanager
async def worker_through(deps: Deps, link: RedisLink) -> AsyncIterator[asyncio.Task[None]]:
    """A control worker whose every Redis connection (its own and its Deps') is cut with
    the link; Postgres is the test's."""
    cut_off = dataclasses.replace(deps, redis=redis_client(link.url), outages=Outages())
    worker = make_worker(deps.settings, deps=cut_off, redis_url=link.url)
    task = asyncio.create_task(worker.main())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.wait({task})
        await worker.close()
        await cut_off.outages.aclose()
        await cut_off.redis.aclose(close_connection_pool=True)


async def _deliver(deps: Deps, number: int) -> int:
    """A stored GitHub delivery, as the web app leaves it."""
    payload = github_example("issues", "opened")
    payload["issue"]["number"] = number
    payload["issue"]["id"] = 90_000 + number
    pk = await store_delivery(
        deps, source="github", delivery_id=f"d-{number}", event="issues", payload=payload
    )
    assert pk is not None
    return pk


async def _status(deps: Deps, pk: int) -> str:
    async with deps.sessions() as session:
        return str(await session.scalar(select(Delivery.status).where(Delivery.id == pk)))


async def _until(check: Callable[[], Awaitable[Any]], seconds: float) -> float:
    """Seconds until `check()` held (fails after `seconds`)."""
    began = time.monotonic()
    while not await check():
        assert time.monotonic() - began < seconds, f"not within {seconds} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - began


def _events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line["event"] == name]


async def test_the_worker_rides_out_a_redis_outage_and_ingests_meanwhile(
    deps: Deps, link: RedisLink
) -> None:
    with capture_logs() as logs:
        async with worker_through(deps, link) as worker:
            first = await _deliver(deps, 1)
            await _until(lambda: _is(deps, first, "done"), 15)

            link.proxy.cut(refuse=True)  # Redis stopped: every connection refused
            await asyncio.sleep(3)  # many polls and crons meet the outage meanwhile
            assert not worker.done()
            # Stored while Redis is away: ingested all the same, Redis is not on its way.
            meanwhile = await _deliver(deps, 2)
            await _until(lambda: _is(deps, meanwhile, "done"), 10)
            assert not worker.done()

            link.proxy.restore()
            await _until(lambda: _said(logs, "store_back"), 10)

    [away] = _events(logs, "store_unavailable")
    assert away["store"] == "redis"
    [back] = _events(logs, "store_back")
    assert back["store"] == "redis"
    assert back["seconds"] >= 3
    assert not [line for line in logs if line.get("log_level") == "error"]


async def test_redis_cut_silently_and_coming_back_empty_loses_no_delivery(
    deps: Deps, link: RedisLink
) -> None:
    async with worker_through(deps, link):
        link.proxy.cut()  # a silent partition: the worker's Redis calls hang until timeout
        queued = [await _deliver(deps, number) for number in (1, 2, 3)]
        for pk in queued:  # the queue is Postgres: ingested through the partition
            await _until(_done(deps, pk), 10)
        await deps.redis.flushdb()  # Redis restarted with nothing
        link.proxy.restore()
        later = await _deliver(deps, 4)
        await _until(_done(deps, later), 10)


async def test_a_worker_started_while_redis_is_away_waits_for_it(
    deps: Deps, link: RedisLink
) -> None:
    link.proxy.cut(refuse=True)
    with capture_logs() as logs:
        async with worker_through(deps, link) as worker:
            pending = await _deliver(deps, 1)
            await asyncio.sleep(2)
            assert not worker.done()
            link.proxy.restore()
            await _until(lambda: _is(deps, pending, "done"), 10)
    assert len(_events(logs, "store_unavailable")) == 1


async def _said(logs: list[MutableMapping[str, Any]], name: str) -> bool:
    return bool(_events(logs, name))


async def _is(deps: Deps, pk: int, status: str) -> bool:
    return await _status(deps, pk) == status


def _done(deps: Deps, pk: int) -> Callable[[], Awaitable[bool]]:
    return lambda: _is(deps, pk, "done")
