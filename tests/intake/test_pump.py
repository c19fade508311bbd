"""The ingest pump (bot/intake/pump.py) on the real PostgreSQL: a stored delivery wakes it
and is ingested, batches of it in flight at once take each delivery once, and PostgreSQL
going away is said once and waited out, not logged as an error every second."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from sqlalchemy import func, select
from structlog.testing import capture_logs

from bot.deps import Deps
from bot.engine.jobs import WorkflowReactor
from bot.intake.deliveries import store_delivery
from bot.intake.ingest import BATCH, ingest_batch
from bot.intake.pump import IngestPump
from bot.processes.worker import COMMANDS
from bot.servers.outages import Outages
from bot.tables.mirror import Delivery, DeliveryTicket
from tests.conftest import OpenWorld
from tests.support.helpers import github_example
from tests.support.outages import postgres_down


async def _store(deps: Deps, number: int) -> int:
    payload = github_example("issues", "opened")
    payload["issue"]["number"] = number
    payload["issue"]["id"] = 70_000 + number
    pk = await store_delivery(
        deps, source="github", delivery_id=f"p-{number}", event="issues", payload=payload
    )
    assert pk is not None
    return pk


async def _statuses(deps: Deps) -> dict[str, int]:
    async with deps.sessions() as session:
        rows = await session.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status)
        )
        return {status: count for status, count in rows}


async def _until(deps: Deps, done: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while (await _statuses(deps)).get("done", 0) < done:
        assert time.monotonic() < deadline, await _statuses(deps)
        await asyncio.sleep(0.02)


async def test_a_stored_delivery_wakes_the_pump_and_many_are_each_taken_once(deps: Deps) -> None:
    pump = IngestPump(deps)
    pump.start()
    try:
        await asyncio.sleep(0.3)  # listening, nothing pending: it waits for a notification
        await _store(deps, 1)
        await _until(deps, 1, seconds=0.9)  # before its fallback look (POLL_SECONDS)
        for number in range(2, 2 + 2 * BATCH + 50):  # more than the batches in flight take
            await _store(deps, number)
        await _until(deps, 2 * BATCH + 51)
    finally:
        await pump.stop()
    assert await _statuses(deps) == {"done": 2 * BATCH + 51}
    async with deps.sessions() as session:
        links = await session.scalar(select(func.count()).select_from(DeliveryTicket))
        attempts = set(await session.scalars(select(Delivery.attempts)))
    assert links == 2 * BATCH + 51  # each delivery applied once
    assert attempts == {1}


async def test_postgres_away_is_said_once_and_waited_out(deps: Deps) -> None:
    await _store(deps, 1)
    async with postgres_down(deps) as down:
        # It listens on the real server and claims through the dead one: the failure comes
        # out of its batches in flight, not out of its connection. (The outage's probe asks
        # the real one, so it is soon "back", and the relapse is said at debug level.)
        broken = dataclasses.replace(deps, sessions=down.sessions, outages=Outages())
        pump = IngestPump(broken)
        with capture_logs() as logs:
            pump.start()
            await asyncio.sleep(2)
            await pump.stop()
        await broken.outages.aclose()
    said = [(line["event"], line.get("store")) for line in logs if line["log_level"] != "debug"]
    assert said[0] == ("store_unavailable", "postgres")
    assert set(said) <= {("store_unavailable", "postgres"), ("store_back", "postgres")}
    assert not [line for line in logs if line["log_level"] == "error"]
    assert await _statuses(deps) == {"pending": 1}


async def test_the_engine_is_prepared_for_a_batch_once_it_is_claimed(
    open_world: OpenWorld,
) -> None:
    """`openase up` with a GitHub App registered while the worker runs: the App's first
    delivery is stored after the App was, so the engine looked up once the batch is claimed
    is the App's, and the delivery is acted on (looked up before the claim, it was applied
    without an engine and the ticket never started)."""
    async with open_world(runners=0, workers=0) as w:
        prepared: list[int] = []

        def prepare() -> None:  # as the worker's: hands ingest the engine there is now
            prepared.append(len(prepared))
            w.deps.workflow = WorkflowReactor(w.engine, COMMANDS)

        assert await ingest_batch(w.deps, prepare=prepare) == []
        assert prepared == []  # nothing claimed, nothing to prepare for

        w.add_issue(5, "Soon", "add PASS")
        await w.label(5, "openase")
        assert [done.status for done in await ingest_batch(w.deps, prepare=prepare)] == ["done"]
        assert prepared == [0]
        state = await w.state(5)
        assert state is not None
        assert state.state == "todo"


async def test_a_batch_says_one_line_naming_each_delivery(deps: Deps) -> None:
    """One `deliveries_ingested` line a transaction (a line each cost a seventh of the
    worker's time); it names every delivery, as the chaos and scale benches count them."""
    for number in (1, 2, 3):
        await _store(deps, number)
    ping = await store_delivery(
        deps, source="github", delivery_id="p-ping", event="ping", payload={"zen": "Keep it"}
    )
    assert ping is not None
    with capture_logs() as logs:
        ingested = await ingest_batch(deps)
    assert [done.status for done in ingested] == ["done", "done", "done", "ignored"]
    [line] = [line for line in logs if line["event"] == "deliveries_ingested"]
    assert line["delivery_ids"] == ["p-1", "p-2", "p-3", "p-ping"]
    assert line["statuses"] == {"done": 3, "ignored": 1}
