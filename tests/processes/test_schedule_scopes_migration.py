"""Migration a7b3c0d5e8f1, run: a repository's slots and pauses recorded before schedules
had scopes keep working (scope `github:<repository id>`), a team's slot sits beside them,
and a downgrade drops the team's rows, which have no repository to go back to."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from bot.deps import Deps
from bot.processes.migrate import alembic_config, upgrade_async
from bot.tables.mirror import Installation, Repository
from harness_store.db import transaction
from tests.conftest import Services

BEFORE = "e5f1a8b3c6d9"
SLOT = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


async def test_earlier_slots_and_pauses_get_their_repositorys_scope(
    deps: Deps, services: Services
) -> None:
    async with transaction(deps.sessions) as session:
        session.add(Installation(id=7, account_login="octo", account_type="User"))
        await session.flush()
        session.add(Repository(id=777, full_name="octo/sched", installation_id=7))
    config = alembic_config(services.database_url)
    try:
        await asyncio.to_thread(command.downgrade, config, BEFORE)
        async with deps.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO schedule_slots (repository_id, schedule, slot_at, outcome)"
                    " VALUES (777, 'weekly-deps', :at, 'filed')"
                ),
                {"at": SLOT},
            )
            await conn.execute(
                text(
                    "INSERT INTO schedule_controls (repository_id, schedule, paused, changed_by)"
                    " VALUES (777, 'weekly-deps', true, 'admin')"
                )
            )
    finally:
        await upgrade_async(services.database_url)
        await deps.engine.dispose()  # pooled connections knew the tables as they were

    async with deps.engine.begin() as conn:
        slots = (await conn.execute(text("SELECT scope, repository_id FROM schedule_slots"))).all()
        controls = (
            await conn.execute(text("SELECT scope, schedule, paused FROM schedule_controls"))
        ).all()
        # A Linear team's slot at the same time, with the same schedule name: its own row.
        await conn.execute(
            text(
                "INSERT INTO schedule_slots (scope, schedule, slot_at, outcome)"
                " VALUES ('linear:ENG', 'weekly-deps', :at, 'filed')"
            ),
            {"at": SLOT},
        )
    assert slots == [("github:777", 777)]
    assert controls == [("github:777", "weekly-deps", True)]
    # The slot is still claimed once per scope.
    with pytest.raises(IntegrityError):
        async with deps.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO schedule_slots (scope, repository_id, schedule, slot_at, outcome)"
                    " VALUES ('github:777', 777, 'weekly-deps', :at, 'filed')"
                ),
                {"at": SLOT},
            )

    try:
        await asyncio.to_thread(command.downgrade, config, BEFORE)
        async with deps.engine.connect() as conn:
            left = (await conn.execute(text("SELECT repository_id FROM schedule_slots"))).all()
        assert left == [(777,)]
    finally:
        await upgrade_async(services.database_url)
        await deps.engine.dispose()
