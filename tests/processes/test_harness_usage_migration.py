"""Migration c3d9e6f1a4b7: who used each harness and skill version, and each harness
version's runs summed up. Its triggers keep the summaries equal to what the runs, their
versions and the activity log add up to, whoever writes them; it fills them from the rows
stored before it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from alembic import command
from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.api.harness_usage import harness_usage, skill_usage
from bot.deps import Deps
from bot.processes.migrate import alembic_config, upgrade_async
from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import Activity, Run, RunState
from bot.web.impact_queries import VersionImpact, harness_impact
from harness_store import store
from harness_store.db import transaction
from harness_store.models import HarnessVersion, SkillVersion
from tests.conftest import Services
from tests.support.run_streams import T0

BEFORE = "b2c8d5e0f3a6"
SKILL_MD = "---\nname: lint\ndescription: Run the linters.\n---\n\nRun `ruff`.\n"

# What the summaries must hold: the sums over the rows themselves, as the pages once read.
SUMS = """
SELECT harness_version_id, count(*), count(*) FILTER (WHERE state IN ('finished', 'lost')),
       count(*) FILTER (WHERE status = 'succeeded'), coalesce(sum(cost_usd), 0),
       count(DISTINCT ticket_id)
FROM runs WHERE harness_version_id IS NOT NULL GROUP BY 1 ORDER BY 1"""
KEPT = """
SELECT harness_version_id, runs, ended, succeeded, cost_usd, tickets
FROM harness_impact WHERE runs > 0 ORDER BY 1"""
PR_SUMS = """
SELECT r.id, extract(epoch FROM min(a.at) - r.queued_at) FROM activity a
JOIN runs r ON r.id = a.run_id
WHERE a.kind = 'state' AND a.data ->> 'new' = 'in_review' AND r.harness_version_id IS NOT NULL
GROUP BY r.id, r.queued_at ORDER BY 1"""
PR_KEPT = "SELECT run_id, to_pr_seconds FROM harness_impact_prs ORDER BY 1"


async def _store(deps: Deps) -> tuple[list[HarnessVersion], list[SkillVersion], list[int]]:
    """Harness coder v1 and v2, skill lint v1 and v2, tickets in two repositories and one
    with no repository."""
    async with transaction(deps.sessions) as session:
        coder = [
            await store.publish_harness(session, "coder", "# {{ ticket.key }}\n", author="a"),
            await store.publish_harness(session, "coder", "# {{ ticket.key }}!\n", author="a"),
        ]
        files = {"SKILL.md": SKILL_MD}
        lint = [await store.publish_skill(session, "lint", files, author="a")]
        files = {**files, "run.sh": "ruff check .\n"}
        lint.append(await store.publish_skill(session, "lint", files, author="a"))
        session.add_all(
            [
                Repository(id=1, full_name="acme/api"),
                Repository(id=2, full_name="acme/web"),
            ]
        )
        await session.flush()
        tickets = []
        for number, repo in ((1, 1), (2, 1), (3, 2), (4, None)):
            ticket = Ticket(
                source="github" if repo else "linear",
                external_id=str(number),
                repository_id=repo,
                number=number,
                key=f"T-{number}",
                title="A ticket",
                state="open",
            )
            session.add(ticket)
            await session.flush()
            tickets.append(ticket.id)
    return coder, lint, tickets


def _run(run_id: str, ticket: int, version: int, minutes: int, **fields: Any) -> Run:
    values: dict[str, Any] = {"workflow": "coder", "state": RunState.QUEUED, **fields}
    return Run(
        id=run_id,
        ticket_id=ticket,
        attempt=1,
        spec={},
        harness_version_id=version,
        queued_at=T0 + timedelta(minutes=minutes),
        **values,
    )


def _pr_move(ticket: int, run_id: str | None, minutes: int) -> Activity:
    return Activity(
        ticket_id=ticket,
        run_id=run_id,
        kind="state",
        message="in_progress -> in_review",
        data={"old": "in_progress", "new": "in_review"},
        at=T0 + timedelta(minutes=minutes),
    )


async def _versions(
    session: AsyncSession, run_id: str, ticket: int, harness: int, skills: list[int]
) -> None:
    await store.record_run_versions(
        session, run_id, harness_version_id=harness, skill_version_ids=skills, ticket_id=ticket
    )


async def _agree(deps: Deps) -> list[Any]:
    """The kept sums, after checking them against the rows' own."""
    async with deps.engine.connect() as conn:
        kept = (await conn.execute(text(KEPT))).all()
        assert kept == (await conn.execute(text(SUMS))).all()
        assert (await conn.execute(text(PR_KEPT))).all() == (
            await conn.execute(text(PR_SUMS))
        ).all()
    return list(kept)


async def test_every_write_keeps_the_sums_equal_to_the_rows(deps: Deps) -> None:
    coder, lint, (t1, t2, t3, t4) = await _store(deps)
    v1, v2 = coder[0].id, coder[1].id
    async with transaction(deps.sessions) as session:
        session.add_all(
            [
                _run("a", t1, v1, 0),
                _run("b", t1, v1, 10, workflow="review"),
                _run("c", t3, v2, 20),
                _run("d", t4, v2, 30),
            ]
        )
        await session.flush()
        await _versions(session, "a", t1, v1, [lint[0].id])
        await _versions(session, "b", t1, v1, [lint[0].id, lint[1].id])
        await _versions(session, "c", t3, v2, [lint[1].id])
        await _versions(session, "d", t4, v2, [])
        # A run's versions recorded with no run row are used by nobody the pages can name.
        await _versions(session, "ghost", t2, v2, [lint[0].id])
    assert [(v, runs, tickets) for v, runs, _, _, _, tickets in await _agree(deps)] == [
        (v1, 2, 1),
        (v2, 2, 2),
    ]

    # Finished (as the result taker and run tracking write it), lost, and an /ask.
    async with transaction(deps.sessions) as session:
        await session.execute(
            update(Run)
            .where(Run.id == "a")
            .values(state=RunState.FINISHED, status="succeeded", cost_usd=1.5)
        )
        await session.execute(update(Run).where(Run.id == "b").values(state=RunState.RUNNING))
        await session.execute(update(Run).where(Run.id == "c").values(state=RunState.LOST))
        await session.execute(
            update(Run)
            .where(Run.id == "d")
            .values(state=RunState.FINISHED, status="gates_failed", cost_usd=0.5)
        )
        session.add(_run("q", t2, v1, 40, workflow="ask", state=RunState.FINISHED, cost_usd=0.25))
        session.add_all([_pr_move(t1, "a", 70), _pr_move(t1, "a", 50), _pr_move(t3, "c", 200)])
        # Neither a run's PR (no run id) nor a move elsewhere.
        session.add(_pr_move(t2, None, 60))
        session.add(
            Activity(ticket_id=t1, run_id="b", kind="state", data={"new": "todo"}, message="")
        )
    assert await _agree(deps) == [(v1, 3, 2, 1, 1.75, 2), (v2, 2, 2, 0, 0.5, 2)]

    async with deps.sessions() as session:
        assert await harness_impact(session, "coder") == [
            VersionImpact(1, 3, 2, 1, 2, 1.75, 50 / 60, 1),
            VersionImpact(2, 2, 2, 0, 2, 0.5, 3.0, 1),
        ]
        assert await harness_usage(session) == {
            "coder": [("acme/api", "coder"), ("acme/api", "review"), ("acme/web", "coder")]
        }
        assert await skill_usage(session) == {
            "lint": [("acme/api", "coder"), ("acme/api", "review"), ("acme/web", "coder")]
        }

    # A run moved to another version, and a ticket deleted with its runs.
    async with transaction(deps.sessions) as session:
        await session.execute(update(Run).where(Run.id == "b").values(harness_version_id=v2))
        await session.execute(delete(Ticket).where(Ticket.id == t3))
    assert await _agree(deps) == [(v1, 2, 2, 1, 1.75, 2), (v2, 2, 1, 0, 0.5, 2)]


async def test_the_rows_stored_before_are_summed_up(deps: Deps, services: Services) -> None:
    coder, lint, (t1, t2, _, t4) = await _store(deps)
    v1, v2 = coder[0].id, coder[1].id
    try:
        await asyncio.to_thread(command.downgrade, alembic_config(services.database_url), BEFORE)
        async with transaction(deps.sessions) as session:
            session.add_all(
                [
                    _run("a", t1, v1, 0, state=RunState.FINISHED, status="succeeded", cost_usd=2),
                    _run("b", t1, v1, 10, state=RunState.LOST),
                    _run("c", t2, v2, 20, workflow="review", state=RunState.RUNNING),
                    _run("d", t4, v2, 30),
                    _pr_move(t1, "a", 90),
                    _pr_move(t1, "a", 60),
                ]
            )
            await session.flush()
            await _versions(session, "a", t1, v1, [lint[0].id])
            await _versions(session, "c", t2, v2, [lint[0].id, lint[1].id])
            await _versions(session, "d", t4, v2, [lint[1].id])
    finally:
        await upgrade_async(services.database_url)
        await deps.engine.dispose()  # pooled connections knew the schema without the tables

    assert await _agree(deps) == [(v1, 2, 2, 1, 2.0, 1), (v2, 2, 0, 0, 0.0, 2)]
    async with deps.sessions() as session:
        assert await harness_impact(session, "coder") == [
            VersionImpact(1, 2, 2, 1, 1, 2.0, 1.0, 1),
            VersionImpact(2, 2, 0, 0, 2, 0.0, None, 0),
        ]
        assert await harness_usage(session) == {
            "coder": [("acme/api", "coder"), ("acme/api", "review")]
        }
        assert await skill_usage(session) == {
            "lint": [("acme/api", "coder"), ("acme/api", "review")]
        }
    # And the triggers run from here on.
    async with transaction(deps.sessions) as session:
        await session.execute(
            update(Run).where(Run.id == "c").values(state=RunState.FINISHED, status="succeeded")
        )
    assert (await _agree(deps))[1] == (v2, 2, 1, 1, 0.0, 2)
