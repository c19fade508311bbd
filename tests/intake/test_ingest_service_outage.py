"""A delivery whose handling reads from GitHub while GitHub fails (issue #19): it waits,
pending, without using up its attempts, however long the outage lasts, and is applied once
GitHub answers; through the whole engine (tests/support/lifecycle.py) minus the worker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from bot.engine import context
from bot.engine.jobs import WorkflowReactor
from bot.intake.ingest import MAX_ATTEMPTS, WAITING, ingest_batch, ingest_delivery
from bot.processes.worker import COMMANDS
from bot.tables.mirror import Delivery
from tests.conftest import OpenWorld
from tests.support.lifecycle import World


async def _last_delivery(w: World) -> Delivery:
    async with w.deps.sessions() as session:
        row = await session.scalar(select(Delivery).order_by(Delivery.id.desc()).limit(1))
    assert row is not None
    return row


async def test_a_delivery_waits_for_a_failing_github_without_using_its_attempts(
    open_world: OpenWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(context, "HEAD_TTL_SECONDS", 0)  # every delivery reads the config
    async with open_world(runners=0, workers=0) as w:
        w.deps.workflow = WorkflowReactor(w.engine, COMMANDS)
        w.add_issue(5, "Soon", "add PASS")
        await w.label(5, "openase")  # GitHub answers: the ticket gets its state
        assert await ingest_delivery(w.deps, (await _last_delivery(w)).id) == "done"

        for _ in range(100):
            w.fake.queue(502, {"message": "Bad Gateway"}, path_regex=r".*/git/ref/heads/.*")
        await w.label(5, "bug")
        waiting = (await _last_delivery(w)).id
        with capture_logs() as logs:
            assert [done.status for done in await ingest_batch(w.deps)] == [WAITING]
            for _ in range(MAX_ATTEMPTS + 2):  # more tries than a failing delivery gets
                assert await ingest_delivery(w.deps, waiting) == WAITING
        row = await _last_delivery(w)
        assert (row.id, row.status, row.attempts) == (waiting, "pending", 0)
        assert row.retry_at is not None
        assert row.retry_at > datetime.now(UTC)
        assert await ingest_batch(w.deps) == []  # held back until then: no worker claims it
        said = [line["event"] for line in logs if line["log_level"] in ("warning", "error")]
        assert said == ["service_unavailable"]  # once, however many tries

        w.fake.queued.clear()  # GitHub is back
        with capture_logs() as logs:
            assert await ingest_delivery(w.deps, waiting) == "done"
        assert "service_back" in [line["event"] for line in logs]
