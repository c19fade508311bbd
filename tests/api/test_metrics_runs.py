"""`/metrics` on runs, runners, queues, the outbox, tokens, cost and tickets' lead time
(bot.api.run_metrics), and the Grafana dashboard in deploy/grafana, whose every query names
a metric we expose."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from bot import metrics
from bot.api import run_metrics
from bot.deps import Deps
from bot.metrics import MetricsSource
from bot.tables.workflow import EffectStatus, OutboxEffect, Run, RunState
from harness_store.db import transaction
from runner.contract import MACHINES_SET, machine_key, run_queue
from runner.machine import MachineFacts
from tests.api.test_metrics import parse, scrape, value
from tests.support.board import add_ticket
from tests.support.outages import client_for, postgres_down, redis_down
from tests.support.run_streams import T0

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "openase.json"


def a_run(
    run_id: str,
    ticket_id: int,
    state: RunState,
    *,
    status: str | None = None,
    minutes: float | None = None,
    usage: dict[str, int] | None = None,
    cost: float | None = None,
) -> Run:
    finished = T0 + timedelta(minutes=minutes) if minutes is not None else None
    return Run(
        id=run_id,
        ticket_id=ticket_id,
        workflow="coder",
        attempt=1,
        machine="m1",
        state=state,
        status=status,
        spec={},
        result={"usage": usage} if usage is not None else None,
        cost_usd=cost,
        queued_at=T0,
        started_at=T0 if state != RunState.QUEUED else None,
        finished_at=finished,
    )


async def seed(deps: Deps) -> None:
    ticket = await add_ticket(deps, "acme/api#1")
    async with transaction(deps.sessions) as session:
        usage = {"input_tokens": 100, "output_tokens": 20, "cache_read_tokens": 5}
        session.add_all(
            [
                a_run("q", ticket, RunState.QUEUED),
                a_run("r", ticket, RunState.RUNNING),
                a_run(
                    "s1",
                    ticket,
                    RunState.FINISHED,
                    status="succeeded",
                    minutes=3,
                    usage=usage,
                    cost=0.25,
                ),
                a_run(
                    "s2",
                    ticket,
                    RunState.FINISHED,
                    status="succeeded",
                    minutes=20,
                    usage={"input_tokens": 1, "cache_write_tokens": 7},
                    cost=1.0,
                ),
                a_run("g", ticket, RunState.FINISHED, status="gates_failed", minutes=200),
                a_run("l", ticket, RunState.LOST),
            ]
        )
        for n, status in enumerate(["pending", "pending", "failed", "done"]):
            session.add(
                OutboxEffect(
                    key=f"e{n}",
                    kind="comment",
                    payload={},
                    status=EffectStatus(status),
                    created_at=T0,
                )
            )
    for name, running, age in (("m1", 1, 0.0), ("m2", 0, 3600.0)):
        facts = MachineFacts(name=name, labels=[], capacity=2, running=running)
        facts.heartbeat_at = time.time() - age
        await deps.redis.hset(machine_key(name), mapping=facts.to_redis())  # type: ignore[misc]  # redis-py's union return
        await deps.redis.sadd(MACHINES_SET, name)  # type: ignore[misc]
    await deps.redis.zadd(run_queue("m1"), {"job-a": 1.0, "job-b": 2.0})


async def test_a_scrape_counts_runs_runners_queues_and_the_outbox(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    await seed(deps)
    samples, types = await scrape(client)

    assert types["openase_runs_finished"] == "counter"
    assert value(samples, "openase_runs_finished_total", outcome="succeeded") == 2
    assert value(samples, "openase_runs_finished_total", outcome="gates_failed") == 1
    assert value(samples, "openase_runs_finished_total", outcome="lost") == 1
    assert value(samples, "openase_runs_active", state="queued") == 1
    assert value(samples, "openase_runs_active", state="running") == 1

    assert types["openase_run_duration_seconds"] == "histogram"
    bucket = "openase_run_duration_seconds_bucket"
    assert value(samples, bucket, le="60.0") == 0
    assert value(samples, bucket, le="300.0") == 1  # 3 minutes
    assert value(samples, bucket, le="1800.0") == 2  # 20 minutes
    assert value(samples, bucket, le="7200.0") == 2
    assert value(samples, bucket, le="14400.0") == 3  # 200 minutes
    assert value(samples, bucket, le="+Inf") == 3
    assert value(samples, "openase_run_duration_seconds_count") == 3
    assert value(samples, "openase_run_duration_seconds_sum") == pytest.approx(223 * 60)

    tokens = "openase_run_tokens_total"
    assert value(samples, tokens, kind="input") == 101
    assert value(samples, tokens, kind="output") == 20
    assert value(samples, tokens, kind="cache_read") == 5
    assert value(samples, tokens, kind="cache_write") == 7
    assert value(samples, "openase_run_cost_usd_total") == pytest.approx(1.25)

    assert value(samples, "openase_outbox_effects", status="pending") == 2
    assert value(samples, "openase_outbox_effects", status="failed") == 1
    assert value(samples, "openase_outbox_oldest_pending_age_seconds") > 0

    assert value(samples, "openase_runners_online") == 1  # m2's heartbeat is an hour old
    assert value(samples, "openase_runner_slots", machine="m1", kind="capacity") == 2
    assert value(samples, "openase_runner_slots", machine="m1", kind="running") == 1
    assert value(samples, "openase_run_queue_depth", machine="m1") == 2
    assert value(samples, "openase_run_queue_depth", machine="m2") == 0
    assert value(samples, "openase_metrics_source_up", source="runs") == 1
    assert value(samples, "openase_metrics_source_up", source="runners") == 1
    # Low cardinality: no ticket or run ever becomes a label.
    labels = {
        label for (name, pairs) in samples if name.startswith("openase_") for label, _ in pairs
    }
    assert labels <= {"source", "event", "outcome", "state", "le", "kind", "status", "machine"}


async def test_lead_times_are_histograms_of_the_tickets_moments(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    minute, hour, day = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
    # (PR after, done after) the trigger label: 20 min and 3 h; 5 h and 2 days; a PR after
    # 10 days still open; one labelled and nothing more; one in the backlog.
    for n, (to_pr, to_done) in enumerate(
        [(20 * minute, 3 * hour), (5 * hour, 2 * day), (10 * day, None), (None, None)]
    ):
        await add_ticket(
            deps,
            f"acme/api#{n + 10}",
            state="in_review",
            labelled_at=T0,
            pr_at=T0 + to_pr if to_pr else None,
            done_at=T0 + to_done if to_done else None,
        )
    await add_ticket(deps, "acme/api#20", state="backlog")
    samples, types = await scrape(client)

    assert types["openase_lead_time_to_pr_seconds"] == "histogram"
    pr = "openase_lead_time_to_pr_seconds"
    assert [
        value(samples, f"{pr}_bucket", le=le)
        for le in ("900.0", "1800.0", "14400.0", "28800.0", "604800.0", "+Inf")
    ] == [0, 1, 1, 2, 2, 3]
    assert value(samples, f"{pr}_count") == 3
    assert value(samples, f"{pr}_sum") == pytest.approx((20 * 60) + (5 * 3600) + (10 * 86400))

    assert types["openase_lead_time_to_merge_seconds"] == "histogram"
    merge = "openase_lead_time_to_merge_seconds"
    assert [
        value(samples, f"{merge}_bucket", le=le)
        for le in ("7200.0", "14400.0", "86400.0", "172800.0", "259200.0", "+Inf")
    ] == [0, 1, 1, 2, 2, 2]
    assert value(samples, f"{merge}_count") == 2
    assert value(samples, f"{merge}_sum") == pytest.approx(3 * 3600 + 2 * 86400)


async def test_an_empty_database_still_gives_every_family(
    client: httpx.AsyncClient,
) -> None:
    samples, types = await scrape(client)
    assert value(samples, "openase_run_duration_seconds_count") == 0
    assert value(samples, "openase_lead_time_to_pr_seconds_count") == 0
    assert value(samples, "openase_lead_time_to_merge_seconds_bucket", le="+Inf") == 0
    assert value(samples, "openase_run_cost_usd_total") == 0
    assert value(samples, "openase_outbox_effects", status="pending") == 0
    assert value(samples, "openase_runners_online") == 0
    assert "openase_runs_finished" in types


async def test_without_postgres_the_runners_are_still_scraped(deps: Deps) -> None:
    await seed(deps)
    async with postgres_down(deps) as broken, client_for(broken) as http:
        samples, types = await scrape(http)
    assert value(samples, "openase_metrics_source_up", source="runs") == 0
    assert "openase_runs_finished" not in types
    assert "openase_outbox_effects" not in types
    assert value(samples, "openase_metrics_source_up", source="runners") == 1
    assert value(samples, "openase_run_queue_depth", machine="m1") == 2


async def test_without_redis_the_runs_are_still_scraped(deps: Deps) -> None:
    await seed(deps)
    async with redis_down(deps) as broken, client_for(broken) as http:
        samples, types = await scrape(http)
    assert value(samples, "openase_metrics_source_up", source="runners") == 0
    assert "openase_run_queue_depth" not in types
    assert value(samples, "openase_runs_finished_total", outcome="succeeded") == 2


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(openase_[a-z0-9_]+)", expr))


def test_the_dashboard_is_importable_grafana_json() -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    [source] = dashboard["__inputs"]
    assert source["name"] == "DS_PROMETHEUS"
    assert (source["type"], source["pluginId"]) == ("datasource", "prometheus")
    assert dashboard["uid"] == "openase"
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert metric_names(target["expr"]), target["expr"]


async def test_every_dashboard_query_names_an_exposed_metric(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    await seed(deps)
    response = await client.get("/metrics")
    # A family's samples, or (a labelled counter nothing has counted yet) its declared names.
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    exposed: set[str] = set()
    for family in text_string_to_metric_families(response.text):
        exposed |= {sample.name for sample in family.samples}
        exposed |= {family.name + end for end in suffixes.get(family.type, ("",))}
    dashboard = json.loads(DASHBOARD.read_text())
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in metric_names(target["expr"])
    }
    assert asked
    assert asked - exposed == set()


async def test_a_slow_source_is_left_out_not_waited_for(deps: Deps) -> None:
    async def slow(_: Deps) -> list[Metric]:
        await asyncio.sleep(30)
        return []

    started = time.monotonic()
    text = await metrics.scrape(
        deps, time_limit=0.2, sources=(MetricsSource("slow", slow), *run_metrics.SOURCES)
    )
    assert time.monotonic() - started < 5
    samples, _ = parse(text.decode())
    assert value(samples, "openase_metrics_source_up", source="slow") == 0
    assert value(samples, "openase_metrics_source_up", source="runs") == 1
