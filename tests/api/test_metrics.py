"""`/metrics`: the web process's counters plus the worker's, read from Redis at scrape time.

The web process's counters are process-wide, so tests compare before and after.
"""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from bot.deps import Deps
from bot.worker_metrics import LATENCY_BUCKETS, read_ingest, record_ingests
from tests.support.helpers import GitHubWebhookSender, github_example
from tests.support.outages import client_for, postgres_down, redis_down

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """Every sample by (name, labels), and every family's type by name."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples, types


async def scrape(client: httpx.AsyncClient) -> tuple[Samples, dict[str, str]]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_ingest_metrics_come_from_redis(client: httpx.AsyncClient, deps: Deps) -> None:
    await record_ingests(deps.redis, [("issues", "done", 0.003), ("issues", "done", 0.2)])
    await record_ingests(deps.redis, [("issues", "failed", 7.0), ("ping", "ignored", 100.0)])

    samples, types = await scrape(client)
    assert types["openase_ingest"] == "counter"
    assert types["openase_ingest_latency_seconds"] == "histogram"
    total = "openase_ingest_total"
    assert value(samples, total, event="issues", outcome="done") == 2
    assert value(samples, total, event="issues", outcome="failed") == 1
    assert value(samples, total, event="ping", outcome="ignored") == 1

    bucket = "openase_ingest_latency_seconds_bucket"
    expected = {0.005: 1, 0.1: 1, 0.25: 2, 5.0: 2, 10.0: 3, 60.0: 3}
    for bound, count in expected.items():
        assert value(samples, bucket, le=str(bound)) == count, bound
    assert value(samples, bucket, le="+Inf") == 4
    assert value(samples, "openase_ingest_latency_seconds_count") == 4
    assert value(samples, "openase_ingest_latency_seconds_sum") == pytest.approx(107.203)
    # Cumulative: every bucket holds at least what the one below it holds.
    counts = [value(samples, bucket, le=str(b)) for b in LATENCY_BUCKETS]
    assert counts == sorted(counts)
    assert value(samples, "openase_metrics_source_up", source="redis") == 1


async def test_empty_histogram_is_still_well_formed(client: httpx.AsyncClient, deps: Deps) -> None:
    snapshot = await read_ingest(deps.redis)
    assert (snapshot.counts, snapshot.count, snapshot.sum) == ({}, 0.0, 0.0)
    samples, _ = await scrape(client)
    bucket = "openase_ingest_latency_seconds_bucket"
    assert [value(samples, bucket, le=str(b)) for b in LATENCY_BUCKETS] == [0.0] * len(
        LATENCY_BUCKETS
    )
    assert ("openase_ingest_latency_seconds_bucket", frozenset({("le", "+Inf")})) in samples
    assert value(samples, "openase_ingest_latency_seconds_count") == 0


async def test_webhook_deliveries_and_pending_gauge(
    client: httpx.AsyncClient, github: GitHubWebhookSender
) -> None:
    before, _ = await scrape(client)
    assert value(before, "openase_deliveries_pending") == 0
    assert value(before, "openase_deliveries_oldest_pending_age_seconds") == 0

    assert (await github.send("issues", github_example("issues", "opened"))).status_code == 202
    assert (await github.send("ping", github_example("ping"))).status_code == 200
    unsigned = await github.send("issues", b"{}", headers={"X-Hub-Signature-256": "sha256=00"})
    assert unsigned.status_code == 401

    after, _ = await scrape(client)
    deliveries = "openase_webhook_deliveries_total"
    for event, outcome in [("issues", "accepted"), ("ping", "pong"), ("issues", "bad_signature")]:
        labels = {"source": "github", "event": event, "outcome": outcome}
        assert value(after, deliveries, **labels) - value(before, deliveries, **labels) == 1
    acks = "openase_webhook_ack_seconds_count"
    assert value(after, acks, source="github") - value(before, acks, source="github") == 3
    # The ping is stored as ignored; only the issue waits for the (absent) worker.
    assert value(after, "openase_deliveries_pending") == 1
    assert value(after, "openase_deliveries_oldest_pending_age_seconds") >= 0
    assert value(after, "openase_metrics_source_up", source="postgres") == 1


async def test_metrics_answer_without_redis(deps: Deps) -> None:
    await record_ingests(deps.redis, [("issues", "done", 0.1)])
    async with redis_down(deps) as broken, client_for(broken) as http:
        samples, types = await scrape(http)
    assert value(samples, "openase_metrics_source_up", source="redis") == 0
    assert "openase_ingest" not in types
    assert "openase_ingest_latency_seconds" not in types
    # What the process knows by itself is still there.
    assert "openase_webhook_deliveries" in types
    assert ("openase_deliveries_pending", frozenset()) in samples


async def test_metrics_answer_without_postgres(deps: Deps) -> None:
    await record_ingests(deps.redis, [("issues", "done", 0.1)])
    async with postgres_down(deps) as broken, client_for(broken) as http:
        samples, types = await scrape(http)
    assert value(samples, "openase_metrics_source_up", source="postgres") == 0
    assert "openase_deliveries_pending" not in types
    assert value(samples, "openase_ingest_total", event="issues", outcome="done") == 1


async def test_record_ingests_tolerates_redis_down(deps: Deps) -> None:
    async with redis_down(deps) as broken:
        await record_ingests(broken.redis, [("issues", "done", 0.1)])
    assert (await read_ingest(deps.redis)).count == 0
