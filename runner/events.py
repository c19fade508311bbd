"""Where a run's `AgentEvent`s go: a bounded Redis stream per run (for the control plane to
persist and the web page to tail), or the terminal for `openase try`.

Emitting never blocks the agent and never fails the run: the parser's callback is
synchronous, so events are queued and a background task writes them in batches. If Redis
is unreachable, events are dropped and counted; the run goes on and its result (returned
through arq) still says how it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable
from typing import IO, Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from runner.contract import AgentEvent, EventKind, run_events_stream, run_heartbeat_key

log = structlog.get_logger(__name__)

# A stream keeps about this many events (XADD MAXLEN ~): enough for a long run's tool
# calls; the control plane persists what it needs as events arrive.
STREAM_MAXLEN = 10_000
# A finished run's stream stays readable this long, then Redis drops it.
STREAM_TTL_SECONDS = 7 * 24 * 3600
HEARTBEAT_SECONDS = 5.0
# The run's liveness key outlives a few missed heartbeats, then a lost run shows as gone.
ALIVE_TTL_SECONDS = 30
_QUEUE_LIMIT = 5_000
_BATCH = 200


class EventSink(Protocol):
    def emit(self, event: AgentEvent) -> None:
        """Queue an event (stamping run id and sequence number); never blocks."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Flush what is queued, then stop."""
        ...


class _Sequencer:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._seq = 0

    def stamp(self, event: AgentEvent) -> AgentEvent:
        self._seq += 1
        return event.model_copy(update={"run_id": self.run_id, "seq": self._seq})


class RedisEventSink:
    """XADD each event to `openase:run:<id>:events`, with a heartbeat event every few
    seconds while the run lives, so a watcher can tell a quiet agent from a dead runner."""

    def __init__(
        self, redis: Redis, run_id: str, *, heartbeat_seconds: float = HEARTBEAT_SECONDS
    ) -> None:
        self._redis = redis
        self._stream = run_events_stream(run_id)
        self._alive = run_heartbeat_key(run_id)
        self._sequencer = _Sequencer(run_id)
        self._queue: asyncio.Queue[AgentEvent | None] = asyncio.Queue(_QUEUE_LIMIT)
        self._heartbeat_seconds = heartbeat_seconds
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0

    async def drain(self) -> None:
        """Wait until every queued event has been written (or dropped)."""
        await self._queue.join()

    def emit(self, event: AgentEvent) -> None:
        try:
            self._queue.put_nowait(self._sequencer.stamp(event))
        except asyncio.QueueFull:
            self.dropped += 1

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._write(), name=f"events {self._stream}"),
            asyncio.create_task(self._beat(), name=f"heartbeat {self._stream}"),
        ]

    async def close(self) -> None:
        if not self._tasks:
            return
        writer, beater = self._tasks
        beater.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beater
        await self._queue.put(None)
        await writer
        self._tasks = []
        with contextlib.suppress(RedisError, OSError):
            await self._redis.delete(self._alive)  # the run is over: not alive, not lost
        if self.dropped:
            log.warning("run_events_dropped", stream=self._stream, dropped=self.dropped)

    async def _beat(self) -> None:
        while True:
            try:
                await self._redis.set(self._alive, "1", ex=ALIVE_TTL_SECONDS)
            except (RedisError, OSError) as error:
                log.warning("run_heartbeat_failed", key=self._alive, error=str(error))
            await asyncio.sleep(self._heartbeat_seconds)
            self.emit(AgentEvent(kind=EventKind.HEARTBEAT))

    async def _write(self) -> None:
        done = False
        while not done:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if batch[-1] is None:
                done = True
            events = [event for event in batch if event is not None]
            if events:
                await self._flush(events)
            for _ in batch:
                self._queue.task_done()

    async def _flush(self, events: list[AgentEvent]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for event in events:
                    pipe.xadd(
                        self._stream,
                        {"event": json.dumps(event.to_wire(), separators=(",", ":"))},
                        maxlen=STREAM_MAXLEN,
                        approximate=True,
                    )
                pipe.expire(self._stream, STREAM_TTL_SECONDS)
                await pipe.execute()
        except (RedisError, OSError) as error:
            self.dropped += len(events)
            log.warning("run_events_unwritten", stream=self._stream, error=str(error))


class PrintEventSink:
    """`openase try`: one readable line per event on a terminal stream."""

    def __init__(self, run_id: str, out: IO[str] | None = None) -> None:
        self._sequencer = _Sequencer(run_id)
        self._out = out if out is not None else sys.stderr

    def emit(self, event: AgentEvent) -> None:
        line = describe(self._sequencer.stamp(event))
        if line:
            print(line, file=self._out, flush=True)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class CallbackEventSink:
    """Hands every stamped event to a function (tests read a run's events through it)."""

    def __init__(self, run_id: str, callback: Callable[[AgentEvent], None]) -> None:
        self._sequencer = _Sequencer(run_id)
        self._callback = callback

    def emit(self, event: AgentEvent) -> None:
        self._callback(self._sequencer.stamp(event))

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _clip(text: str, limit: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(event: AgentEvent) -> str:
    """A one-line human rendering of an event ('' for heartbeats)."""
    kind = event.kind
    if kind is EventKind.HEARTBEAT:
        return ""
    if kind is EventKind.TOOL_CALL:
        args = json.dumps(event.input or {}, ensure_ascii=False)
        return f"[tool] {event.tool}({_clip(args, 200)})"
    if kind is EventKind.TOOL_RESULT:
        mark = "error" if event.is_error else "ok"
        return f"[tool {mark}] {_clip(event.text or '')}"
    if kind is EventKind.USAGE and event.usage is not None:
        cost = f", ${event.cost_usd:.4f}" if event.cost_usd is not None else ""
        return f"[usage] {event.usage.total_tokens} tokens{cost}"
    if kind is EventKind.SESSION:
        return f"[session] {event.session_id}"
    if kind is EventKind.HOOK:
        return f"[hook] {_clip(event.text or '')}"
    if kind is EventKind.PHASE:
        return f"[{event.text}]"
    return f"[{kind.value}] {_clip(event.text or '')}"
