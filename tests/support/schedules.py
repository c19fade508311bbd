"""A repository with a weekly schedule, in the fake GitHub and the mirror, and an engine to
run its slots: shared by the engine's and the CLI's tests of scheduled tickets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bot.deps import Deps
from bot.engine.context import Engine
from bot.registry import TrackerClients
from bot.tables.mirror import Installation, Repository
from harness_store.db import transaction
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo
from tests.support.lifecycle import control_config

INSTALLATION, REPO_ID, FULL_NAME = 4242, 777, "octo/sched"
CONFIG = """\
workflows:
  coder: {trigger_labels: [openase], provider: script}
schedules:
  - name: weekly-deps
    cron: "0 9 * * 1"
    timezone: Europe/Berlin
    title: "Update dependencies ({{ date }})"
    body: "Weekly {{ schedule }} for {{ repository }}."
    labels: [deps]
    workflow: coder
"""
# Mondays 09:00 in Berlin (08:00 UTC in winter).
WEDNESDAY = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
MONDAY = datetime(2026, 12, 7, 8, 0, 20, tzinfo=UTC)


def new_engine(deps: Deps, tmp_path: Path) -> Engine:
    """An engine as a worker has one (two of them: two workers)."""
    return Engine(
        deps=deps,
        github=deps.github_app(),
        control=control_config(tmp_path / "agent.py"),
        trackers=TrackerClients(),
    )


async def scheduled_repo(deps: Deps, github_api: FakeGitHubAPI, config: str = CONFIG) -> FakeRepo:
    """octo/sched with `config` on its default branch, installed and mirrored."""
    github_api.add_installation(INSTALLATION, "octo")
    fake = github_api.add_repo(FULL_NAME, REPO_ID, INSTALLATION)
    fake.data.update(default_branch="main")
    github_api.commit(fake, {".github/openase.yml": config}, branch="main")
    async with transaction(deps.sessions) as session:
        session.add(Installation(id=INSTALLATION, account_login="octo", account_type="User"))
        await session.flush()
        session.add(
            Repository(
                id=REPO_ID, full_name=FULL_NAME, installation_id=INSTALLATION, default_branch="main"
            )
        )
    return fake


# A Linear team and a Jira project routed to octo/sched, each with a weekly schedule whose
# workflow (the repository's `coder`) adds its trigger label.
TRACKER_CONTROL = f"""\
linear:
  teams:
    ENG:
      repo: {FULL_NAME}
      schedules:
        - name: weekly-triage
          cron: "0 9 * * 1"
          timezone: Europe/Berlin
          title: "Triage ({{{{ date }}}})"
          body: "Sort **{{{{ repository }}}}**'s new issues."
          labels: [triage]
          workflow: coder
jira:
  projects:
    PROJ:
      repo: {FULL_NAME}
      issue_type: Story
      schedules:
        - name: weekly-scan
          cron: "0 9 * * 1"
          timezone: Europe/Berlin
          title: "Scan ({{{{ date }}}})"
          body: "Run the **scanner** on {{{{ repository }}}}."
          labels: [security]
          workflow: coder
"""


def tracker_engine(deps: Deps, tmp_path: Path, trackers: TrackerClients) -> Engine:
    """An engine whose control config has the team's and the project's schedules."""
    return Engine(
        deps=deps,
        github=deps.github_app(),
        control=control_config(tmp_path / "agent.py", TRACKER_CONTROL),
        trackers=trackers,
    )
