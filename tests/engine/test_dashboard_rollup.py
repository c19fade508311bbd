"""The metrics dashboard's rollups (bot/tables/stats.py) are counted by the engine in the
transaction that takes a run's result or declares it lost: once per run, under the day it
was queued and what the dashboard filters on, and exactly as the migration's backfill
(`rebuild`) counts the same runs from `runs`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot.deps import Deps
from bot.engine.context import Engine
from bot.engine.results import finish_run
from bot.registry import TrackerClients
from bot.tables.stats import rebuild
from bot.tables.workflow import Run, RunState
from harness_store.db import transaction
from harness_store.store import publish_harness
from runner.contract import HookResult, RunResult, RunStatus
from tests.support.board import add_repo, add_ticket
from tests.support.lifecycle import control_config
from tests.support.run_streams import T0

TABLES = {
    "run_stats_daily": "day, repository_id, workflow, provider, harness_version_id, outcome",
    "run_totals_daily": "day, outcome",
    "gate_failures_daily": "day, repository_id, workflow, provider, harness_version_id, hook",
    "ticket_run_kinds": "ticket_id, workflow, provider, harness_version_id",
    "ticket_run_totals": "ticket_id",
}


@pytest.fixture
def engine(deps: Deps, tmp_path: Path) -> Engine:
    return Engine(
        deps=deps,
        github=deps.github_app(),
        control=control_config(tmp_path / "agent.py"),
        trackers=TrackerClients(),
    )


async def queued(
    deps: Deps, run_id: str, ticket: int, hours: int, version: int | None, **spec: Any
) -> None:
    async with transaction(deps.sessions) as session:
        session.add(
            Run(
                id=run_id,
                ticket_id=ticket,
                workflow="coder",
                attempt=1,
                state=RunState.RUNNING,
                spec=spec,
                harness_version_id=version,
                queued_at=T0 + timedelta(hours=hours),
            )
        )


def hook(name: str, exit_code: int | None, on_failure: str = "block") -> HookResult:
    return HookResult.model_validate(
        {
            "phase": "on_complete",
            "name": name,
            "on_failure": on_failure,
            "exit_code": exit_code,
            "timed_out": exit_code is None,
            "duration_s": 1.0,
        }
    )


def result(run_id: str, status: RunStatus, cost: float, *hooks: HookResult) -> RunResult:
    return RunResult(
        run_id=run_id,
        status=status,
        hook_results=hooks,
        cost_usd=cost,
        started_at=T0,
        finished_at=T0 + timedelta(hours=30),
    )


async def rollups(deps: Deps) -> dict[str, list[tuple[Any, ...]]]:
    async with deps.engine.connect() as conn:
        return {
            table: [
                tuple(row)
                for row in await conn.execute(text(f"SELECT * FROM {table} ORDER BY {key}"))  # noqa: S608 -- the test's own table names
            ]
            for table, key in TABLES.items()
        }


async def test_each_run_is_counted_once_when_it_is_over(deps: Deps, engine: Engine) -> None:
    await add_repo(deps, 7, "acme/api")
    ticket = await add_ticket(deps, "acme/api#1", repo_id=7, state="in_progress")
    async with transaction(deps.sessions) as session:
        version = (await publish_harness(session, "coder", "One.", author="ann")).id
    await queued(deps, "r1", ticket, 0, version, _provider="anthropic")
    await queued(deps, "r2", ticket, 1, version, _provider="anthropic")
    await queued(deps, "r3", ticket, 25, None)  # the next day, no provider nor version
    await queued(deps, "r4", ticket, 26, None)  # still running

    failed = result(
        "r1",
        RunStatus.GATES_FAILED,
        0.5,
        hook("tests", 1),
        hook("types", None),  # timed out
        hook("lint", 1, on_failure="warn"),  # not a gate
        hook("build", 0),
    )
    assert await finish_run(engine, "r1", failed) is not None
    assert await finish_run(engine, "r2", result("r2", RunStatus.SUCCEEDED, 1.25)) is not None
    assert await finish_run(engine, "r3", None) is not None  # lost
    counted = await rollups(deps)
    # Taken again (another worker saw the same result): nothing more is counted.
    assert await finish_run(engine, "r1", failed) is None
    assert await rollups(deps) == counted

    day, next_day = T0.date(), (T0 + timedelta(hours=25)).date()
    assert counted == {
        "run_stats_daily": [
            (day, 7, "coder", "anthropic", version, "gates_failed", 1, 0.5),
            (day, 7, "coder", "anthropic", version, "succeeded", 1, 1.25),
            (next_day, 7, "coder", "", 0, "lost", 1, 0.0),
        ],
        "run_totals_daily": [
            (day, "gates_failed", 1, 0.5),
            (day, "succeeded", 1, 1.25),
            (next_day, "lost", 1, 0.0),
        ],
        "gate_failures_daily": [
            (day, 7, "coder", "anthropic", version, "tests", 1),
            (day, 7, "coder", "anthropic", version, "types", 1),
        ],
        "ticket_run_kinds": [(ticket, "coder", "", 0), (ticket, "coder", "anthropic", version)],
        "ticket_run_totals": [(ticket, 7, 3, 1.75, True)],
    }
    # The migration's backfill, run over the same runs, counts the same.
    async with transaction(deps.sessions) as session:
        await rebuild(session)
    assert await rollups(deps) == counted
