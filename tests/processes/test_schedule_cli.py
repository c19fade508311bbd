"""`openase schedule list|pause|resume|run`: what it prints and keeps (real PostgreSQL, the
fake GitHub), and the usage it refuses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.deps import Deps
from bot.effects.issues import PERFORMERS
from bot.effects.perform import perform_pending
from bot.engine.context import Engine
from bot.engine.schedules import schedules_tick
from bot.processes.cli import build_parser, main
from bot.processes.schedule_cli import schedule_command
from bot.registry import TrackerClients
from bot.tables.schedules import ScheduleControl, ScheduleSlot, SlotOutcome
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo
from tests.support.lifecycle import control_config
from tests.support.schedules import (
    CONFIG,
    MONDAY,
    TRACKER_CONTROL,
    WEDNESDAY,
    new_engine,
    scheduled_repo,
    tracker_engine,
)


@pytest.fixture
def engine(deps: Deps, tmp_path: Path) -> Engine:
    return new_engine(deps, tmp_path)


@pytest.fixture
async def repo(deps: Deps, github_api: FakeGitHubAPI) -> FakeRepo:
    return await scheduled_repo(deps, github_api)


def printed(capsys: pytest.CaptureFixture[str]) -> str:
    """What the command printed (the test's log lines go to stdout too)."""
    lines = capsys.readouterr().out.splitlines(keepends=True)
    return "".join(line for line in lines if not re.match(r"\d{4}-\d\d-\d\d \d", line))


def complained(capsys: pytest.CaptureFixture[str]) -> str:
    """What the command said on stderr (log lines may go there too; ours start "openase:")."""
    lines = capsys.readouterr().err.splitlines(keepends=True)
    return "".join(line for line in lines if line.startswith("openase: "))


async def command(deps: Deps, engine: Engine, *argv: str) -> int:
    return await schedule_command(deps, engine, build_parser().parse_args(["schedule", *argv]))


async def test_list_shows_next_runs_and_pause_resume_keep_the_state(
    deps: Deps, engine: Engine, repo: FakeRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await command(deps, engine, "list") == 0
    (line,) = printed(capsys).splitlines()
    assert line.startswith("octo/sched  weekly-deps  0 9 * * 1 (Europe/Berlin)  active  next ")
    assert line.endswith(" UTC  last never")

    assert await command(deps, engine, "pause", "weekly-deps", "--repo", "octo/sched") == 0
    assert printed(capsys) == "openase: octo/sched weekly-deps paused\n"
    async with deps.sessions() as session:
        control = await session.scalar(select(ScheduleControl))
    assert control is not None
    assert (control.paused, control.changed_by) == (True, "cli")
    await schedules_tick(engine, WEDNESDAY)
    assert await schedules_tick(engine, MONDAY) == {SlotOutcome.PAUSED: 1}
    assert await command(deps, engine, "list", "--repo", "octo/sched") == 0
    out = printed(capsys)
    assert "  paused  next " in out
    assert "last 2026-12-07 08:00 UTC paused" in out

    assert await command(deps, engine, "resume", "weekly-deps", "--repo", "octo/sched") == 0
    assert printed(capsys) == "openase: octo/sched weekly-deps resumed\n"
    await command(deps, engine, "list")
    assert "  active  next " in printed(capsys)


async def test_run_files_the_issue_now(
    deps: Deps, engine: Engine, repo: FakeRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await command(deps, engine, "run", "weekly-deps", "--repo", "octo/sched") == 0
    assert printed(capsys) == ("openase: octo/sched weekly-deps: filed; a worker opens the issue\n")
    assert await perform_pending(deps, PERFORMERS) == 1
    (issue,) = [i for i in repo.issues if "openase:schedule" in (i.get("body") or "")]
    assert issue["title"].startswith("Update dependencies (")
    await command(deps, engine, "list")
    assert f" filed #{issue['number']}" in printed(capsys)


async def test_an_unknown_schedule_is_named(
    deps: Deps, engine: Engine, repo: FakeRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await command(deps, engine, "run", "nightly", "--repo", "octo/sched") == 1
    assert complained(capsys) == "openase: octo/sched has no schedule 'nightly'\n"


@pytest.mark.parametrize(
    "argv", [["pause"], ["run", "weekly-deps"], ["resume", "--repo", "octo/sched"]]
)
def test_actions_need_a_name_and_a_repository(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schedule", *argv]) == 2
    err = capsys.readouterr().err
    assert f"`openase schedule {argv[0]}` needs a NAME and --repo OWNER/NAME" in err


def test_schedule_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["schedule", "--help"])
    assert "next run" in capsys.readouterr().out


async def test_a_teams_and_a_projects_schedules_by_their_keys(
    deps: Deps, repo: FakeRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = tracker_engine(deps, tmp_path, TrackerClients())
    assert await command(deps, engine, "list", "--team", "ENG") == 0
    (line,) = printed(capsys).splitlines()
    assert line.startswith("Linear team ENG  weekly-triage  0 9 * * 1 (Europe/Berlin)  active  ")

    assert await command(deps, engine, "pause", "weekly-scan", "--project", "PROJ") == 0
    assert printed(capsys) == "openase: Jira project PROJ weekly-scan paused\n"
    async with deps.sessions() as session:
        control = await session.scalar(select(ScheduleControl))
    assert control is not None
    assert (control.scope, control.schedule, control.paused) == ("jira:PROJ", "weekly-scan", True)

    assert await command(deps, engine, "run", "weekly-triage", "--team", "eng") == 0
    assert printed(capsys) == (
        "openase: Linear team ENG weekly-triage: filed; a worker opens the issue\n"
    )
    async with deps.sessions() as session:
        slot = await session.scalar(select(ScheduleSlot))
    assert slot is not None
    assert (slot.scope, slot.outcome, slot.by) == ("linear:ENG", "filed", "cli")

    assert await command(deps, engine, "list") == 0
    out = printed(capsys)
    assert "Jira project PROJ  weekly-scan  0 9 * * 1 (Europe/Berlin)  paused  " in out
    assert "octo/sched  weekly-deps  " in out
    assert await command(deps, engine, "run", "weekly-triage", "--project", "PROJ") == 1
    assert complained(capsys) == "openase: Jira project PROJ has no schedule 'weekly-triage'\n"


async def test_list_names_a_repository_whose_bad_cron_stops_its_schedules(
    deps: Deps, engine: Engine, github_api: FakeGitHubAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    await scheduled_repo(deps, github_api, CONFIG.replace('"0 9 * * 1"', '"0 9 * * mon-"'))
    assert await command(deps, engine, "list", "--repo", "octo/sched") == 0
    lines = printed(capsys).splitlines()
    assert lines[:2] == [
        "openase: no schedules",
        "openase: octo/sched: no schedule of it runs; its config has problems:",
    ]
    (problem,) = lines[2:]
    assert problem.startswith("  .github/openase.yml, line 5: schedules[0].cron: ")
    assert "'0 9 * * mon-' is not a valid cron expression" in problem


async def test_a_team_schedule_whose_workflow_is_unknown_waits_and_says_why(
    deps: Deps, repo: FakeRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The routed repository (octo/sched) has no workflow `nightly`: no trigger label to add.
    unknown = TRACKER_CONTROL.replace("workflow: coder", "workflow: nightly", 1)
    engine = Engine(
        deps=deps,
        github=deps.github_app(),
        control=control_config(tmp_path / "agent.py", unknown),
        trackers=TrackerClients(),
    )
    assert await command(deps, engine, "run", "weekly-triage", "--team", "ENG") == 1
    assert complained(capsys) == (
        "openase: Linear team ENG weekly-triage waits: the trigger label of workflow "
        "'nightly' cannot be read from octo/sched's .github/openase.yml (not installed, "
        "unreadable, invalid, or without that workflow)\n"
    )
    assert await command(deps, engine, "pause", "weekly-triage", "--team", "ENG") == 0
    assert printed(capsys) == "openase: Linear team ENG weekly-triage paused\n"
    async with deps.sessions() as session:
        assert await session.scalar(select(ScheduleSlot)) is None
