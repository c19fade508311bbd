"""The runner looks at its queue the moment a run is sent to it, and otherwise seldom.

arq finds jobs by polling its queue; the runner polled every 10 ms so that a run waited no
longer than that, which cost an idle runner about 6% of a core (20 of them: a whole core,
`make bench-scale`). Now a run's sender publishes on the machine's channel in the script
that queues the run (bot/engine/runs/sending.py), the runner subscribes, and its poll waits
for a message — or `IDLE_POLL_SECONDS`, for what comes without one (a worktree's removal, a
message lost while the subscription was reconnecting). A run that ends wakes it too: the
next queued run takes its slot at once.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from runner.contract import run_wake_channel

log = structlog.get_logger(__name__)

IDLE_POLL_SECONDS = 0.5
RESUBSCRIBE_SECONDS = 1.0  # after the subscription was lost (Redis away): the poll goes on


class Wakeup:
    """Set by a message on the machine's channel (or `wake()`); `wait` until it is."""

    def __init__(self, machine: str) -> None:
        self.channel = run_wake_channel(machine)
        self._woken = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._woken.set()

    async def wait(self, seconds: float | None = None) -> bool:
        """Until woken or `seconds` (IDLE_POLL_SECONDS) passed; whether woken. Clears the
        wake-up first thing after, so one arriving while the caller looks at the queue is
        kept for the next."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._woken.wait(), IDLE_POLL_SECONDS if seconds is None else seconds
            )
        woken = self._woken.is_set()
        self._woken.clear()
        return woken

    def start(self, redis: Redis) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(redis), name="runner-wakeup")

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self, redis: Redis) -> None:
        while True:
            try:
                async with redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.wake()  # anything sent while not subscribed is looked for now
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._woken.set()
            except (RedisError, OSError) as error:  # the poll goes on meanwhile
                log.debug("runner_wakeup_lost", error=type(error).__name__)
            await asyncio.sleep(RESUBSCRIBE_SECONDS)
