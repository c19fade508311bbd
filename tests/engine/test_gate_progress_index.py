"""The tick's look for runs at their gates reads the partial index of gating events, not
every event of every running run (37 ms of PostgreSQL's CPU a tick with 200 runs): also in
the generic plan a prepared statement settles on after a few runs, which cannot use a
partial index when its predicate's values are bound (bot/engine/gate_progress.py)."""

from __future__ import annotations

from sqlalchemy import text

from bot.deps import Deps
from bot.engine.gate_progress import gating_events
from tests.support.run_rows import add_running_run


async def test_the_gating_events_are_found_through_their_index_in_a_generic_plan(
    deps: Deps,
) -> None:
    async with deps.sessions() as session, session.begin():
        for n in range(50):
            await add_running_run(session, f"g{n}", number=n)
        await session.flush()
        # Mostly output lines, as agents write them; a gating event now and then.
        await session.execute(
            text(
                "INSERT INTO run_events (run_id, seq, kind, event, at)"
                " SELECT r.id, s, CASE WHEN s = 200 THEN 'phase' ELSE 'log' END,"
                " jsonb_build_object('text', CASE WHEN s = 200 THEN 'gating' ELSE 'a line' END),"
                " now() FROM runs r, generate_series(1, 200) s"
            )
        )
    compiled = gating_events().compile(dialect=deps.engine.dialect)  # $1, as asyncpg sends it
    async with deps.engine.connect() as connection:
        await connection.execute(text("ANALYZE run_events"))
        await connection.exec_driver_sql(f"PREPARE gating AS {compiled}")
        await connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        plan = "\n".join(
            row[0] for row in await connection.exec_driver_sql("EXPLAIN EXECUTE gating('running')")
        )
        await connection.exec_driver_sql("DEALLOCATE gating")
        await connection.exec_driver_sql("RESET plan_cache_mode")
    assert "ix_run_events_gating" in plan, plan
    assert "pk_run_events" not in plan, plan
