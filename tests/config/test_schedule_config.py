"""`schedules:` in `.github/openase.yml` and under Linear teams and Jira projects in the
control-plane config: parsed, slot times, one clear problem per mistake."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.config.control import ControlConfig, parse_control_config
from bot.config.problems import ConfigProblem
from bot.config.repo import RepoConfig, parse_repo_config
from bot.config.schedules import Schedule, render_issue
from tests.config.test_workflow_config import control_config

SCHEDULES = """\
schedules:
  - name: weekly-deps
    cron: "0 9 * * 1"
    timezone: Europe/Berlin
    title: "Update dependencies ({{ date }})"
    body: "Weekly run of {{ schedule }} on {{ repository }} at {{ time }} {{ timezone }}."
    labels: [openase, deps]
  - name: nightly
    cron: "30 2 * * *"
    title: Nightly scan
    skip_if_open: false
"""


def parse(text: str) -> RepoConfig | list[ConfigProblem]:
    return parse_repo_config(text, control_config())


def test_schedules_parse_with_defaults() -> None:
    config = parse(SCHEDULES)
    assert isinstance(config, RepoConfig), config
    weekly, nightly = config.schedules
    assert weekly.timezone == "Europe/Berlin"
    assert weekly.labels == ("openase", "deps")
    assert weekly.skip_if_open is True
    assert (nightly.timezone, nightly.skip_if_open, nightly.workflow) == ("UTC", False, None)
    # Without `schedules:` a repository has none.
    assert parse("workflows: {coder: {}}\n").schedules == ()  # type: ignore[union-attr]


def test_slots_follow_the_time_zone() -> None:
    config = parse(SCHEDULES)
    assert isinstance(config, RepoConfig)
    weekly = config.schedules[0]
    # Monday 7 December 2026, 09:00 in Berlin is 08:00 UTC.
    now = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)
    assert weekly.latest_slot(now) == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    assert weekly.next_slot(now) == datetime(2026, 12, 14, 8, 0, tzinfo=UTC)
    # A slot is due in its own minute.
    at = datetime(2026, 12, 14, 8, 0, 30, tzinfo=UTC)
    assert weekly.latest_slot(at) == datetime(2026, 12, 14, 8, 0, tzinfo=UTC)


def test_templates_render_the_slot_sandboxed() -> None:
    config = parse(SCHEDULES)
    assert isinstance(config, RepoConfig)
    filed = render_issue(
        config.schedules[0], repository="octo/hello", slot=datetime(2026, 12, 7, 8, tzinfo=UTC)
    )
    assert filed.title == "Update dependencies (2026-12-07)"
    assert filed.body == "Weekly run of weekly-deps on octo/hello at 09:00 Europe/Berlin."


@pytest.mark.parametrize(
    ("field", "value", "key", "reason"),
    [
        ("cron", '"61 * * * *"', "schedules[0].cron", "is not a valid cron expression"),
        ("cron", '"* * * * * *"', "schedules[0].cron", "not a 5-field cron expression"),
        ("timezone", "Mars/Olympus", "schedules[0].timezone", "is not an IANA time zone"),
        ("title", '"{{ date "', "schedules[0].title", "is not a valid template"),
        ("workflow", "nope", "schedules[0].workflow", "no workflow 'nope'"),
    ],
)
def test_a_bad_schedule_is_one_clear_problem(field: str, value: str, key: str, reason: str) -> None:
    text = SCHEDULES.replace('    cron: "0 9 * * 1"\n', "").replace(
        "    timezone: Europe/Berlin\n", ""
    )
    fields = {"cron": '"0 9 * * 1"', "timezone": "UTC", field: value}
    lines = "".join(f"    {name}: {fields[name]}\n" for name in fields if name != "title")
    if field == "title":
        text = text.replace('    title: "Update dependencies ({{ date }})"\n', "")
        lines += f"    title: {value}\n"
    text = text.replace("  - name: weekly-deps\n", "  - name: weekly-deps\n" + lines)
    found = parse(text)
    assert isinstance(found, list), found
    assert len(found) == 1, found
    (problem,) = found
    assert problem.file == ".github/openase.yml"
    assert problem.key == key
    assert reason in problem.reason
    assert "line" in str(problem) or problem.line is not None


def test_a_schedule_name_is_used_once() -> None:
    text = SCHEDULES.replace("name: nightly", "name: weekly-deps")
    found = parse(text)
    assert isinstance(found, list)
    assert [(p.key, p.reason) for p in found] == [
        ("schedules[1].name", "'weekly-deps' is used twice")
    ]


def test_schedule_model_refuses_unknown_keys() -> None:
    found = parse(SCHEDULES.replace("    skip_if_open: false\n", "    skip_open: false\n"))
    assert isinstance(found, list)
    assert [p.key for p in found] == ["schedules[1].skip_open"]
    assert Schedule.model_fields.keys() >= {"name", "cron", "timezone", "skip_if_open"}


# --- a Linear team's and a Jira project's, in the control-plane config --------------------

TRACKER_SCHEDULES = """\
providers: {script: {cli: command, argv: [python3, agent.py, "{prompt_file}"]}}
linear:
  teams:
    ENG:
      repo: acme/api
      schedules:
        - {name: weekly-triage, cron: "0 9 * * 1", title: "Triage {{ date }}", labels: [triage]}
jira:
  projects:
    PROJ:
      repo: acme/api
      schedules:
        - name: nightly-scan
          cron: "30 2 * * *"
          timezone: Europe/Berlin
          title: Nightly scan
          workflow: security
"""


def test_teams_and_projects_have_schedules() -> None:
    config = parse_control_config(TRACKER_SCHEDULES, file="control.yml", environ={})
    assert isinstance(config, ControlConfig), config
    (triage,) = config.linear.teams["ENG"].schedules
    (scan,) = config.jira.projects["PROJ"].schedules
    assert (triage.name, triage.labels, triage.skip_if_open) == ("weekly-triage", ("triage",), True)
    assert (scan.timezone, scan.workflow) == ("Europe/Berlin", "security")


@pytest.mark.parametrize(
    ("old", "new", "key", "reason"),
    [
        (
            'cron: "0 9 * * 1"',
            'cron: "0 25 * * 1"',
            "linear.teams.ENG.schedules[0].cron",
            "is not a valid cron expression",
        ),
        (
            "timezone: Europe/Berlin",
            "timezone: Europe/Atlantis",
            "jira.projects.PROJ.schedules[0].timezone",
            "is not an IANA time zone",
        ),
        (
            "title: Nightly scan",
            'title: "{% if %}"',
            "jira.projects.PROJ.schedules[0].title",
            "is not a valid template",
        ),
        (
            "          workflow: security\n",
            "          workflow: security\n        - {name: nightly-scan, cron: '0 1 * * *', "
            "title: Again}\n",
            "jira.projects.PROJ.schedules[1].name",
            "'nightly-scan' is used twice",
        ),
        (
            "workflow: security\n",
            "workflow: security\n          labels: [ok, needs triage]\n",
            "jira.projects.PROJ.schedules[0].labels[1]",
            "Jira labels cannot contain spaces; got 'needs triage'",
        ),
    ],
)
def test_a_bad_team_or_project_schedule_is_one_clear_problem(
    old: str, new: str, key: str, reason: str
) -> None:
    found = parse_control_config(
        TRACKER_SCHEDULES.replace(old, new), file="control.yml", environ={}
    )
    assert isinstance(found, list), found
    (problem,) = found
    assert (problem.file, problem.key) == ("control.yml", key)
    assert reason in problem.reason
    assert problem.line is not None
