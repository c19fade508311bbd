"""Migration a1b7c4d9e2f5, run: each ticket's card gets the gates of its latest run with a
result (not an /ask, not an older run), read back from the runs already stored."""

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
from tests.support.board import add_ticket
from tests.support.run_streams import T0

BEFORE = "f9a5c3b1e4d7"
CHECKS = "SELECT checks FROM ticket_states WHERE ticket_id = :id"


def hook(name: str, passed: bool, phase: str = "on_complete", gate: str = "block") -> Any:
    return {"name": name, "phase": phase, "passed": passed, "on_failure": gate, "exit_code": 0}


def run(ticket: int, name: str, at: int, workflow: str, hooks: list[Any] | None) -> Run:
    return Run(
        id=name,
        ticket_id=ticket,
        workflow=workflow,
        attempt=1,
        state=RunState.FINISHED,
        spec={},
        result=None if hooks is None else {"hook_results": hooks},
        queued_at=T0 + timedelta(minutes=at),
        finished_at=T0 + timedelta(minutes=at + 1),
    )


async def test_the_latest_runs_gates_are_backfilled(deps: Deps, services: Services) -> None:
    gated = await add_ticket(deps, "acme/api#1", state="in_review")
    never = await add_ticket(deps, "acme/api#2", state="todo")
    try:
        await asyncio.to_thread(command.downgrade, alembic_config(services.database_url), BEFORE)
        async with transaction(deps.sessions) as session:
            session.add_all(
                [
                    run(gated, "old", 0, "coder", [hook("tests", False)]),
                    run(
                        gated,
                        "new",
                        10,
                        "coder",
                        [
                            hook("setup", True, phase="after_create"),
                            hook("tests", True),
                            hook("lint", False, gate="warn"),
                        ],
                    ),
                    run(gated, "question", 20, "ask", []),
                    run(never, "lost", 0, "coder", None),
                ]
            )
    finally:
        await upgrade_async(services.database_url)
        await deps.engine.dispose()  # pooled connections knew the table without the column

    async with deps.engine.connect() as conn:
        assert (await conn.execute(text(CHECKS), {"id": gated})).scalar_one() == [
            {"name": "openase/tests", "passed": True, "gate": "block"},
            {"name": "openase/lint", "passed": False, "gate": "warn"},
        ]
        assert (await conn.execute(text(CHECKS), {"id": never})).scalar_one() is None
