"""Notifications about the control plane (bot/engine/alerts.py): a registered runner whose
heartbeats stopped (`runner_offline`) is told once per outage, failing GitHub deliveries
(`deliveries_failing`) once an hour, however often the engine's cron looks
(tests/support/receivers.py plays the webhook endpoint)."""

from __future__ import annotations

import textwrap
import time
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import select

from adapters.base import CodeHost
from adapters.notify import webhook
from bot.config.control import ControlConfig, parse_control_config
from bot.deps import Deps
from bot.effects.notifications import lane, performers
from bot.effects.perform import perform_pending
from bot.engine.alerts import notice_failing_deliveries, notice_offline_runners
from bot.engine.context import Engine
from bot.tables.sync import RedeliveryRequest
from bot.tables.workflow import EffectStatus, OutboxEffect
from harness_store.db import transaction
from runner.contract import MACHINES_SET, machine_key
from runner.machine import MachineFacts
from tests.support.receivers import receivers

SECRET = "whsec-offline-not-real"


def engine_for(deps: Deps, url: str) -> Engine:
    text = textwrap.dedent(
        f"""\
        providers: {{x: {{cli: command, argv: [x]}}}}
        notifications:
          channels:
            ops: {{kind: webhook, url: "{url}/ops", secret: "${{SECRET}}"}}
            api: {{kind: webhook, url: "{url}/api", secret: "${{SECRET}}"}}
          rules:
            - {{events: [runner_offline, deliveries_failing], channels: [ops]}}
            - {{events: [runner_offline], channels: [api], repos: [acme/api]}}
        """
    )
    control = parse_control_config(text, file="control.yml", environ={"SECRET": SECRET})
    assert isinstance(control, ControlConfig), control
    return Engine(deps=deps, github=cast(CodeHost, object()), control=control)


async def register(deps: Deps, name: str, heartbeat_at: float) -> None:
    facts = MachineFacts(name=name, labels=[], capacity=1, hostname=f"{name}.example")
    facts.heartbeat_at = heartbeat_at
    await deps.redis.hset(machine_key(name), mapping=facts.to_redis())  # type: ignore[misc]  # redis-py's union return
    await deps.redis.sadd(MACHINES_SET, name)  # type: ignore[misc]  # redis-py's union return


async def test_a_runner_that_stopped_heartbeating_is_told_once_per_outage(deps: Deps) -> None:
    async with receivers() as got:
        engine = engine_for(deps, got.url)
        now = time.time()
        await register(deps, "m1", now - 20)  # missed its heartbeats: cut off or killed
        await register(deps, "m2", now - 2)  # fine

        assert await notice_offline_runners(engine, now=now) == 1
        assert await notice_offline_runners(engine, now=now + 3) == 0  # the same outage
        async with deps.sessions() as session:
            [effect] = (await session.scalars(select(OutboxEffect))).all()
        assert effect.installation_id == lane("ops")
        assert effect.ticket_id is None

        await perform_pending(
            deps,
            performers(lambda: engine.control.notifications),
            installations=[lane("ops")],
            github=cast(CodeHost, object()),
        )
        [request] = got.accepted("/ops")
        assert webhook.verify(SECRET, request.body, request.headers["x-openase-signature-256"])
        message = request.json()
        assert message["event"] == "runner_offline"
        assert message["ticket"] is None
        assert message["reason"] == (
            "runner m1 (m1.example): no heartbeat for 20 s (cut off or stopped)"
        )
        assert message["page_url"].endswith("/machines")
        assert got.tried("/api") == []  # a rule for one repository is not about runners

        # m2 stops cleanly (it leaves the registry); m1 comes back, then goes away again:
        # a new outage, told again.
        await deps.redis.delete(machine_key("m2"))
        await deps.redis.srem(MACHINES_SET, "m2")  # type: ignore[misc]  # redis-py's union return
        await register(deps, "m1", now + 60)
        assert await notice_offline_runners(engine, now=now + 65) == 0
        assert await notice_offline_runners(engine, now=now + 90) == 1
        async with deps.sessions() as session:
            statuses = (await session.scalars(select(OutboxEffect.status))).all()
        assert sorted(statuses) == [EffectStatus.DONE, EffectStatus.PENDING]


async def test_without_a_rule_for_it_nothing_is_sent(deps: Deps) -> None:
    engine = engine_for(deps, "http://127.0.0.1:9")
    quiet = engine.control.notifications.model_copy(update={"rules": ()})
    engine.control = engine.control.model_copy(update={"notifications": quiet})
    await register(deps, "m1", time.time() - 20)
    assert await notice_offline_runners(engine) == 0
    async with deps.sessions() as session:
        assert (await session.scalars(select(OutboxEffect))).all() == []


async def test_failing_deliveries_are_told_once_an_hour_while_they_last(deps: Deps) -> None:
    async with receivers() as got:
        engine = engine_for(deps, got.url)
        now = datetime(2026, 12, 6, 10, 20, tzinfo=UTC)
        assert await notice_failing_deliveries(engine, now=now) == 0  # none failed
        async with transaction(deps.sessions) as session:
            for index, ago in enumerate((3, 7, 50)):  # minutes; the last is long past
                session.add(
                    RedeliveryRequest(
                        guid=f"guid-{index}",
                        github_delivery_id=index,
                        event="issues",
                        delivered_at=now - timedelta(minutes=ago + 1),
                        asked_at=now - timedelta(minutes=ago),
                    )
                )

        assert await notice_failing_deliveries(engine, now=now) == 1
        assert await notice_failing_deliveries(engine, now=now + timedelta(minutes=5)) == 0
        await perform_pending(
            deps,
            performers(lambda: engine.control.notifications),
            installations=[lane("ops")],
            github=cast(CodeHost, object()),
        )
        [request] = got.accepted("/ops")
        message = request.json()
        assert message["event"] == "deliveries_failing"
        assert message["reason"].startswith(
            "GitHub failed to deliver 2 webhook(s) to OpenASE in the last 10 minutes "
            "(the latest failed at 2026-12-06 10:16:00 UTC)"
        )
        assert message["page_url"].endswith("/setup")
        # Still failing an hour later: told again; quiet for long enough: nothing.
        later = now + timedelta(hours=1)
        async with transaction(deps.sessions) as session:
            session.add(
                RedeliveryRequest(
                    guid="guid-later",
                    github_delivery_id=9,
                    event="issues",
                    delivered_at=later - timedelta(minutes=2),
                    asked_at=later - timedelta(minutes=1),
                )
            )
        assert await notice_failing_deliveries(engine, now=later) == 1
        assert await notice_failing_deliveries(engine, now=later + timedelta(hours=1)) == 0
