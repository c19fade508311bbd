"""`openase sync linear:ENG` / `jira:PROJ`: every issue of a Linear team or Jira project into
the mirror, page by page, against the recording fakes of both trackers and a real Postgres."""

from __future__ import annotations

import argparse
import copy

import pytest
from sqlalchemy import select

from adapters.base import TicketUpserted
from bot.config.control import ControlConfig, parse_control_config
from bot.deps import Deps
from bot.errors import ConfigError
from bot.intake import mirror, tracker_backfill
from bot.intake.tracker_backfill import TrackerSyncReport, sync_tracker
from bot.processes.cli import build_parser, repository
from bot.registry import TrackerClients, linear_ticket_from_issue
from bot.tables.mirror import Ticket
from harness_store.db import transaction
from tests.fakes.jira_server import FakeJira
from tests.fakes.linear_api import FakeLinear


@pytest.fixture
def linear_fake(linear_fake: FakeLinear) -> FakeLinear:
    linear_fake.add_team("ENG", "Engineering")
    linear_fake.add_team("OPS", "Operations")
    return linear_fake


@pytest.fixture
def jira_fake(jira_fake: FakeJira) -> FakeJira:
    jira_fake.add_project("PROJ", "Project")
    jira_fake.add_project("OTHER", "Other")
    return jira_fake


@pytest.fixture
def clients(tracker_clients: TrackerClients) -> TrackerClients:
    return tracker_clients


@pytest.fixture
def control() -> ControlConfig:
    result = parse_control_config("", file="control.yml", environ={})
    assert isinstance(result, ControlConfig), result
    return result


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracker_backfill, "PAGE_SIZE", 2)


async def tickets(deps: Deps, source: str) -> list[Ticket]:
    async with deps.sessions() as session:
        rows = await session.execute(
            select(Ticket).where(Ticket.source == source).order_by(Ticket.key)
        )
        return list(rows.scalars())


# --- Linear --------------------------------------------------------------------------------------


async def test_a_linear_team_is_mirrored_over_several_pages(
    deps: Deps, clients: TrackerClients, control: ControlConfig, linear_fake: FakeLinear
) -> None:
    for n in range(1, 6):
        labels = ["openase"] if n % 2 else ["bug", "Frontend"]
        state = "Done" if n == 5 else "Todo"
        linear_fake.add_issue("ENG", f"Task {n}", f"body {n}", labels=labels, state=state)
    linear_fake.add_issue("OPS", "Not ours")

    report = await sync_tracker(deps, clients, control, "linear", "ENG")

    assert report == TrackerSyncReport("linear", "ENG", issues=5, pages=3)
    pages = [variables for name, variables in linear_fake.calls if name == "IssuesPage"]
    assert [page["first"] for page in pages] == [2, 2, 2]
    assert pages[0]["after"] is None
    assert pages[1]["after"] is not None
    rows = await tickets(deps, "linear")
    assert [row.key for row in rows] == ["ENG-1", "ENG-2", "ENG-3", "ENG-4", "ENG-5"]
    eng_2 = rows[1]
    stored = linear_fake.issues[eng_2.external_id]
    assert (eng_2.title, eng_2.body, eng_2.state) == ("Task 2", "body 2", "open")
    assert sorted(eng_2.labels) == ["Frontend", "bug"]
    assert eng_2.repository_id is None  # the engine routes it when it meets the ticket
    assert eng_2.html_url == stored["url"]
    assert eng_2.tracker is not None
    assert eng_2.tracker["team_key"] == "ENG"
    assert eng_2.tracker["team_id"] == stored["teamId"]
    assert (eng_2.tracker["state_name"], eng_2.tracker["state_type"]) == ("Todo", "unstarted")
    assert (rows[4].state, rows[4].state_reason) == ("closed", "completed")


async def test_syncing_a_linear_team_again_changes_nothing(
    deps: Deps, clients: TrackerClients, control: ControlConfig, linear_fake: FakeLinear
) -> None:
    for n in range(1, 4):
        linear_fake.add_issue("ENG", f"Task {n}")
    await sync_tracker(deps, clients, control, "linear", "ENG")
    first = [(row.id, row.key, row.external_updated_at) for row in await tickets(deps, "linear")]

    report = await sync_tracker(deps, clients, control, "linear", "ENG")

    assert report.issues == 3
    again = [(row.id, row.key, row.external_updated_at) for row in await tickets(deps, "linear")]
    assert again == first


async def test_a_newer_webhook_state_is_not_overwritten_by_the_backfill(
    deps: Deps, clients: TrackerClients, control: ControlConfig, linear_fake: FakeLinear
) -> None:
    issue = linear_fake.add_issue("ENG", "Task", labels=["openase"])
    as_paged = copy.deepcopy(linear_fake.issues[issue["id"]])  # what a slow backfill read
    # Meanwhile a human moves the issue, and its webhook reaches the mirror first.
    in_progress = linear_fake.state("ENG", "In Progress")
    await clients.linear_client().move_issue(issue["id"], in_progress["id"])
    webhook = linear_fake.outbound[-1]
    async with transaction(deps.sessions) as session:
        ticket = linear_ticket_from_issue(webhook["data"])
        await mirror.apply(session, [TicketUpserted(ticket, "update")])
    linear_fake.issues[issue["id"]] = as_paged  # the backfill now sees the older state

    await sync_tracker(deps, clients, control, "linear", "ENG")

    [row] = await tickets(deps, "linear")
    assert row.tracker is not None
    assert row.tracker["state_name"] == "In Progress"
    assert row.external_updated_at == ticket.updated_at


# --- Jira ----------------------------------------------------------------------------------------


async def test_a_jira_project_is_mirrored_over_several_pages(
    deps: Deps, clients: TrackerClients, control: ControlConfig, jira_fake: FakeJira
) -> None:
    jira_fake.add_issue("PROJ", "First", "do it", labels=["openase"], components=["UI"])
    jira_fake.add_issue("PROJ", "Second", labels=["openase", "backend"], status="In Progress")
    jira_fake.add_issue("PROJ", "Third", status="Done")
    jira_fake.add_issue("OTHER", "Not ours")

    report = await sync_tracker(deps, clients, control, "jira", "PROJ")

    assert report == TrackerSyncReport("jira", "PROJ", issues=3, pages=2)
    searches = [query for path, query in jira_fake.queries if path.endswith("/search/jql")]
    assert len(searches) == 2
    rows = await tickets(deps, "jira")
    assert [row.key for row in rows] == ["PROJ-1", "PROJ-2", "PROJ-3"]
    first, second, third = rows
    assert (first.title, first.body, first.labels) == ("First", "do it", ["openase"])
    assert first.external_id == jira_fake.issues["PROJ-1"]["id"]
    assert first.html_url == f"{jira_fake.url}/browse/PROJ-1"
    assert first.tracker is not None
    assert first.tracker["project_key"] == "PROJ"
    assert first.tracker["components"] == ["UI"]
    assert (first.tracker["status"], first.tracker["status_category"]) == ("To Do", "new")
    assert second.labels == ["openase", "backend"]
    assert second.tracker is not None
    assert second.tracker["status"] == "In Progress"
    assert (third.state, third.state_reason) == ("closed", "Done")


async def test_syncing_a_jira_project_again_changes_nothing(
    deps: Deps, clients: TrackerClients, control: ControlConfig, jira_fake: FakeJira
) -> None:
    for n in range(1, 4):
        jira_fake.add_issue("PROJ", f"Task {n}")
    await sync_tracker(deps, clients, control, "jira", "PROJ")
    first = [(row.id, row.key, row.external_updated_at) for row in await tickets(deps, "jira")]

    await sync_tracker(deps, clients, control, "jira", "PROJ")

    again = [(row.id, row.key, row.external_updated_at) for row in await tickets(deps, "jira")]
    assert again == first
    assert len(again) == 3


async def test_an_empty_project_is_one_page_and_no_tickets(
    deps: Deps, clients: TrackerClients, control: ControlConfig
) -> None:
    report = await sync_tracker(deps, clients, control, "jira", "PROJ")
    assert (report.issues, report.pages) == (0, 1)
    assert await tickets(deps, "jira") == []


# --- what may be synced --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "scope", "message"),
    [
        ("linear", "", "is not a team or project key"),
        ("jira", 'PROJ" OR project = "OTHER', "is not a team or project key"),
        ("jira", "PROJ OTHER", "is not a team or project key"),
        ("linear", "ENG\\", "is not a team or project key"),
        ("github", "ENG", "unknown tracker 'github'"),
    ],
)
async def test_invalid_keys_are_refused_before_asking_the_tracker(
    deps: Deps,
    clients: TrackerClients,
    control: ControlConfig,
    linear_fake: FakeLinear,
    jira_fake: FakeJira,
    source: str,
    scope: str,
    message: str,
) -> None:
    with pytest.raises(ConfigError, match=message):
        await sync_tracker(deps, clients, control, source, scope)
    assert linear_fake.calls == []
    assert jira_fake.requests == []


async def test_an_unconfigured_tracker_says_what_to_set(deps: Deps, control: ControlConfig) -> None:
    with pytest.raises(ConfigError, match="OPENASE_LINEAR_API_KEY"):
        await sync_tracker(deps, TrackerClients(), control, "linear", "ENG")


@pytest.mark.parametrize("value", ["linear:ENG", "jira:PROJ", "jira:Proj_2", "acme/api"])
def test_the_sync_argument_accepts_trackers_and_repositories(value: str) -> None:
    assert repository(value) == value
    assert build_parser().parse_args(["sync", value]).repo == value


@pytest.mark.parametrize("value", ["linear:", "jira:a b", "jira:PROJ-1", "linear:ENG/x"])
def test_the_sync_argument_refuses_bad_keys(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected"):
        repository(value)
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["sync", value])
    assert exited.value.code == 2
    assert "expected" in capsys.readouterr().err
