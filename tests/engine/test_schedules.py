"""Scheduled tickets: each slot files one issue across workers, downtime catches up once, a
slot is skipped while the schedule's issue is open, a paused schedule files nothing, and a
retried create finds the issue an earlier try opened (real PostgreSQL, the fake GitHub)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.deps import Deps
from bot.effects.issues import PERFORMERS
from bot.effects.perform import perform_pending
from bot.engine.context import Engine
from bot.engine.schedule_slots import GITHUB, Owner, run_now, set_paused
from bot.engine.schedules import find_schedule, schedule_views, schedules_tick
from bot.tables.mirror import Ticket
from bot.tables.schedules import ScheduleSlot, SlotOutcome
from harness_store.db import transaction
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo
from tests.support.board import add_ticket
from tests.support.outbox import make_due, outbox_rows
from tests.support.schedules import (
    FULL_NAME,
    MONDAY,
    REPO_ID,
    WEDNESDAY,
    new_engine,
    scheduled_repo,
)

OWNER = Owner(GITHUB, FULL_NAME, REPO_ID)


@pytest.fixture
def engine(deps: Deps, tmp_path: Path) -> Engine:
    return new_engine(deps, tmp_path)


@pytest.fixture
async def repo(deps: Deps, github_api: FakeGitHubAPI) -> FakeRepo:
    return await scheduled_repo(deps, github_api)


def filed(fake: FakeRepo) -> list[dict[str, Any]]:
    return [issue for issue in fake.issues if "openase:schedule" in (issue.get("body") or "")]


async def slots(deps: Deps) -> list[tuple[datetime, str]]:
    async with deps.sessions() as session:
        rows = await session.execute(
            select(ScheduleSlot.slot_at, ScheduleSlot.outcome).order_by(ScheduleSlot.slot_at)
        )
        return [(at, outcome) for at, outcome in rows]


async def close_in_mirror(deps: Deps, number: int) -> None:
    async with transaction(deps.sessions) as session:
        await session.execute(
            update(Ticket)
            .where(Ticket.repository_id == REPO_ID, Ticket.number == number)
            .values(state="closed")
        )


async def test_a_slot_files_one_issue_across_two_workers(
    deps: Deps, engine: Engine, repo: FakeRepo, github_api: FakeGitHubAPI, tmp_path: Path
) -> None:
    # Seen first on a Wednesday: Monday's past slot is not filed when the schedule appears.
    assert await schedules_tick(engine, WEDNESDAY) == {SlotOutcome.FIRST_SEEN: 1}
    other = new_engine(deps, tmp_path)
    results = await asyncio.gather(
        *(schedules_tick(e, MONDAY) for e in (engine, other, engine, other))
    )
    assert sorted(r.get(SlotOutcome.FILED, 0) for r in results) == [0, 0, 0, 1]
    assert await perform_pending(deps, PERFORMERS) == 1
    (issue,) = filed(repo)
    assert issue["title"] == "Update dependencies (2026-12-07)"
    assert str(issue["body"]).startswith("Weekly weekly-deps for octo/sched.")
    assert [label["name"] for label in issue["labels"]] == ["deps", "openase"]
    # The request is GitHub's documented one.
    ((_, body),) = github_api.calls("POST", r"/repos/octo/sched/issues$")
    assert body["labels"] == ["deps", "openase"]
    # Later ticks in the same week file nothing more.
    assert await schedules_tick(engine, MONDAY + timedelta(hours=5)) == {}
    assert await perform_pending(deps, PERFORMERS) == 0
    assert len(filed(repo)) == 1


async def test_downtime_catches_up_once(deps: Deps, engine: Engine, repo: FakeRepo) -> None:
    await schedules_tick(engine, WEDNESDAY)
    # Down for three weeks: three Mondays missed, one issue for the latest.
    back = MONDAY + timedelta(days=16)
    assert await schedules_tick(engine, back) == {SlotOutcome.FILED: 1}
    assert await schedules_tick(engine, back + timedelta(minutes=1)) == {}
    await perform_pending(deps, PERFORMERS)
    (issue,) = filed(repo)
    assert issue["title"] == "Update dependencies (2026-12-21)"
    assert [outcome for _, outcome in await slots(deps)] == [
        SlotOutcome.FIRST_SEEN,
        SlotOutcome.FILED,
    ]


async def test_skips_while_its_issue_is_open(deps: Deps, engine: Engine, repo: FakeRepo) -> None:
    await schedules_tick(engine, WEDNESDAY)
    assert await schedules_tick(engine, MONDAY) == {SlotOutcome.FILED: 1}
    # Not performed yet: the issue is on its way, so the next slot waits for it.
    assert await schedules_tick(engine, MONDAY + timedelta(days=7)) == {SlotOutcome.SKIPPED_OPEN: 1}
    await perform_pending(deps, PERFORMERS)
    (issue,) = filed(repo)
    number = issue["number"]
    # Opened, but no webhook has told the mirror yet: still counted open.
    assert await schedules_tick(engine, MONDAY + timedelta(days=14)) == {
        SlotOutcome.SKIPPED_OPEN: 1
    }
    await add_ticket(deps, f"{FULL_NAME}#{number}", repo_id=REPO_ID, state=None)
    assert await schedules_tick(engine, MONDAY + timedelta(days=21)) == {
        SlotOutcome.SKIPPED_OPEN: 1
    }
    await close_in_mirror(deps, number)
    assert await schedules_tick(engine, MONDAY + timedelta(days=28)) == {SlotOutcome.FILED: 1}
    await perform_pending(deps, PERFORMERS)
    assert len(filed(repo)) == 2


async def test_paused_files_nothing_and_run_now_files_at_once(
    deps: Deps, engine: Engine, repo: FakeRepo
) -> None:
    await schedules_tick(engine, WEDNESDAY)
    async with transaction(deps.sessions) as session:
        await set_paused(session, OWNER, "weekly-deps", paused=True, by="admin")
    assert await schedules_tick(engine, MONDAY) == {SlotOutcome.PAUSED: 1}
    (view,) = await schedule_views(engine, now=MONDAY)
    assert (view.paused, view.next_at) == (True, MONDAY.replace(second=0) + timedelta(days=7))
    assert view.last_outcome == SlotOutcome.PAUSED
    found = await find_schedule(engine, "OCTO/sched", "weekly-deps")
    assert found is not None
    assert await run_now(engine, *found, by="admin") == SlotOutcome.FILED
    await perform_pending(deps, PERFORMERS)
    assert len(filed(repo)) == 1
    # Resumed: the next slot files (the run-now issue closed meanwhile).
    async with transaction(deps.sessions) as session:
        await set_paused(session, OWNER, "weekly-deps", paused=False, by="admin")
    (view,) = await schedule_views(engine, now=MONDAY)
    assert not view.paused
    number = filed(repo)[0]["number"]
    assert view.last_issue == f"#{number}"
    await add_ticket(deps, f"{FULL_NAME}#{number}", repo_id=REPO_ID, state=None)
    await close_in_mirror(deps, number)
    assert await schedules_tick(engine, MONDAY + timedelta(days=7)) == {SlotOutcome.FILED: 1}


async def test_a_retried_create_finds_the_issue_it_opened(
    deps: Deps, engine: Engine, repo: FakeRepo, github_api: FakeGitHubAPI
) -> None:
    await schedules_tick(engine, WEDNESDAY)
    await schedules_tick(engine, MONDAY)
    (effect,) = (await outbox_rows(deps)).values()
    # GitHub opened the issue, but its answer was lost (502): the effect is tried again.
    github_api.queue(502, {"message": "Bad Gateway"}, path_regex=r"/issues$", method="POST")
    opened = github_api.add_issue(repo, 1, title="opened by the first try")
    opened.update(
        body=f"Weekly.\n\n{effect.payload['marker']}",
        performed_via_github_app={"id": github_api.app_id},
    )
    await perform_pending(deps, PERFORMERS)
    await make_due(deps)
    await perform_pending(deps, PERFORMERS)
    assert len(github_api.calls("POST", r"/repos/octo/sched/issues$")) == 1
    assert filed(repo) == [opened]
    (effect,) = (await outbox_rows(deps)).values()
    assert (effect.status, effect.result) == (
        "done",
        {
            "number": 1,
            "html_url": opened["html_url"],
            "created": False,
            "summary": "issue #1 found",
        },
    )
