"""Run event streams in a real Redis: order, heartbeats, the bound, and a Redis outage."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from runner.contract import AgentEvent, EventKind, Usage, run_events_stream, run_heartbeat_key
from runner.events import BUFFER_LIMIT, STREAM_MAXLEN, PrintEventSink, RedisEventSink, describe
from tests.conftest import Services


@pytest.fixture
async def redis(services: Services) -> AsyncIterator[Redis]:
    client = Redis.from_url(services.redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


async def stream(redis: Redis, run_id: str) -> list[AgentEvent]:
    entries = await redis.xrange(run_events_stream(run_id))
    return [AgentEvent.from_wire(json.loads(fields[b"event"])) for _, fields in entries]


async def test_events_arrive_in_order_with_heartbeats(redis: Redis) -> None:
    sink = RedisEventSink(redis, "e-1", heartbeat_seconds=0.05)
    await sink.start()
    sink.emit(AgentEvent(kind=EventKind.TEXT, text="first"))
    await asyncio.sleep(0.2)
    assert 0 < await redis.ttl(run_heartbeat_key("e-1")) <= 30  # alive while it runs
    sink.emit(AgentEvent(kind=EventKind.TEXT, text="second"))
    await sink.close()
    assert not await redis.exists(run_heartbeat_key("e-1"))  # ended, not lost

    events = await stream(redis, "e-1")
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    assert {event.run_id for event in events} == {"e-1"}
    texts = [event.text for event in events if event.kind is EventKind.TEXT]
    assert texts == ["first", "second"]
    assert sum(event.kind is EventKind.HEARTBEAT for event in events) >= 2
    assert 0 < await redis.ttl(run_events_stream("e-1")) <= 7 * 24 * 3600


async def test_the_stream_is_bounded(redis: Redis) -> None:
    sink = RedisEventSink(redis, "e-2", heartbeat_seconds=60)
    await sink.start()
    for n in range(STREAM_MAXLEN + 3000):
        sink.emit(AgentEvent(kind=EventKind.LOG, text=str(n)))
        if n % 1000 == 0:  # an agent's output arrives at a pace
            await sink.drain()
    await sink.close()
    assert sink.dropped == 0
    length = await redis.xlen(run_events_stream("e-2"))
    assert STREAM_MAXLEN <= length < STREAM_MAXLEN + 3000
    last = (await stream(redis, "e-2"))[-1]
    assert last.text == str(STREAM_MAXLEN + 2999)


async def test_an_unreachable_redis_keeps_events_without_blocking_the_run() -> None:
    down = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    sink = RedisEventSink(down, "e-3", heartbeat_seconds=60)
    await sink.start()
    sink.emit(AgentEvent(kind=EventKind.TEXT, text="kept"))
    await asyncio.wait_for(sink.close(), 5)  # the run ends; its events wait for Redis
    assert (sink.pending, sink.dropped, sink.done) == (1, 0, False)
    await sink.abandon()  # the runner stops before Redis is back
    assert (sink.pending, sink.dropped) == (0, 1)
    await down.aclose()


def test_the_terminal_sink_prints_one_readable_line_per_event() -> None:
    out = io.StringIO()
    sink = PrintEventSink("t-1", out=out)
    sink.emit(AgentEvent(kind=EventKind.TOOL_CALL, tool="Bash", input={"command": "ls"}))
    sink.emit(AgentEvent(kind=EventKind.HEARTBEAT))
    sink.emit(AgentEvent(kind=EventKind.USAGE, usage=Usage(input_tokens=7), cost_usd=0.5))
    assert out.getvalue().splitlines() == [
        '[tool] Bash({"command": "ls"})',
        "[usage] 7 tokens, $0.5000",
    ]
    assert describe(AgentEvent(kind=EventKind.TEXT, text="x" * 400)).endswith("…")


async def test_a_flood_faster_than_redis_drops_events_instead_of_blocking(redis: Redis) -> None:
    sink = RedisEventSink(redis, "e-4", heartbeat_seconds=60)
    await sink.start()
    for n in range(20_000):  # no await in between: the agent's callback never waits
        sink.emit(AgentEvent(kind=EventKind.LOG, text=str(n)))
    await sink.close()
    events = await stream(redis, "e-4")
    notices = [event for event in events if "events_dropped" in event.data]
    assert sink.dropped == 20_000 - BUFFER_LIMIT  # the oldest went
    assert len(events) - len(notices) + sink.dropped == 20_000
    assert events[0].text == str(20_000 - BUFFER_LIMIT)
    assert sum(notice.data["events_dropped"] for notice in notices) == sink.dropped
