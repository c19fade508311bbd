"""The webhook relay: GitHub's deliveries from a smee.io-style channel, through the intake.

For a machine GitHub cannot reach (a laptop behind NAT), the App's webhook URL is a
channel's (https://smee.io/<channel>) and `up`/`serve` with OPENASE_WEBHOOK_PROXY_URL
read the channel's server-sent events. Each delivery goes to `deliveries.receive`, as a
direct POST does: the signature checked over the body bytes, stored and deduplicated by
delivery id, queued, counted. The channel's format, and how the signed bytes are rebuilt
from it: bot/intake/smee.py.

- GitHub only. The channel stands in for the GitHub App's webhook URL; Linear and Jira
  post to `/webhooks/linear|jira` of a host they reach (Linear refuses a delivery older
  than 60 s, and Jira's JSON is not JavaScript's, so neither reliably survives smee's
  re-serialization). A message without `X-GitHub-Event` is refused with a log line.
- Nothing read is let go unstored while storing could still succeed: when the store fails
  (PostgreSQL down) the same delivery is offered again, with backoff, before the next is
  read (the stream is ordered, and smee keeps nothing to replay). A refused delivery (bad
  signature, malformed) is logged and skipped; Redis down does not matter (a stored
  delivery is queued in PostgreSQL itself: bot/intake/pump.py).
- A lost channel is reconnected with exponential backoff and jitter (1 s doubling to 60 s,
  reset once a connection stayed up `stable_after` seconds), logged (`relay_connected`,
  `relay_disconnected` with the reason), counted, and shown on the setup page through
  bot/intake/relay_status.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from httpx_sse import aconnect_sse
from redis.exceptions import RedisError

from bot.deps import Deps
from bot.intake.deliveries import Outcome, receive
from bot.intake.relay_status import (
    STATUS_REFRESH,
    RelayStatus,
    clear_relay_status,
    write_relay_status,
)
from bot.intake.smee import ChannelMessage, MalformedMessage, parse_message
from bot.metrics import RELAY_EVENTS, RELAY_RECONNECTS
from bot.servers.outages import Backoff
from runner.redis_outage import stop_if_cancelled

log = structlog.get_logger(__name__)

# smee.io pings every 30 s: a read that waits longer than two pings means a dead connection.
READ_TIMEOUT = 75.0
CONNECT_TIMEOUT = 15.0
# A connection that stayed up this long was healthy: the next loss starts backoff afresh.
STABLE_AFTER = 60.0
STATUS_WRITE_TIMEOUT = 2.0
_SHOWN = 100  # characters of a header value worth a log line


RECONNECT_BACKOFF = Backoff(first=1.0, cap=60.0)
# Storing waits on PostgreSQL coming back; the channel waits meanwhile (its order is kept).
STORE_RETRY_BACKOFF = Backoff(first=0.5, cap=30.0)


class WebhookRelay:
    """Consumes one channel into the intake until stopped."""

    def __init__(
        self,
        deps: Deps,
        channel: str,
        *,
        reconnect: Backoff = RECONNECT_BACKOFF,
        store_retry: Backoff = STORE_RETRY_BACKOFF,
        stable_after: float = STABLE_AFTER,
        read_timeout: float = READ_TIMEOUT,
        status_refresh: float = STATUS_REFRESH,
    ) -> None:
        self.deps = deps
        self.channel = channel
        self.reconnect = reconnect
        self.store_retry = store_retry
        self.stable_after = stable_after
        self.read_timeout = read_timeout
        self.status_refresh = status_refresh
        self.status = RelayStatus(state="connecting", channel=channel)
        self._last_event_id = ""
        self._status_changed = asyncio.Event()
        self._status_failing = False
        self._delivering = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Run the relay in a task of its own (stop it with `stop`)."""
        self._task = asyncio.create_task(self.run(), name="relay")
        return self._task

    async def stop(self, grace: float) -> None:
        """Stop reading; a delivery in hand gets up to `grace` seconds to be stored."""
        task = self._task
        if task is None or task.done():
            return
        self._stopping = True
        if self._delivering:
            await asyncio.wait({task}, timeout=grace)
        while not task.done():  # again if a client swallowed the cancellation
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)

    async def run(self) -> None:
        """Read the channel, reconnecting as needed, until cancelled or stopped."""
        timeout = httpx.Timeout(CONNECT_TIMEOUT, read=self.read_timeout)
        writer = asyncio.create_task(self._write_status_forever(), name="relay-status")
        try:
            async with httpx.AsyncClient(
                timeout=timeout,
                # Not followed: smee.io's /new redirects to a fresh channel on every request,
                # which would leave the App's webhook URL posting where nobody listens.
                follow_redirects=False,
                headers={"user-agent": "openase-webhook-relay"},
            ) as client:
                await self._read_forever(client)
        finally:
            while not writer.done():  # so no late write outlives the clearing below
                writer.cancel()
                await asyncio.wait({writer}, timeout=1.0)
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(STATUS_WRITE_TIMEOUT):
                    await clear_relay_status(self.deps.redis)
            log.info("relay_stopped", channel=self.channel)

    async def _read_forever(self, client: httpx.AsyncClient) -> None:
        attempt = 0
        while not self._stopping:
            stop_if_cancelled()  # a cancellation a client turned into an error ends us too
            reason, lasted = await self._read_once(client)
            if self._stopping:
                return
            if lasted >= self.stable_after:
                attempt = 0
            delay = self.reconnect.delay(attempt)
            attempt += 1
            RELAY_RECONNECTS.inc()
            log.warning(
                "relay_disconnected", channel=self.channel, reason=reason, retry_in=round(delay, 2)
            )
            self._publish(
                state="reconnecting",
                connected_since=None,
                last_error=reason,
                next_retry_at=_now() + timedelta(seconds=delay),
            )
            await asyncio.sleep(delay)

    async def _read_once(self, client: httpx.AsyncClient) -> tuple[str, float]:
        """Read the channel until it ends: why it ended, and for how many seconds it was open."""
        loop = asyncio.get_running_loop()
        opened: float | None = None
        headers = {"last-event-id": self._last_event_id} if self._last_event_id else {}
        try:
            async with aconnect_sse(client, "GET", self.channel, headers=headers) as source:
                response = source.response
                if response.status_code != 200:
                    moved = response.headers.get("location")
                    to = f" (to {moved}: set that URL instead)" if moved else ""
                    return f"the channel answered HTTP {response.status_code}{to}", 0.0
                media_type = response.headers.get("content-type", "").partition(";")[0]
                if media_type.strip() != "text/event-stream":
                    return f"the channel answered {media_type or 'no content type'}", 0.0
                opened = loop.time()
                log.info("relay_connected", channel=self.channel)
                self._publish(
                    state="connected", connected_since=_now(), last_error=None, next_retry_at=None
                )
                async for event in source.aiter_sse():
                    if event.id:
                        self._last_event_id = event.id
                    # `ready` and the keep-alive `ping`s only show the connection lives.
                    if event.event == "message":
                        await self._deliver(event.data)
                        if self._stopping:
                            return "stopped", 0.0
            return "the channel ended the stream", _since(loop, opened)
        except httpx.ReadTimeout:
            return f"nothing from the channel for {self.read_timeout:g} s", _since(loop, opened)
        except httpx.HTTPError as exc:
            return _describe(exc), _since(loop, opened)

    async def _deliver(self, data: str) -> None:
        self._delivering = True
        try:
            outcome = await self._hand_over(data)
        finally:
            self._delivering = False
            # `receive` binds the delivery's ids; the relay's next lines are not about it.
            structlog.contextvars.clear_contextvars()
        if outcome is not None and outcome.stored:
            self._publish(last_event_at=_now(), events_stored=self.status.events_stored + 1)
        else:
            self._publish(last_event_at=_now())

    async def _hand_over(self, data: str) -> Outcome | None:
        """Give the message's delivery to the intake; its outcome (None: not a delivery)."""
        try:
            message = parse_message(data)
        except MalformedMessage as exc:
            RELAY_EVENTS.labels("malformed").inc()
            log.warning("relay_event_refused", channel=self.channel, reason=str(exc))
            return None
        event = message.headers.get("x-github-event")
        if not event:
            RELAY_EVENTS.labels("not_github").inc()
            log.warning(
                "relay_event_refused",
                channel=self.channel,
                reason="no X-GitHub-Event header: the relay carries only the GitHub App's "
                "deliveries (Linear and Jira post to /webhooks/linear and /webhooks/jira)",
            )
            return None
        delivery_id = message.headers.get("x-github-delivery", "")[:_SHOWN]
        outcome = await self._store(message, delivery_id)
        RELAY_EVENTS.labels(outcome.label).inc()
        # Unverified header values: shortened, in case a stranger posted to the channel.
        fields: dict[str, Any] = {"delivery_id": delivery_id, "github_event": event[:_SHOWN]}
        if outcome.stored:
            log.info("relay_event", outcome=outcome.label, **fields)
        else:
            reason = outcome.answer.get("error")
            log.warning("relay_event", outcome=outcome.label, reason=reason, **fields)
        return outcome

    async def _store(self, message: ChannelMessage, delivery_id: str) -> Outcome:
        """`receive`, again and again while the store is unavailable (stopping gives up)."""
        attempt = 0
        try:
            while True:
                outcome = await receive(self.deps, "github", message.headers, message.body)
                if not outcome.unavailable:
                    return outcome
                delay = self.store_retry.delay(attempt)
                attempt += 1
                log.warning(
                    "relay_store_failed",
                    delivery_id=delivery_id,
                    attempt=attempt,
                    retry_in=round(delay, 2),
                )
                self._publish(last_error=f"delivery {delivery_id} not stored yet (database down?)")
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            # Stopped past the grace: say which delivery the channel will not send again.
            log.warning("relay_delivery_abandoned", delivery_id=delivery_id, attempts=attempt)
            raise

    def _publish(self, **changes: Any) -> None:
        """Change the status; the writer task takes it to Redis without holding the relay up."""
        self.status = dataclasses.replace(self.status, **changes)
        self._status_changed.set()

    async def _write_status_forever(self) -> None:
        while True:
            # Python 3.11's asyncio.timeout reports a cancellation that comes as it expires
            # as TimeoutError, which this loop ignores: without this it would never end.
            stop_if_cancelled()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.status_refresh):
                    await self._status_changed.wait()
            self._status_changed.clear()
            await self._write_status()

    async def _write_status(self) -> None:
        try:
            async with asyncio.timeout(STATUS_WRITE_TIMEOUT):
                await write_relay_status(self.deps.redis, self.status)
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._status_failing:  # once per outage, not every refresh
                log.warning("relay_status_not_written", error=type(exc).__name__)
            self._status_failing = True
        else:
            self._status_failing = False


def _now() -> datetime:
    return datetime.now(UTC)


def _since(loop: asyncio.AbstractEventLoop, opened: float | None) -> float:
    return 0.0 if opened is None else loop.time() - opened


def _describe(error: httpx.HTTPError) -> str:
    """A short reason for the log and the setup page (httpx names no credentials in these)."""
    detail = str(error).strip()
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__
