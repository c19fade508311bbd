"""The whole lifecycle once with a Linear ticket and once with a Jira ticket: a signed
webhook from the tracker in, the agent's PR on GitHub (the recording fake), the tracker
issue moved, labelled, commented and linked through its own API (the recording fakes of
tests/fakes), `/approve` from a tracker user config maps to a GitHub writer, merged, done.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import AnyHttpUrl, SecretStr
from sqlalchemy import select

from adapters.jira.verify import sign as jira_sign
from adapters.linear.verify import sign as linear_sign
from bot.config.states import State
from bot.registry import TrackerClients
from bot.tables.mirror import Delivery, Ticket
from bot.tables.workflow import Run, TicketState
from tests.conftest import JIRA_EMAIL, AppWith, OpenWorld
from tests.fakes.jira_server import FakeJira
from tests.fakes.linear_api import FakeLinear
from tests.support.lifecycle import FULL_NAME, WRITER, World

T = TypeVar("T")
Json = dict[str, Any]
LINEAR_SECRET = "linear-webhook-secret"
JIRA_SECRET = "jira-webhook-secret"


@dataclass
class Trackers:
    linear: FakeLinear
    jira: FakeJira
    clients: TrackerClients
    http: httpx.AsyncClient  # the app, with the trackers' webhook secrets set

    async def linear_event(self, payload: Json) -> None:
        payload = payload | {"webhookTimestamp": int(time.time() * 1000)}
        body = json.dumps(payload).encode()
        response = await self.http.post(
            "/webhooks/linear",
            content=body,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Linear-Delivery": str(uuid.uuid4()),
                "Linear-Event": payload["type"],
                "Linear-Signature": linear_sign(LINEAR_SECRET.encode(), body),
            },
        )
        assert response.status_code in (200, 202), response.text

    async def jira_event(self, payload: Json) -> None:
        body = json.dumps(payload).encode()
        response = await self.http.post(
            "/webhooks/jira",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Atlassian-Webhook-Identifier": str(uuid.uuid4().int % 10**9),
                "X-Hub-Signature": jira_sign(JIRA_SECRET.encode(), body),
            },
        )
        assert response.status_code in (200, 202), response.text


@pytest.fixture
async def trackers(
    app_with: AppWith,
    linear_fake: FakeLinear,
    jira_fake: FakeJira,
    tracker_clients: TrackerClients,
) -> AsyncIterator[Trackers]:
    async with app_with(
        linear_api_key=SecretStr(linear_fake.api_key),
        linear_webhook_secret=SecretStr(LINEAR_SECRET),
        linear_api_url=AnyHttpUrl(linear_fake.url),
        jira_url=AnyHttpUrl(jira_fake.url),
        jira_email=JIRA_EMAIL,
        jira_api_token=SecretStr(jira_fake.token),
        jira_webhook_secret=SecretStr(JIRA_SECRET),
    ) as http:
        yield Trackers(linear_fake, jira_fake, tracker_clients, http)


CONTROL = f"""\
linear:
  users: {{"ada@example.com": {WRITER}}}
  teams:
    ENG: {{repo: {FULL_NAME}, workflow: coder}}
jira:
  users: {{"5b10a2844c20165700ede21g": {WRITER}}}
  projects:
    PROJ: {{repo: {FULL_NAME}}}
"""


async def _async(value: T) -> T:
    return value


async def row_of(w: World, key: str) -> TicketState | None:
    async with w.deps.sessions() as session:
        found: TicketState | None = await session.scalar(
            select(TicketState)
            .join(Ticket, Ticket.id == TicketState.ticket_id)
            .where(Ticket.key == key)
        )
        return found


async def reach(w: World, key: str, state: str, within: float = 60) -> TicketState:
    async def there() -> TicketState | None:
        row = await row_of(w, key)
        return row if row is not None and row.state == state else None

    return await w.until(there, what=f"{key} {state}", within=within)


def pull_of(w: World, branch: str) -> Json | None:
    return next((p for p in w.repo.pulls if p["head"]["ref"] == branch), None)


async def settled(w: World, check: Callable[[], bool], what: str) -> None:
    await w.until(lambda: _async(True if check() else None), what=what)


async def test_a_linear_issue_goes_through_the_whole_lifecycle(
    open_world: OpenWorld, trackers: Trackers
) -> None:
    linear = trackers.linear
    team = linear.add_team("ENG", "Engineering")
    async with open_world(control_extra=CONTROL, trackers=trackers.clients) as w:
        # A Linear rate limit on the first write: honoured, then the writes go through.
        linear.rate_limit(times=1, reset_in=1.0)
        issue = linear.add_issue("ENG", "Add a PASS file", "Please add it.", labels=["openase"])
        await trackers.linear_event(linear.issue_webhook(issue["id"], action="create"))

        row = await reach(w, "ENG-1", State.IN_REVIEW)
        pull = await w.until(lambda: _async(pull_of(w, "openase/eng-1")), what="the PR")
        assert pull["title"] == "ENG-1: Add a PASS file"
        assert f"Linear: [ENG-1]({issue['url']})" in pull["body"]
        assert row.head_sha == pull["head"]["sha"]

        in_review = linear.state("ENG", "In Review")["id"]
        await settled(w, lambda: issue["stateId"] == in_review, "Linear issue In Review")
        names = {linear.labels[i]["name"] for i in issue["labelIds"]}
        await settled(
            w,
            lambda: "openase/in-review" in {linear.labels[i]["name"] for i in issue["labelIds"]},
            f"the in-review label (labels: {names})",
        )
        pr_url = pull["html_url"]
        await settled(
            w, lambda: any(a["url"] == pr_url for a in linear.attachments), "the PR attached"
        )

        def status_comments() -> list[Json]:
            return [
                c
                for c in linear.comments
                if c["userId"] == linear.viewer["id"] and "**OpenASE**" in c["body"]
            ]

        await settled(w, lambda: "Ready for review" in status_comments()[-1]["body"], "status")
        status = status_comments()
        assert len(status) == 1, "one status comment, edited in place"
        assert "✅ `openase/tests`" in status[0]["body"]
        assert any(name == "MoveIssue" for name, _ in linear.calls)

        # Linear sends our own changes back: the engine knows them by the API key's user.
        for echo in list(linear.outbound):
            await trackers.linear_event(echo)

        # Someone config does not map may not approve; the reply says how to be allowed.
        stranger = linear.add_user("Mallory", "mallory@example.com")
        refused = linear.add_comment(issue["id"], "/approve", user=stranger)
        await trackers.linear_event(linear.comment_webhook(refused["id"]))
        await settled(
            w,
            lambda: any("linear.users" in c["body"] for c in linear.comments),
            "the refusal",
        )
        assert (await row_of(w, "ENG-1")).state == State.IN_REVIEW  # type: ignore[union-attr]

        approve = linear.add_comment(issue["id"], "/approve")  # Ada: mapped to a writer
        await trackers.linear_event(linear.comment_webhook(approve["id"]))
        await reach(w, "ENG-1", State.DONE)
        await w.until(lambda: _async(w.fake.merges), what="the merge")
        done = linear.state("ENG", "Done")["id"]
        await settled(w, lambda: issue["stateId"] == done, "Linear issue Done")
        reactions = {r["emoji"] for r in linear.reactions if r["commentId"] == approve["id"]}
        assert {"eyes", "rocket"} <= reactions
        assert team["id"] == issue["teamId"]


async def test_a_jira_issue_goes_through_the_whole_lifecycle(
    open_world: OpenWorld, trackers: Trackers
) -> None:
    jira = trackers.jira
    jira.add_project("PROJ", "Project")
    async with open_world(control_extra=CONTROL, trackers=trackers.clients) as w:
        jira.rate_limit(times=1, retry_after=1)  # honoured: the write comes a second later
        issue = jira.add_issue("PROJ", "Add a PASS file", "Please add it.", labels=["openase"])
        key = issue["key"]
        await trackers.jira_event(jira.issue_webhook(key, event="jira:issue_created"))

        await reach(w, key, State.IN_REVIEW)
        pull = await w.until(lambda: _async(pull_of(w, "openase/proj-1")), what="the PR")
        assert pull["title"] == f"{key}: Add a PASS file"
        assert f"Jira: [{key}]({jira.url}/browse/{key})" in pull["body"]

        def status() -> str:
            return str(jira.issues[key]["fields"]["status"]["name"])

        await settled(w, lambda: status() == "In Review", "Jira issue In Review")
        await settled(
            w, lambda: "openase/in-review" in jira.issues[key]["fields"]["labels"], "label"
        )
        await settled(
            w,
            lambda: any(
                link["object"]["url"] == pull["html_url"] for link in jira.remote_links[key]
            ),
            "the PR linked",
        )
        ours = [c for c in jira.comments[key] if "*OpenASE*" in c["body"]]
        assert len(ours) == 1
        assert "{{openase/tests}}" in ours[0]["body"]  # wiki markup, not Markdown

        # The site's workflow has no way from In Review to Done: the bot says so.
        jira.transitions["In Review"] = [("61", "Back to work", "In Progress")]
        for echo in list(jira.outbound):
            await trackers.jira_event(echo)
        approve = jira.add_comment(key, "/approve")  # Alice: mapped to a writer
        await trackers.jira_event(jira.comment_webhook(key, approve["id"]))
        await reach(w, key, State.DONE)
        await w.until(lambda: _async(w.fake.merges), what="the merge")
        await settled(
            w,
            lambda: any("could not move" in c["body"] for c in jira.comments[key]),
            "the no-transition comment",
        )
        assert status() == "In Review"
        no_way = next(c["body"] for c in jira.comments[key] if "could not move" in c["body"])
        assert "Back to work → In Progress" in no_way


async def test_linear_run_command_and_a_human_cancel_by_moving_the_issue(
    open_world: OpenWorld, trackers: Trackers
) -> None:
    linear = trackers.linear
    linear.add_team("ENG", "Engineering")
    async with open_world(control_extra=CONTROL, trackers=trackers.clients) as w:
        # Made before the webhook was set up: `/run` is the first we hear of the issue.
        issue = linear.add_issue("ENG", "Take your time [slow]", "then add the PASS file")
        run = linear.add_comment(issue["id"], "/run")
        await trackers.linear_event(linear.comment_webhook(run["id"]))
        row = await reach(w, "ENG-1", State.IN_PROGRESS)
        assert row.run_id is not None
        started = linear.state("ENG", "In Progress")["id"]
        await settled(w, lambda: issue["stateId"] == started, "Linear issue In Progress")
        # Our own move came back as a webhook: not a human's, so nothing changes.
        for echo in list(linear.outbound):
            await trackers.linear_event(echo)
        assert (await row_of(w, "ENG-1")).state == State.IN_PROGRESS  # type: ignore[union-attr]

        await trackers.linear_event(linear.move_by_hand(issue["id"], "Canceled"))
        await reach(w, "ENG-1", State.CANCELED)
        await w.until(lambda: run_status(w, "ENG-1", "canceled"), what="the run to stop")


async def run_status(w: World, key: str, status: str) -> bool:
    async with w.deps.sessions() as session:
        statuses = (
            await session.scalars(
                select(Run.status).join(Ticket, Ticket.id == Run.ticket_id).where(Ticket.key == key)
            )
        ).all()
    return status in statuses


async def test_linear_issues_deleted_closed_or_misrouted(
    open_world: OpenWorld, trackers: Trackers
) -> None:
    linear = trackers.linear
    linear.add_team("ENG", "Engineering")
    linear.add_team("OPS", "Operations")
    misrouted = CONTROL.replace(
        "    ENG: {repo: octo/hello, workflow: coder}",
        "    ENG: {repo: octo/hello, workflow: coder}\n    OPS: {repo: octo/missing}",
    )
    async with open_world(control_extra=misrouted, trackers=trackers.clients) as w:
        # Deleted while the agent works: the agent stops, nothing is sent to the gone issue.
        slow = linear.add_issue("ENG", "Slow", "[slow]", labels=["openase"])
        await trackers.linear_event(linear.issue_webhook(slow["id"], action="create"))
        await reach(w, "ENG-1", State.IN_PROGRESS)
        await trackers.linear_event(linear.issue_webhook(slow["id"], action="remove"))
        await reach(w, "ENG-1", State.CANCELED)
        await w.until(lambda: run_status(w, "ENG-1", "canceled"), what="the run to stop")

        # Closed by a human in review: canceled here, and left in the state they chose.
        fast = linear.add_issue("ENG", "Fast", "add the PASS file", labels=["openase"])
        await trackers.linear_event(linear.issue_webhook(fast["id"], action="create"))
        await reach(w, "ENG-2", State.IN_REVIEW)
        in_review = linear.state("ENG", "In Review")["id"]
        await settled(w, lambda: fast["stateId"] == in_review, "ENG-2 In Review")
        await trackers.linear_event(linear.move_by_hand(fast["id"], "Done"))
        await reach(w, "ENG-2", State.CANCELED)
        canceled_label = "openase/canceled"
        await settled(
            w,
            lambda: canceled_label in {linear.labels[i]["name"] for i in fast["labelIds"]},
            "the canceled label",
        )
        assert fast["stateId"] == linear.state("ENG", "Done")["id"]

        # A team routed to a repository the App is not installed on: told once, on asking.
        lost = linear.add_issue("OPS", "Rotate keys", "", labels=["openase"])
        await trackers.linear_event(linear.issue_webhook(lost["id"], action="create"))
        await trackers.linear_event(linear.issue_webhook(lost["id"], action="update"))
        await settled(
            w,
            lambda: any("octo/missing" in c["body"] for c in linear.comments),
            "the misrouting comment",
        )
        told = [c for c in linear.comments if "octo/missing" in c["body"]]
        assert len(told) == 1
        assert "not a repository the GitHub App is installed on" in told[0]["body"]
        assert await row_of(w, "OPS-1") is None


async def test_without_linear_credentials_linear_tickets_are_only_mirrored(
    open_world: OpenWorld, trackers: Trackers
) -> None:
    linear = trackers.linear
    linear.add_team("ENG", "Engineering")
    async with open_world(control_extra=CONTROL, trackers=TrackerClients()) as w:
        issue = linear.add_issue("ENG", "Add a PASS file", "", labels=["openase"])
        await trackers.linear_event(linear.issue_webhook(issue["id"], action="create"))

        async def ingested() -> bool:
            async with w.deps.sessions() as session:
                statuses = (await session.scalars(select(Delivery.status))).all()
            return statuses == ["done"]

        await w.until(ingested, what="the delivery ingested")
        async with w.deps.sessions() as session:
            ticket = await session.scalar(select(Ticket).where(Ticket.key == "ENG-1"))
        assert ticket is not None  # mirrored
        assert ticket.repository_id is None  # not routed: nothing could be written back
        assert await row_of(w, "ENG-1") is None
        assert linear.calls == []
