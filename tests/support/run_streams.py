"""A run's events as a runner streams them into Redis, its result taken in, and the
Server-Sent Events the API and the pages answer with, parsed: shared by the API's and the
pages' stream tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from bot.deps import Deps
from bot.tables.workflow import Run, RunState
from harness_store.db import transaction
from runner.contract import AgentEvent, EventKind, RunResult
from runner.events import RedisEventSink

SSE = {"Accept": "text/event-stream"}

# When the seeded runs start: fixed, so their times and order are known.
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


async def finish(deps: Deps, run_id: str, result: RunResult | None = None) -> None:
    """What run_tracking does when a result arrives (or, without one, a lost run)."""
    values: dict[str, Any] = {"state": RunState.LOST, "finished_at": T0 + timedelta(minutes=9)}
    if result is not None:
        values = {
            "state": RunState.FINISHED,
            "status": result.status.value,
            "result": result.to_wire(),
            "cost_usd": result.cost_usd,
            "finished_at": result.finished_at,
        }
    async with transaction(deps.sessions) as session:
        await session.execute(update(Run).where(Run.id == run_id).values(**values))


@asynccontextmanager
async def runner_sink(deps: Deps, run_id: str) -> AsyncIterator[RedisEventSink]:
    """The runner's own sink for one run, numbering its events from 1."""
    sink = RedisEventSink(deps.redis, run_id, heartbeat_seconds=60)
    await sink.start()
    try:
        yield sink
    finally:
        await sink.close()


async def emit(sink: RedisEventSink, *texts: str) -> None:
    """One text event per string, written to the run's Redis stream before returning."""
    for text in texts:
        sink.emit(AgentEvent(kind=EventKind.TEXT, text=text))
    await sink.drain()


def parse_sse(text: str) -> list[dict[str, str]]:
    """Messages as dicts of their fields; a comment line becomes {"comment": ...}."""
    messages = []
    for block in text.split("\n\n"):
        if not block:
            continue
        message: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            message[name or "comment"] = value.removeprefix(" ")
        messages.append(message)
    return messages


class Received:
    """The messages of one stream as they arrive, for a test to wait on."""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self._arrived = asyncio.Condition()

    async def read(self, stream: AsyncIterator[str]) -> None:
        async for chunk in stream:
            async with self._arrived:
                self.messages.extend(parse_sse(chunk))
                self._arrived.notify_all()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5), self._arrived:
            await self._arrived.wait_for(lambda: len(self.messages) >= count)
