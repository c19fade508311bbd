"""Where a run's `AgentEvent`s go: a bounded Redis stream per run (for the control plane to
persist and the web page to tail), or the terminal for `openase try`.

Emitting never blocks the agent and never fails the run: the parser's callback is
synchronous, so events are buffered and a background task writes them in batches. While
Redis is away the buffer keeps the newest BUFFER_LIMIT events (older ones are dropped and
counted) and is written once Redis is back; the count of dropped events is logged and
written into the stream, so the run's page says what it is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import deque
from collections.abc import Callable
from typing import IO, Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from runner.contract import AgentEvent, EventKind, run_events_stream, run_heartbeat_key
from runner.redis_outage import RedisOutage, cancelling, stop_if_cancelled

log = structlog.get_logger(__name__)

# A stream keeps about this many events (XADD MAXLEN ~): enough for a long run's tool
# calls; the control plane persists what it needs as events arrive.
STREAM_MAXLEN = 10_000
# A finished run's stream stays readable this long, then Redis drops it.
STREAM_TTL_SECONDS = 7 * 24 * 3600
HEARTBEAT_SECONDS = 5.0
# The run's liveness key outlives a few missed heartbeats, then a lost run shows as gone.
ALIVE_TTL_SECONDS = 30
# Events a run holds while Redis is away (or slower than the agent): about a megabyte or
# ten, and as many as its stream keeps anyway.
BUFFER_LIMIT = 10_000
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
        self,
        redis: Redis,
        run_id: str,
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        outage: RedisOutage | None = None,
        buffer_limit: int = BUFFER_LIMIT,
    ) -> None:
        self._redis = redis
        self._stream = run_events_stream(run_id)
        self._alive = run_heartbeat_key(run_id)
        self._sequencer = _Sequencer(run_id)
        self._outage = outage if outage is not None else RedisOutage(redis.ping)
        self._own_outage = outage is None
        self._buffer: deque[AgentEvent] = deque()
        self._limit = buffer_limit
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._heartbeat_seconds = heartbeat_seconds
        self._writer: asyncio.Task[None] | None = None
        self._beater: asyncio.Task[None] | None = None
        self.dropped = 0
        self._reported = 0

    @property
    def done(self) -> bool:
        """Closed, and everything written (or given up)."""
        return self._closing and (self._writer is None or self._writer.done())

    @property
    def pending(self) -> int:
        """Events not written yet."""
        return len(self._buffer)

    async def drain(self) -> None:
        """Wait until every buffered event has been written (or dropped)."""
        await self._idle.wait()

    def emit(self, event: AgentEvent) -> None:
        if len(self._buffer) >= self._limit:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(self._sequencer.stamp(event))
        self._idle.clear()
        self._wake.set()

    async def start(self) -> None:
        self._writer = asyncio.create_task(self._write(), name=f"events {self._stream}")
        self._beater = asyncio.create_task(self._beat(), name=f"heartbeat {self._stream}")

    async def close(self) -> None:
        """Stop heartbeats and write what is buffered. With Redis away, return at once: the
        writer goes on and finishes once Redis is back (`flushed`)."""
        if self._beater is not None:
            self._beater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beater
            self._beater = None
        self._closing = True
        self._wake.set()
        writer = self._writer
        while writer is not None and not writer.done() and not self._outage.away:
            await asyncio.wait({writer}, timeout=0.1)
        if writer is not None and writer.done() and self._own_outage:
            await self._outage.aclose()

    async def flushed(self) -> None:
        """Wait until the closed sink has written everything."""
        if self._writer is not None:
            await asyncio.shield(self._writer)

    async def abandon(self) -> None:
        """Give up on what is still buffered (the runner stops): counted as dropped."""
        for task in (self._beater, self._writer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.dropped += len(self._buffer)
        self._buffer.clear()
        self._idle.set()
        if self._own_outage:
            await self._outage.aclose()
        self._report()

    async def _beat(self) -> None:
        while True:
            stop_if_cancelled()
            try:
                await self._redis.set(self._alive, "1", ex=ALIVE_TTL_SECONDS)
            except (RedisError, OSError) as error:
                stop_if_cancelled(error)  # stopped mid-command: redis-py may say so as an error
                if not self._outage.noticed(error):
                    log.warning("run_heartbeat_failed", key=self._alive, error=str(error))
                await self._outage.until_back()
                continue  # at once: the control plane is counting the seconds
            stop_if_cancelled()
            await asyncio.sleep(self._heartbeat_seconds)
            if not self._outage.away:  # a heartbeat written late says nothing
                self.emit(AgentEvent(kind=EventKind.HEARTBEAT))

    async def _write(self) -> None:
        while self._buffer or not self._closing:
            stop_if_cancelled()
            if not self._buffer:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._buffer.popleft() for _ in range(min(_BATCH, len(self._buffer)))]
            try:
                await self._flush(batch)
            except (RedisError, OSError) as error:
                if cancelling():
                    self._put_back(batch)
                    raise asyncio.CancelledError from error
                if self._outage.noticed(error):
                    self._put_back(batch)
                    await self._outage.until_back()
                    continue
                self.dropped += len(batch)
                log.warning("run_events_unwritten", stream=self._stream, error=str(error))
            self._report()
        self._idle.set()
        with contextlib.suppress(RedisError, OSError):
            await self._redis.delete(self._alive)  # the run is over: not alive, not lost

    def _put_back(self, batch: list[AgentEvent]) -> None:
        """Unwritten, in front of what came since, the oldest dropped beyond the bound."""
        room = max(0, self._limit - len(self._buffer))
        kept = batch[len(batch) - room :] if room < len(batch) else batch
        self.dropped += len(batch) - len(kept)
        self._buffer.extendleft(reversed(kept))

    def _report(self) -> None:
        """Say once, in the log and the stream, how many events were dropped since last said."""
        dropped = self.dropped - self._reported
        if not dropped:
            return
        self._reported = self.dropped
        log.warning("run_events_dropped", stream=self._stream, dropped=dropped)
        if self._writer is not None and not self._writer.done():
            self.emit(
                AgentEvent(
                    kind=EventKind.LOG,
                    text=f"{dropped} events were dropped (Redis was away or too slow)",
                    data={"events_dropped": dropped},
                )
            )

    async def _flush(self, events: list[AgentEvent]) -> None:
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
