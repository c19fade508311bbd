"""Scheduled tickets of a Linear team and a Jira project (the control-plane config): each
slot files one issue across workers, through the trackers' own APIs (the recording fakes,
Linear's schema checked); downtime catches up once; a slot is skipped while the schedule's
issue is open; pause and run-now; a retry after a lost answer files nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import AnyHttpUrl, SecretStr
from sqlalchemy import update

from bot.deps import Deps
from bot.effects.perform import perform_pending
from bot.effects.tracker_issues import PERFORMERS, linear_issue_id
from bot.engine.context import Engine
from bot.engine.schedule_slots import Owner, run_now, set_paused
from bot.engine.schedules import find_schedule, schedule_views, schedules_tick
from bot.registry import JIRA, LINEAR, JiraClient, LinearClient, TrackerClients
from bot.tables.mirror import Ticket
from bot.tables.schedules import SlotOutcome
from harness_store.db import transaction
from tests.conftest import JIRA_EMAIL
from tests.fakes.github_api import FakeGitHubAPI
from tests.fakes.jira_server import FakeJira
from tests.fakes.linear_api import FakeLinear
from tests.support.board import add_ticket
from tests.support.outbox import make_due, outbox_rows
from tests.support.schedules import MONDAY, WEDNESDAY, scheduled_repo, tracker_engine

Json = dict[str, Any]
ROUTED_REPO = "workflows:\n  coder: {trigger_labels: [openase], provider: script}\n"


@pytest.fixture
def jira_fake() -> Iterator[FakeJira]:
    """A Jira Server site: the outbox's client, built from settings as a worker builds it,
    takes a site outside atlassian.net for Server (Cloud refuses its search)."""
    with FakeJira(cloud=False) as fake:
        yield fake
    assert fake.crashes == []


@pytest.fixture
async def trackers(linear_fake: FakeLinear, jira_fake: FakeJira) -> AsyncIterator[TrackerClients]:
    both = TrackerClients(
        linear=LinearClient(linear_fake.api_key, url=linear_fake.url, timeout=5.0),
        jira=JiraClient(jira_fake.url, JIRA_EMAIL, jira_fake.token, timeout=5),
    )
    yield both
    await both.aclose()


@pytest.fixture
async def engine(
    deps: Deps,
    tmp_path: Path,
    github_api: FakeGitHubAPI,
    linear_fake: FakeLinear,
    jira_fake: FakeJira,
    trackers: TrackerClients,
    monkeypatch: pytest.MonkeyPatch,
) -> Engine:
    # Where the team and the project are routed: its `coder` workflow, no schedule of its own.
    await scheduled_repo(deps, github_api, ROUTED_REPO)
    linear_fake.add_team("ENG", "Engineering")
    jira_fake.add_project("PROJ", "Project")
    # The outbox builds the process's tracker clients from settings, as a worker does.
    monkeypatch.setattr(
        deps,
        "settings",
        deps.settings.model_copy(
            update={
                "linear_api_key": SecretStr(linear_fake.api_key),
                "linear_api_url": AnyHttpUrl(linear_fake.url),
                "jira_url": AnyHttpUrl(jira_fake.url),
                "jira_email": JIRA_EMAIL,
                "jira_api_token": SecretStr(jira_fake.token),
            }
        ),
    )
    return tracker_engine(deps, tmp_path, trackers)


def linear_filed(fake: FakeLinear) -> list[Json]:
    return [issue for issue in fake.issues.values() if issue["creatorId"] == fake.viewer["id"]]


def jira_filed(fake: FakeJira) -> list[Json]:
    return [
        issue
        for issue in fake.issues.values()
        if "openase:schedule" in (issue["fields"]["description"] or "")
    ]


def label_names(fake: FakeLinear, issue: Json) -> list[str]:
    return [fake.labels[label_id]["name"] for label_id in issue["labelIds"]]


async def test_each_slot_files_one_issue_in_linear_and_in_jira_across_workers(
    deps: Deps,
    engine: Engine,
    linear_fake: FakeLinear,
    jira_fake: FakeJira,
    tmp_path: Path,
    trackers: TrackerClients,
) -> None:
    # Seen first on a Wednesday: Monday's past slot is not filed.
    assert await schedules_tick(engine, WEDNESDAY) == {SlotOutcome.FIRST_SEEN: 2}
    other = tracker_engine(deps, tmp_path, trackers)
    results = await asyncio.gather(
        *(schedules_tick(e, MONDAY) for e in (engine, other, engine, other))
    )
    assert sum(r.get(SlotOutcome.FILED, 0) for r in results) == 2
    assert await perform_pending(deps, PERFORMERS) == 2

    (linear,) = linear_filed(linear_fake)
    assert linear["title"] == "Triage (2026-12-07)"
    assert linear["description"] == "Sort **octo/sched**'s new issues."
    assert label_names(linear_fake, linear) == ["triage", "openase"]
    effects = await outbox_rows(deps)
    key = next(k for k in effects if k.startswith("schedule:linear:ENG:weekly-triage:"))
    assert linear["id"] == linear_issue_id(key)  # the effect's own id: a retry asks for it
    result = effects[key].result
    assert result is not None
    assert result["key"] == linear["identifier"] == "ENG-1"

    (jira,) = jira_filed(jira_fake)
    fields = jira["fields"]
    assert fields["summary"] == "Scan (2026-12-07)"
    assert fields["description"] == (
        "Run the *scanner* on octo/sched.\n\n"
        "_openase:schedule weekly-scan slot=2026-12-07T08:00:00+00:00_"
    )
    assert fields["labels"] == ["security", "openase"]
    assert fields["reporter"]["name"] == jira_fake.api_user["name"]
    # Jira's documented create request: fields with project, issue type, summary, labels.
    ((_, _, body),) = [r for r in jira_fake.requests if r[:2] == ("POST", "/rest/api/2/issue")]
    assert body["fields"]["project"] == {"key": "PROJ"}
    assert body["fields"]["issuetype"] == {"name": "Story"}  # the project's `issue_type`

    # Later ticks in the same week file nothing more.
    assert await schedules_tick(engine, MONDAY + timedelta(hours=5)) == {}
    assert await perform_pending(deps, PERFORMERS) == 0
    assert (len(linear_filed(linear_fake)), len(jira_filed(jira_fake))) == (1, 1)


async def test_downtime_catches_up_once_and_skips_while_the_issue_is_open(
    deps: Deps, engine: Engine, jira_fake: FakeJira, linear_fake: FakeLinear
) -> None:
    await schedules_tick(engine, WEDNESDAY)
    back = MONDAY + timedelta(days=16)  # three Mondays missed: one issue each, not three
    assert await schedules_tick(engine, back) == {SlotOutcome.FILED: 2}
    assert await schedules_tick(engine, back + timedelta(minutes=1)) == {}
    await perform_pending(deps, PERFORMERS)
    (jira,) = jira_filed(jira_fake)
    assert jira["fields"]["summary"] == "Scan (2026-12-21)"
    (linear,) = linear_filed(linear_fake)
    # Filed, but no webhook has told the mirror yet: still counted open.
    week = back + timedelta(days=7)
    assert await schedules_tick(engine, week) == {SlotOutcome.SKIPPED_OPEN: 2}
    await add_ticket(deps, jira["key"], source=JIRA, state=None)
    await add_ticket(deps, linear["identifier"], source=LINEAR, state=None)
    async with transaction(deps.sessions) as session:
        await session.execute(
            update(Ticket).where(Ticket.key == linear["identifier"]).values(state="closed")
        )
    # The Jira issue is open in the mirror: skipped; the Linear one is closed: filed.
    assert await schedules_tick(engine, week + timedelta(days=7)) == {
        SlotOutcome.SKIPPED_OPEN: 1,
        SlotOutcome.FILED: 1,
    }
    await perform_pending(deps, PERFORMERS)
    assert (len(linear_filed(linear_fake)), len(jira_filed(jira_fake))) == (2, 1)


async def test_paused_files_nothing_and_run_now_files_at_once(
    deps: Deps, engine: Engine, linear_fake: FakeLinear
) -> None:
    await schedules_tick(engine, WEDNESDAY)
    team = Owner(LINEAR, "ENG")
    async with transaction(deps.sessions) as session:
        await set_paused(session, team, "weekly-triage", paused=True, by="admin")
    assert await schedules_tick(engine, MONDAY) == {
        SlotOutcome.PAUSED: 1,
        SlotOutcome.FILED: 1,  # the Jira project's
    }
    (view,) = await schedule_views(engine, full_name="linear:eng", now=MONDAY)
    assert (view.repository, view.schedule.name, view.paused) == (
        "Linear team ENG",
        "weekly-triage",
        True,
    )
    assert view.last_outcome == SlotOutcome.PAUSED
    found = await find_schedule(engine, "linear:eng", "weekly-triage")
    assert found is not None
    assert await run_now(engine, *found, by="admin") == SlotOutcome.FILED
    await perform_pending(deps, PERFORMERS)
    (issue,) = linear_filed(linear_fake)
    (view,) = await schedule_views(engine, full_name="linear:ENG", now=MONDAY)
    assert (view.last_outcome, view.last_issue) == (SlotOutcome.FILED, issue["identifier"])
    assert await find_schedule(engine, "jira:PROJ", "weekly-triage") is None


async def test_a_retry_after_a_lost_answer_files_nothing_twice(
    deps: Deps, engine: Engine, linear_fake: FakeLinear, jira_fake: FakeJira
) -> None:
    await schedules_tick(engine, WEDNESDAY)
    await schedules_tick(engine, MONDAY)
    # Both trackers create the issue, but their answers are lost on the way back.
    linear_fake.lose_answer("CreateIssue")
    jira_fake.lose_answer("POST", r"/rest/api/2/issue$")
    assert await perform_pending(deps, PERFORMERS) == 0  # both wait to be tried again
    await make_due(deps)
    assert await perform_pending(deps, PERFORMERS) == 2

    assert [op for op, _ in linear_fake.calls].count("CreateIssue") == 1
    creates = [r for r in jira_fake.requests if r[:2] == ("POST", "/rest/api/2/issue")]
    assert len(creates) == 1
    (linear,) = linear_filed(linear_fake)
    (jira,) = jira_filed(jira_fake)
    results = {
        effect.kind: (effect.status, effect.attempts, effect.result)
        for effect in (await outbox_rows(deps)).values()
    }
    assert results["linear_create_issue"][:2] == ("done", 2)
    assert results["linear_create_issue"][2] is not None
    assert results["linear_create_issue"][2]["key"] == linear["identifier"]
    assert results["linear_create_issue"][2]["created"] is False
    assert results["jira_create_issue"][2] is not None
    assert results["jira_create_issue"][2]["key"] == jira["key"]
    assert results["jira_create_issue"][2]["created"] is False
