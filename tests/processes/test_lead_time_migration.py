"""Migration d7e3a1f9c2b5, run: the lead-time moments of the tickets already there are read
back from their activity log (first move out of the backlog, first to in_review, first to
done), and a downgrade drops them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from alembic import command
from sqlalchemy import text

from bot.deps import Deps
from bot.processes.migrate import alembic_config, upgrade_async
from bot.tables.workflow import Activity
from harness_store.db import transaction
from tests.conftest import Services
from tests.support.board import add_ticket
from tests.support.run_streams import T0

BEFORE = "c5d2f0a8e1b4"
MOMENTS = "SELECT labelled_at, pr_at, done_at FROM ticket_states WHERE ticket_id = :id"


async def columns(deps: Deps) -> set[str]:
    async with deps.engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'ticket_states'"
            )
        )
        return {name for (name,) in found}


async def test_the_moments_are_backfilled_from_the_activity_log(
    deps: Deps, services: Services
) -> None:
    reopened = await add_ticket(deps, "acme/api#1", state="done")
    untouched = await add_ticket(deps, "acme/api#2", state="todo")
    at = [T0 + timedelta(hours=n) for n in range(9)]
    try:
        await asyncio.to_thread(command.downgrade, alembic_config(services.database_url), BEFORE)
        assert "done_at" not in await columns(deps)
        async with transaction(deps.sessions) as session:
            steps = [
                (at[0], "state", {"old": "todo", "new": "backlog"}),
                (at[1], "run", {}),
                (at[2], "state", {"old": "backlog", "new": "todo"}),
                (at[3], "state", {"old": "in_progress", "new": "in_review"}),
                (at[4], "state", {"old": "in_review", "new": "todo"}),
                (at[5], "state", {"old": "in_progress", "new": "in_review"}),
                (at[6], "state", {"old": "merging", "new": "done"}),
                (at[7], "state", {"old": "done", "new": "todo"}),
                (at[8], "state", {"old": "merging", "new": "done"}),
            ]
            for when, kind, data in steps:
                session.add(
                    Activity(ticket_id=reopened, kind=kind, message="x", data=data, at=when)
                )
    finally:
        await upgrade_async(services.database_url)
        # Pooled connections prepared statements on the table as it was.
        await deps.engine.dispose()

    async with deps.engine.connect() as conn:
        assert (await conn.execute(text(MOMENTS), {"id": reopened})).one() == (at[2], at[3], at[6])
        assert (await conn.execute(text(MOMENTS), {"id": untouched})).one() == (None, None, None)
        index = await conn.scalar(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_ticket_states_done_at'")
        )
    assert index is not None
    assert "(done_at)" in index
