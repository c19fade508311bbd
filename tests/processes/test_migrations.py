"""Migrations are tested by running them: they build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from bot.deps import Deps
from harness_store.db import Base


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_the_models(deps: Deps) -> None:
    async with deps.engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == []
