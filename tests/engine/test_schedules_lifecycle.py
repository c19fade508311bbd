"""Scheduled tickets through the running product: two control workers (the product's own,
with their crons) file a due slot's issue once, with no test code running the cron, and the
issue's trigger label starts the agent (a real `openase runner`) like a person's label — a
repository's on GitHub, a Linear team's and a Jira project's, whose issues come back as
their trackers' signed webhooks; a repository whose schedule has a bad cron is told so like
any config error."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AnyHttpUrl, SecretStr
from sqlalchemy import select

from adapters.jira.verify import sign as jira_sign
from adapters.linear.verify import sign as linear_sign
from bot.config.states import State
from bot.registry import TrackerClients
from bot.tables.mirror import Installation, Repository
from bot.tables.schedules import ScheduleSlot, SlotOutcome
from bot.tables.workflow import EffectStatus, OutboxEffect
from harness_store.db import transaction
from tests.conftest import JIRA_EMAIL, AppWith, OpenWorld
from tests.fakes.jira_server import FakeJira
from tests.fakes.linear_api import FakeLinear
from tests.support.lifecycle import FULL_NAME, INSTALLATION, REPO_ID, World, repo_config

Json = dict[str, Any]
NAME = "nightly-scan"
SCHEDULE = f"""\
schedules:
  - name: {NAME}
    cron: "0 3 * * *"
    title: "Nightly scan ({{{{ date }}}})"
    body: "Scan {{{{ repository }}}} for what broke overnight."
    workflow: coder
"""


def filed(w: World) -> list[Json]:
    return [issue for issue in w.repo.issues if "openase:schedule" in (issue.get("body") or "")]


async def _async(value: Any) -> Any:
    return value


async def seen_before(w: World, slot: datetime, scope: str = f"github:{REPO_ID}") -> None:
    """The repository as the mirror knows it, and the schedule (of `scope`) as an earlier
    worker left it: its first slot recorded (not filed), days ago; no worker has run since."""
    data = w.repo.data
    async with transaction(w.deps.sessions) as session:
        session.add(Installation(id=INSTALLATION, account_login="octo", account_type="User"))
        await session.flush()
        session.add(
            Repository(
                id=REPO_ID,
                full_name=data["full_name"],
                installation_id=INSTALLATION,
                default_branch="main",
                clone_url=data["clone_url"],
                html_url=data.get("html_url"),
            )
        )
        await session.flush()
        session.add(
            ScheduleSlot(
                scope=scope,
                repository_id=REPO_ID if scope.startswith("github:") else None,
                schedule=NAME,
                slot_at=slot,
                outcome=SlotOutcome.FIRST_SEEN,
            )
        )


async def test_running_workers_file_a_missed_slot_once_and_its_label_starts_the_agent(
    open_world: OpenWorld,
) -> None:
    async with open_world(config=repo_config(extra=SCHEDULE), workers=0) as w:
        today = datetime.now(UTC).replace(hour=3, minute=0, second=0, microsecond=0)
        due = today if today <= datetime.now(UTC) else today - timedelta(days=1)
        await seen_before(w, due - timedelta(days=3))
        # Two workers start after the downtime; each runs the schedules' cron at once.
        await w.start_worker()
        await w.start_worker()

        (issue,) = await w.until(lambda: _async(filed(w)), what="the scheduled issue")
        assert issue["title"] == f"Nightly scan ({due:%Y-%m-%d})"
        assert issue["body"].startswith("Scan octo/hello for what broke overnight.")
        assert [label["name"] for label in issue["labels"]] == ["openase"]
        # The slot is settled once: both workers ran the cron, one claimed the slot.
        async with w.deps.sessions() as session:
            slots = (
                await session.execute(
                    select(ScheduleSlot.slot_at, ScheduleSlot.outcome, ScheduleSlot.by).order_by(
                        ScheduleSlot.id
                    )
                )
            ).all()
        assert slots[1:] == [(due, SlotOutcome.FILED, None)]

        async def create_effects() -> list[tuple[str, int]] | None:
            async with w.deps.sessions() as session:
                effects = (
                    await session.scalars(
                        select(OutboxEffect).where(OutboxEffect.kind == "create_issue")
                    )
                ).all()
            # The effect is marked done after GitHub answered, so it may trail the issue.
            if any(effect.status == EffectStatus.PENDING for effect in effects):
                return None
            return [(effect.status, effect.attempts) for effect in effects]

        done = await w.until(create_effects, what="the create_issue effect settled")
        assert done == [(EffectStatus.DONE, 1)]

        # GitHub tells of the issue the App opened, labelled: the agent takes it.
        await w.send(
            "issues", {"action": "opened", "issue": issue, **w.envelope("openase[bot]", "Bot")}
        )
        await w.reach(issue["number"], State.IN_REVIEW)
        pull = await w.until(lambda: _async(w.pull_for(issue["number"])), what="the PR")
        assert f"#{issue['number']}" in pull["body"]
        assert len(filed(w)) == 1


async def test_a_bad_cron_is_reported_like_any_config_error(open_world: OpenWorld) -> None:
    broken = repo_config(extra=SCHEDULE.replace('"0 3 * * *"', '"0 3 * * 8"'))
    async with open_world(config=broken) as w:
        w.add_issue(14, "Scan by hand", "add PASS")
        await w.label(14, "openase")
        said = await w.until(
            lambda: _async([c for c in w.bot_comments(14) if "cannot run this ticket" in c]),
            what="the config comment",
        )
        (comment,) = said
        assert ".github/openase.yml" in comment
        problems = [line for line in comment.splitlines() if line.startswith("- ")]
        (problem,) = problems
        assert "schedules[0].cron" in problem
        assert "'0 3 * * 8' is not a valid cron expression" in problem
        assert await w.runs(14) == []
        assert filed(w) == []


TEAM = f"""\
linear:
  teams:
    ENG:
      repo: {FULL_NAME}
      schedules:
        - name: {NAME}
          cron: "0 3 * * *"
          title: "Nightly scan ({{{{ date }}}})"
          body: "Scan {{{{ repository }}}}."
          workflow: coder
"""
LINEAR_SECRET = "linear-webhook-secret"


async def test_a_linear_teams_missed_slot_is_filed_once_and_the_agent_works_on_it(
    open_world: OpenWorld,
    app_with: AppWith,
    linear_fake: FakeLinear,
    tracker_clients: TrackerClients,
) -> None:
    linear_fake.add_team("ENG", "Engineering")
    settings = {
        "linear_api_key": SecretStr(linear_fake.api_key),
        "linear_webhook_secret": SecretStr(LINEAR_SECRET),
        "linear_api_url": AnyHttpUrl(linear_fake.url),
    }
    async with (
        app_with(**settings) as http,
        open_world(control_extra=TEAM, trackers=tracker_clients, workers=0) as w,
    ):
        now = datetime.now(UTC)
        due = now.replace(hour=3, minute=0, second=0, microsecond=0)
        due = due if due <= now else due - timedelta(days=1)
        await seen_before(w, due - timedelta(days=3), scope="linear:ENG")
        await w.start_worker()
        await w.start_worker()

        def filed_in_linear() -> list[Json]:
            return [
                i for i in linear_fake.issues.values() if i["creatorId"] == linear_fake.viewer["id"]
            ]

        (issue,) = await w.until(lambda: _async(filed_in_linear()), what="the Linear issue")
        assert issue["title"] == f"Nightly scan ({due:%Y-%m-%d})"
        assert [linear_fake.labels[i]["name"] for i in issue["labelIds"]] == ["openase"]

        # Linear's webhook for the issue the API key's user created: the agent takes it.
        (created,) = [
            o for o in linear_fake.outbound if (o["type"], o["action"]) == ("Issue", "create")
        ]
        body = json.dumps(created | {"webhookTimestamp": int(time.time() * 1000)}).encode()
        response = await http.post(
            "/webhooks/linear",
            content=body,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Linear-Delivery": str(uuid.uuid4()),
                "Linear-Event": "Issue",
                "Linear-Signature": linear_sign(LINEAR_SECRET.encode(), body),
            },
        )
        assert response.status_code in (200, 202), response.text
        pull = await w.until(
            lambda: _async(
                next((p for p in w.repo.pulls if p["head"]["ref"] == "openase/eng-1"), None)
            ),
            what="the PR for ENG-1",
        )
        assert pull["title"] == f"ENG-1: Nightly scan ({due:%Y-%m-%d})"
        assert len(filed_in_linear()) == 1


PROJECT = TEAM.replace("linear:\n  teams:\n    ENG:", "jira:\n  projects:\n    PROJ:")
JIRA_SECRET = "jira-webhook-secret"


async def test_a_jira_projects_missed_slot_is_filed_once_and_the_agent_works_on_it(
    open_world: OpenWorld,
    app_with: AppWith,
    jira_fake: FakeJira,
    tracker_clients: TrackerClients,
) -> None:
    jira_fake.add_project("PROJ", "Project")
    settings = {
        "jira_url": AnyHttpUrl(jira_fake.url),
        "jira_email": JIRA_EMAIL,
        "jira_api_token": SecretStr(jira_fake.token),
        "jira_webhook_secret": SecretStr(JIRA_SECRET),
    }
    async with (
        app_with(**settings) as http,
        open_world(control_extra=PROJECT, trackers=tracker_clients, workers=0) as w,
    ):
        now = datetime.now(UTC)
        due = now.replace(hour=3, minute=0, second=0, microsecond=0)
        due = due if due <= now else due - timedelta(days=1)
        await seen_before(w, due - timedelta(days=3), scope="jira:PROJ")
        await w.start_worker()
        await w.start_worker()

        def filed_in_jira() -> list[Json]:
            return [
                i
                for i in jira_fake.issues.values()
                if "openase:schedule" in (i["fields"]["description"] or "")
            ]

        (issue,) = await w.until(lambda: _async(filed_in_jira()), what="the Jira issue")
        assert issue["fields"]["summary"] == f"Nightly scan ({due:%Y-%m-%d})"
        assert issue["fields"]["labels"] == ["openase"]

        # Jira's webhook for the issue the API user created: the agent takes it.
        (created,) = [o for o in jira_fake.outbound if o["webhookEvent"] == "jira:issue_created"]
        body = json.dumps(created).encode()
        response = await http.post(
            "/webhooks/jira",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Atlassian-Webhook-Identifier": str(uuid.uuid4().int % 10**9),
                "X-Hub-Signature": jira_sign(JIRA_SECRET.encode(), body),
            },
        )
        assert response.status_code in (200, 202), response.text
        branch = f"openase/{issue['key'].lower()}"
        pull = await w.until(
            lambda: _async(next((p for p in w.repo.pulls if p["head"]["ref"] == branch), None)),
            what=f"the PR for {issue['key']}",
        )
        assert pull["title"] == f"{issue['key']}: Nightly scan ({due:%Y-%m-%d})"
        assert len(filed_in_jira()) == 1
