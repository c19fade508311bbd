"""The webhook relay against a fake smee.io channel on 127.0.0.1 (tests/fakes/smee_channel.py):
relayed deliveries go through the same intake as a direct POST (verified, stored once,
enqueued), forged ones are refused, a lost channel is reconnected, and a delivery that
arrives while PostgreSQL is away is stored once it is back."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from prometheus_client import REGISTRY
from pydantic import AnyHttpUrl
from sqlalchemy import select
from structlog.testing import capture_logs

from adapters.github.verify import sign
from bot.deps import Deps
from bot.intake.relay import WebhookRelay
from bot.intake.relay_status import read_relay_status
from bot.processes.control_plane import run_control_plane
from bot.processes.lifecycle import Shutdown
from bot.servers.outages import Backoff
from bot.servers.services import ServiceUrls
from bot.settings import Settings
from bot.tables.mirror import Delivery
from tests.conftest import Services
from tests.fakes.smee_channel import WAIT, FakeSmeeChannel, github_body, javascript_json
from tests.support.deliveries import queued_deliveries
from tests.support.helpers import TEST_WEBHOOK_SECRET, GitHubWebhookSender, github_example
from tests.support.outages import redis_down

FAST = Backoff(first=0.02, cap=0.1)
Logs = list[MutableMapping[str, Any]]


def _relay(deps: Deps, channel: FakeSmeeChannel, **options: Any) -> WebhookRelay:
    options = {"reconnect": FAST, "store_retry": FAST, **options}
    return WebhookRelay(deps, channel.url, **options)


@asynccontextmanager
async def _running(relay: WebhookRelay) -> AsyncIterator[WebhookRelay]:
    task = relay.start()
    try:
        yield relay
    finally:
        await relay.stop(2.0)
    if not task.cancelled():
        task.result()  # a relay that died of an exception fails the test with it


def _delivery(
    event: str = "issues",
    payload: dict[str, Any] | None = None,
    *,
    delivery_id: str | None = None,
    secret: str = TEST_WEBHOOK_SECRET,
) -> tuple[dict[str, str], bytes]:
    """The headers and body GitHub POSTs to the channel, as smee.io (behind its proxy) has them."""
    body = github_body(payload if payload is not None else github_example("issues", "opened"))
    headers = {
        "host": "smee.io",
        "accept": "*/*",
        "content-type": "application/json",
        "user-agent": "GitHub-Hookshot/8e03811",
        "x-github-delivery": delivery_id or str(uuid.uuid4()),
        "x-github-event": event,
        "x-github-hook-id": "512345678",
        "x-github-hook-installation-target-id": "4242",
        "x-github-hook-installation-target-type": "integration",
        "x-hub-signature-256": sign(secret.encode(), body),
        "x-forwarded-for": "140.82.115.114",
        "x-forwarded-proto": "https",
    }
    return headers, body


async def _until(condition: Callable[[], bool | Awaitable[bool]]) -> None:
    async with asyncio.timeout(WAIT):
        while True:
            met = condition()
            if await met if inspect.isawaitable(met) else met:
                return
            await asyncio.sleep(0.01)


async def _stored(deps: Deps) -> list[Delivery]:
    async with deps.sessions() as session:
        return list((await session.execute(select(Delivery).order_by(Delivery.id))).scalars())


def _stored_count(deps: Deps, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(await _stored(deps)) == count

    return check


def _named(logs: Logs, event: str) -> Logs:
    return [line for line in logs if line["event"] == event]


def _relay_events(outcome: str) -> float:
    return REGISTRY.get_sample_value("openase_relay_events_total", {"outcome": outcome}) or 0.0


def _deliveries_counted(outcome: str) -> float:
    labels = {"source": "github", "event": "issues", "outcome": outcome}
    return REGISTRY.get_sample_value("openase_webhook_deliveries_total", labels) or 0.0


async def _connected(relay: WebhookRelay, channel: FakeSmeeChannel, connections: int = 1) -> None:
    """Until the relay reads the channel's stream (its `connections`-th connection)."""
    await channel.wait_for_listener(connections)
    await _until(lambda: relay.status.state == "connected")


async def test_a_relayed_delivery_is_stored_once_and_its_ingest_enqueued(deps: Deps) -> None:
    payload = github_example("issues", "opened")
    headers, body = _delivery(payload=payload, delivery_id="relay-d-1")
    accepted = _relay_events("accepted")
    direct = _deliveries_counted("accepted")
    async with FakeSmeeChannel() as channel, _running(_relay(deps, channel)) as relay:
        await _connected(relay, channel)
        with capture_logs() as logs:
            channel.post(headers, body)
            await _until(lambda: relay.status.events_stored == 1)

    [row] = await _stored(deps)
    assert (row.source, row.delivery_id, row.event, row.action) == (
        "github",
        "relay-d-1",
        "issues",
        "opened",
    )
    assert row.payload == payload
    assert await queued_deliveries(deps) == [row.id]
    [line] = _named(logs, "relay_event")
    assert (line["outcome"], line["delivery_id"], line["github_event"]) == (
        "accepted",
        "relay-d-1",
        "issues",
    )
    assert _relay_events("accepted") == accepted + 1
    # The same counter as a direct delivery: it went through the same intake.
    assert _deliveries_counted("accepted") == direct + 1


async def test_a_delivery_relayed_twice_or_also_posted_directly_is_stored_once(
    deps: Deps, github: GitHubWebhookSender
) -> None:
    headers, body = _delivery(delivery_id="same-guid")
    async with FakeSmeeChannel() as channel, _running(_relay(deps, channel)):
        await channel.wait_for_listener()
        with capture_logs() as logs:
            channel.post(headers, body)
            channel.post(headers, body)
            await _until(lambda: len(_named(logs, "relay_event")) == 2)
        direct = await github.send("issues", body, delivery_id="same-guid")

    assert [line["outcome"] for line in _named(logs, "relay_event")] == ["accepted", "duplicate"]
    assert direct.json() == {"status": "duplicate"}
    assert [row.delivery_id for row in await _stored(deps)] == ["same-guid"]
    assert len(await queued_deliveries(deps)) == 1


async def test_a_forged_delivery_is_refused_unstored_and_the_relay_goes_on(deps: Deps) -> None:
    forged_headers, forged_body = _delivery(delivery_id="forged", secret="not-the-secret")
    good_headers, good_body = _delivery(delivery_id="genuine")
    async with FakeSmeeChannel() as channel, _running(_relay(deps, channel)) as relay:
        await channel.wait_for_listener()
        with capture_logs() as logs:
            channel.post(forged_headers, forged_body)
            channel.post(good_headers, good_body)
            await _until(lambda: relay.status.events_stored == 1)

    assert [row.delivery_id for row in await _stored(deps)] == ["genuine"]
    outcomes = [(line["delivery_id"], line["outcome"]) for line in _named(logs, "relay_event")]
    assert outcomes == [("forged", "bad_signature"), ("genuine", "accepted")]
    assert "X-Hub-Signature-256" in _named(logs, "relay_event")[0]["reason"]
    signatures = {forged_headers["x-hub-signature-256"], good_headers["x-hub-signature-256"]}
    assert not any(
        signature.removeprefix("sha256=") in repr(line) for line in logs for signature in signatures
    ), "a signature was logged"
    assert TEST_WEBHOOK_SECRET not in repr(logs)


async def test_non_ascii_and_escaped_characters_keep_their_signature(deps: Deps) -> None:
    payload = github_example("issues", "opened")
    payload["issue"]["title"] = "Café ☃ 🚀 — naïve\u2028line\u2029para"
    payload["issue"]["body"] = 'ESC \x1b[1mbold\x1b[0m "quoted" back\\slash tab\t/ <b>&amp;</b>'
    headers, body = _delivery(payload=payload, delivery_id="unicode")
    # What the channel carries is JavaScript's text, not GitHub's bytes: the relay rebuilds them.
    assert b"\\u001B" in body
    assert javascript_json(body).encode() != body
    async with FakeSmeeChannel() as channel, _running(_relay(deps, channel)) as relay:
        await channel.wait_for_listener()
        channel.post(headers, body)
        await _until(lambda: relay.status.events_stored == 1)

    [row] = await _stored(deps)
    assert row.payload == payload


async def test_after_the_channel_drops_the_relay_reconnects_and_receives_the_next(
    deps: Deps,
) -> None:
    reconnects = REGISTRY.get_sample_value("openase_relay_reconnects_total") or 0.0
    async with FakeSmeeChannel() as channel, _running(_relay(deps, channel)) as relay:
        await _connected(relay, channel)
        with capture_logs() as logs:
            channel.post(*_delivery(delivery_id="before-the-drop"))
            await _until(lambda: relay.status.events_stored == 1)
            channel.drop()
            await _until(lambda: relay.status.state == "reconnecting")
            await _connected(relay, channel, connections=2)
            channel.post(*_delivery(delivery_id="after-the-drop"))
            await _until(lambda: relay.status.events_stored == 2)

    assert [row.delivery_id for row in await _stored(deps)] == ["before-the-drop", "after-the-drop"]
    [lost] = _named(logs, "relay_disconnected")
    assert lost["reason"]
    assert 0 < lost["retry_in"] <= FAST.cap
    assert len(_named(logs, "relay_connected")) == 1  # the reconnection (the first was earlier)
    # The id of the last event seen (0 was `ready`, 1 the delivery) goes back to the server.
    assert "last-event-id" not in channel.requests[0]
    assert channel.requests[1]["last-event-id"] == "1"
    assert channel.requests[1]["accept"] == "text/event-stream"
    assert REGISTRY.get_sample_value("openase_relay_reconnects_total") == reconnects + 1


async def test_a_silent_channel_is_given_up_after_the_read_timeout_and_reopened(
    deps: Deps,
) -> None:
    async with FakeSmeeChannel() as channel:
        relay = _relay(deps, channel, read_timeout=0.5)
        async with _running(relay):
            await _connected(relay, channel)
            # Keep-alive pings more often than the timeout: the connection stays.
            for _ in range(6):
                await asyncio.sleep(0.1)
                channel.ping()
            assert len(channel.requests) == 1
            with capture_logs() as logs:
                await channel.wait_for_listener(connections=2)  # silence: reopened

    [lost] = _named(logs, "relay_disconnected")
    assert lost["reason"] == "nothing from the channel for 0.5 s"


async def test_a_delivery_that_arrives_while_postgres_is_down_is_stored_once_it_is_back(
    deps: Deps,
) -> None:
    down = await asyncpg.create_pool("postgresql://openase@127.0.0.1:1/openase", min_size=0)
    relay_deps = dataclasses.replace(deps, intake=down)
    try:
        async with FakeSmeeChannel() as channel, _running(_relay(relay_deps, channel)) as relay:
            await channel.wait_for_listener()
            with capture_logs() as logs:
                channel.post(*_delivery(delivery_id="first"))
                channel.post(*_delivery(delivery_id="second"))
                await _until(lambda: len(_named(logs, "relay_store_failed")) >= 3)
                assert await _stored(deps) == []
                assert relay.status.last_error == "delivery first not stored yet (database down?)"
                relay_deps.intake = deps.intake  # PostgreSQL is back
                await _until(lambda: relay.status.events_stored == 2)
    finally:
        await down.close()

    # Kept in the order the channel sent them, each stored once.
    assert [row.delivery_id for row in await _stored(deps)] == ["first", "second"]
    assert {line["delivery_id"] for line in _named(logs, "relay_store_failed")} == {"first"}
    assert len(await queued_deliveries(deps)) == 2


async def test_stopping_past_the_grace_names_the_delivery_it_could_not_store(
    deps: Deps,
) -> None:
    down = await asyncpg.create_pool("postgresql://openase@127.0.0.1:1/openase", min_size=0)
    try:
        async with FakeSmeeChannel() as channel:
            relay = _relay(dataclasses.replace(deps, intake=down), channel)
            task = relay.start()
            await _connected(relay, channel)
            with capture_logs() as logs:
                channel.post(*_delivery(delivery_id="in-hand"))
                await _until(lambda: bool(_named(logs, "relay_store_failed")))
                async with asyncio.timeout(WAIT):
                    await relay.stop(grace=0.1)
    finally:
        await down.close()

    assert task.cancelled()
    [abandoned] = _named(logs, "relay_delivery_abandoned")
    assert abandoned["delivery_id"] == "in-hand"
    assert await _stored(deps) == []


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(first=1.0, cap=60.0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (5, 32.0), (6, 60.0), (500, 60.0)]:
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1  # jittered


async def test_with_redis_down_the_relay_still_stores_and_queues(
    deps: Deps,
) -> None:
    async with redis_down(deps) as no_redis, FakeSmeeChannel() as channel:
        with capture_logs() as logs:
            async with _running(_relay(no_redis, channel)) as relay:
                await channel.wait_for_listener()
                channel.post(*_delivery(delivery_id="redis-down"))
                await _until(lambda: relay.status.events_stored == 1)

    assert [row.delivery_id for row in await _stored(deps)] == ["redis-down"]
    assert [row.status for row in await _stored(deps)] == ["pending"]
    assert len(await queued_deliveries(deps)) == 1  # queued in Postgres: no Redis needed
    # Only the relay's status (shown on the setup page) needs Redis: said once, not each write.
    assert len(_named(logs, "relay_status_not_written")) == 1


async def test_what_is_not_a_github_delivery_is_refused_and_logged(deps: Deps) -> None:
    linear = {
        "host": "smee.io",
        "content-type": "application/json",
        "linear-delivery": str(uuid.uuid4()),
        "linear-event": "Issue",
        "linear-signature": "0" * 64,
    }
    not_github = _relay_events("not_github")
    async with FakeSmeeChannel() as channel, _running(_relay(deps, channel)) as relay:
        await channel.wait_for_listener()
        with capture_logs() as logs:
            channel.post(linear, b'{"type":"Issue","action":"create"}')
            channel.message('{"host":"smee.io","x-github-event":"issues"}')  # no body
            channel.message("not json")
            channel.post(*_delivery(delivery_id="after-the-noise"))
            await _until(lambda: relay.status.events_stored == 1)

    assert [row.delivery_id for row in await _stored(deps)] == ["after-the-noise"]
    reasons = [line["reason"] for line in _named(logs, "relay_event_refused")]
    assert len(reasons) == 3
    assert "carries only the GitHub App's deliveries" in reasons[0]
    assert reasons[1] == "the message has no body"
    assert reasons[2].startswith("not a JSON object")
    assert _relay_events("not_github") == not_github + 1


async def test_a_url_that_is_no_event_stream_is_reported_and_tried_again(deps: Deps) -> None:
    async with FakeSmeeChannel() as channel:
        relay = WebhookRelay(deps, channel.url + "-typo", reconnect=FAST)
        with capture_logs() as logs:
            async with _running(relay):
                await _until(lambda: len(_named(logs, "relay_disconnected")) >= 2)

    assert _named(logs, "relay_connected") == []
    assert _named(logs, "relay_disconnected")[0]["reason"] == "the channel answered text/html"
    assert relay.status.state == "reconnecting"
    assert relay.status.last_error == "the channel answered text/html"


async def test_the_setup_page_reads_the_relays_state_from_redis(deps: Deps) -> None:
    assert await read_relay_status(deps.redis) is None
    async with FakeSmeeChannel() as channel:
        relay = _relay(deps, channel, reconnect=Backoff(first=30.0, cap=30.0))
        async with _running(relay):
            await _connected(relay, channel)
            channel.post(*_delivery())
            await _until(lambda: relay.status.events_stored == 1)

            async def shown(state: str) -> bool:
                status = await read_relay_status(deps.redis)
                return status is not None and status.state == state and status.events_stored == 1

            await _until(lambda: shown("connected"))
            connected = await read_relay_status(deps.redis)
            assert connected is not None
            assert connected.channel == channel.url
            assert connected.connected_since is not None
            assert connected.last_event_at is not None
            assert connected.last_error is None

            channel.drop()
            await _until(lambda: shown("reconnecting"))
            lost = await read_relay_status(deps.redis)
            assert lost is not None
            assert lost.connected_since is None
            assert lost.last_error
            assert lost.next_retry_at is not None
            assert lost.next_retry_at > datetime.now(UTC)
            assert 0 < await deps.redis.ttl("openase:relay:status") <= 90
    assert await read_relay_status(deps.redis) is None  # stopped: nothing to show


async def test_serve_runs_the_relay_with_the_web_and_stops_it_first(
    deps: Deps, settings: Settings, services: Services
) -> None:
    shutdown = Shutdown()
    async with FakeSmeeChannel() as channel:
        relayed = settings.model_copy(
            update={"webhook_proxy_url": AnyHttpUrl(channel.url), "host": "127.0.0.1", "port": 0}
        )
        urls = ServiceUrls(database_url=services.database_url, redis_url=services.redis_url)
        with capture_logs() as logs:
            serving = asyncio.create_task(
                run_control_plane(relayed, urls, shutdown, web=True, worker=False)
            )
            await channel.wait_for_listener()
            channel.post(*_delivery(delivery_id="through-serve"))
            await _until(_stored_count(deps, 1))
            shutdown.requested.set()
            assert await serving == 0
        assert channel.listeners == 0

    assert [row.delivery_id for row in await _stored(deps)] == ["through-serve"]
    order = [line["event"] for line in logs if line["event"] in {"relay_stopped", "stopped"}]
    assert order == ["relay_stopped", "stopped"]
    assert await read_relay_status(deps.redis) is None
