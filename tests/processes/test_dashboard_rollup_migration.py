"""Migration b2c8d5e0f3a6, run: the dashboard's rollups are filled from the runs already
stored, every run over counted under the day it was queued (finished ones by status, lost
ones as lost), blocking gates that failed per hook, runs still open left out."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from alembic import command
from sqlalchemy import text

from bot.deps import Deps
from bot.processes.migrate import alembic_config, upgrade_async
from bot.tables.workflow import Run, RunState
from harness_store.db import transaction
from tests.conftest import Services
from tests.support.board import add_repo, add_ticket
from tests.support.run_streams import T0

BEFORE = "a1b7c4d9e2f5"


def hook(name: str, exit_code: int | None, gate: str = "block", **more: Any) -> Any:
    return {
        "name": name,
        "phase": "on_complete",
        "on_failure": gate,
        "exit_code": exit_code,
        **more,
    }


def run(
    ticket: int,
    name: str,
    hours: int,
    state: RunState,
    status: str | None = None,
    cost: float | None = None,
    result: Any = None,
    provider: str | None = "anthropic",
) -> Run:
    return Run(
        id=name,
        ticket_id=ticket,
        workflow="coder",
        attempt=1,
        state=state,
        status=status,
        spec={} if provider is None else {"_provider": provider},
        result=result,
        cost_usd=cost,
        queued_at=T0 + timedelta(hours=hours),
    )


async def rows(deps: Deps, query: str) -> list[tuple[Any, ...]]:
    async with deps.engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(text(query))]


async def test_the_runs_already_stored_are_counted(deps: Deps, services: Services) -> None:
    await add_repo(deps, 3, "acme/api")
    first = await add_ticket(deps, "acme/api#1", repo_id=3, state="done")
    other = await add_ticket(deps, "acme/api#2", repo_id=3, state="in_progress")
    finished = RunState.FINISHED
    try:
        await asyncio.to_thread(command.downgrade, alembic_config(services.database_url), BEFORE)
        gates = {
            "hook_results": [
                hook("tests", 2),
                hook("types", None, timed_out=True),
                hook("lint", 1, gate="warn"),
                hook("build", 0),
            ]
        }
        async with transaction(deps.sessions) as session:
            session.add_all(
                [
                    run(first, "a", 0, finished, "gates_failed", 0.5, gates),
                    run(first, "b", 1, finished, "succeeded", 1.0, {"hook_results": "odd"}),
                    run(first, "c", 2, finished, "succeeded", 2.0, provider=None),
                    run(other, "d", 24, RunState.LOST),
                    run(other, "e", 25, RunState.RUNNING),
                ]
            )
    finally:
        await upgrade_async(services.database_url)
        await deps.engine.dispose()  # pooled connections knew the schema without the tables

    day, next_day = T0.date(), (T0 + timedelta(hours=24)).date()
    assert await rows(
        deps,
        "SELECT day, repository_id, provider, harness_version_id, outcome, runs, cost_usd"
        " FROM run_stats_daily ORDER BY day, provider, outcome",
    ) == [
        (day, 3, "", 0, "succeeded", 1, 2.0),
        (day, 3, "anthropic", 0, "gates_failed", 1, 0.5),
        (day, 3, "anthropic", 0, "succeeded", 1, 1.0),
        (next_day, 3, "anthropic", 0, "lost", 1, 0.0),
    ]
    assert await rows(deps, "SELECT * FROM run_totals_daily ORDER BY day, outcome") == [
        (day, "gates_failed", 1, 0.5),
        (day, "succeeded", 2, 3.0),
        (next_day, "lost", 1, 0.0),
    ]
    assert await rows(deps, "SELECT day, hook, failures FROM gate_failures_daily ORDER BY 2") == [
        (day, "tests", 1),
        (day, "types", 1),
    ]
    assert await rows(deps, "SELECT * FROM ticket_run_kinds ORDER BY 1, 3") == [
        (first, "coder", "", 0),
        (first, "coder", "anthropic", 0),
        (other, "coder", "anthropic", 0),
    ]
    assert await rows(deps, "SELECT * FROM ticket_run_totals ORDER BY 1") == [
        (first, 3, 3, 3.5, True),
        (other, 3, 1, 0.0, False),
    ]
