"""Notifications in a whole lifecycle (tests/support/lifecycle.py): tickets driven through
signed webhooks to in review, merged and failed; a Slack and a webhook receiver on
127.0.0.1, each down for its first two requests, get each rule's events once, signed; a
rule for another repository sends nothing; a receiver that refuses shows in the activity."""

from __future__ import annotations

import textwrap
from typing import TypeVar

from sqlalchemy import select

from adapters.notify import webhook
from bot.config.control import ControlConfig, parse_control_config
from bot.config.states import State
from bot.tables.workflow import Activity
from tests.conftest import OpenWorld
from tests.support.lifecycle import FULL_NAME, World, repo_config
from tests.support.receivers import receivers

T = TypeVar("T")
SECRET = "whsec-lifecycle-not-real"
SLACK_TOKEN = "T000/B000/lifecycle-not-real"


async def test_each_rules_events_reach_slack_and_the_webhook_once(
    open_world: OpenWorld,
) -> None:
    async with (
        receivers(hook=2, slack=2) as got,
        open_world(config=repo_config(max_attempts=1)) as w,
    ):
        got.refuse.add("/gone")
        rules = textwrap.dedent(
            f"""\
            providers: {{x: {{cli: command, argv: [x]}}}}
            notifications:
              channels:
                team: {{kind: slack, url: "${{SLACK_URL}}"}}
                audit: {{kind: webhook, url: "{got.url}/hook", secret: "${{SECRET}}"}}
                gone: {{kind: webhook, url: "{got.url}/gone", secret: "${{SECRET}}"}}
                other: {{kind: webhook, url: "{got.url}/other", secret: "${{SECRET}}"}}
              rules:
                - {{events: [in_review, merged], channels: [team, audit], repos: [{FULL_NAME}]}}
                - {{events: [ticket_failed], channels: [audit, gone]}}
                - {{events: [in_review, ticket_failed], channels: [other], repos: [acme/other]}}
            """
        )
        env = {"SLACK_URL": f"{got.url}/slack/{SLACK_TOKEN}", "SECRET": SECRET}
        parsed = parse_control_config(rules, file="control.yml", environ=env)
        assert isinstance(parsed, ControlConfig), parsed
        w.engine.control = w.engine.control.model_copy(
            update={"notifications": parsed.notifications}
        )

        # The failure first: once #1's PASS file is merged, every gate passes.
        w.add_issue(2, "Impossible", "[never-pass]")
        await w.label(2, "openase")
        await w.reach(2, State.FAILED)
        w.add_issue(1, "Add a PASS file", "Please add it.")
        await w.label(1, "openase")
        await w.reach(1, State.IN_REVIEW)
        pull = await w.until(lambda: _async(w.pull_for(1)), what="the PR")
        await w.review(pull, "approved")
        await w.reach(1, State.DONE)

        hook = await w.until(
            lambda: _async(got.accepted("/hook") if len(got.accepted("/hook")) == 3 else None),
            within=90,
            what="three notifications through the webhook",
        )
        slack = await w.until(
            lambda: _async(
                got.accepted(f"/slack/{SLACK_TOKEN}")
                if len(got.accepted(f"/slack/{SLACK_TOKEN}")) == 2
                else None
            ),
            within=90,
            what="two notifications to Slack",
        )
        gave_up = await w.until(
            lambda: _activity(w, "notify_webhook failed"), what="the refused notification"
        )

        # Retries reorder them: a receiver must not rely on the order (`at` says when).
        by_event = {r.json()["event"]: r.json() for r in hook}
        assert sorted(by_event) == ["in_review", "merged", "ticket_failed"]
        for request in got.tried("/hook"):
            signature = request.headers["x-openase-signature-256"]
            assert webhook.verify(SECRET, request.body, signature)
        assert len(got.tried("/hook")) == 5  # two 503s, then each event once
        merged = by_event["merged"]
        assert merged["ticket"] == {
            "key": f"{FULL_NAME}#1",
            "title": "Add a PASS file",
            "url": w.issue(1)["html_url"],
            "repo": FULL_NAME,
        }
        assert merged["state"] == State.DONE
        assert merged["workflow"] == "coder"
        assert merged["pull_request_url"] == pull["html_url"]
        failed = by_event["ticket_failed"]
        assert failed["ticket"]["key"] == f"{FULL_NAME}#2"
        assert "the PASS file is missing" in failed["reason"]

        headlines = sorted(r.json()["blocks"][0]["text"]["text"] for r in slack)
        assert headlines[0].endswith("Add a PASS file>* is ready for review")
        assert headlines[1].endswith("Add a PASS file>* was merged")
        assert got.tried("/other") == []  # its rule is for another repository
        assert len(got.tried("/gone")) == 1  # a 404 is not retried
        assert gave_up == ["notify_webhook failed: the webhook refused the notification: HTTP 404"]
        # Sent ones are in the ticket's activity too.
        assert await _activity(w, "notified webhook channel audit of ticket_failed")


async def _activity(w: World, prefix: str) -> list[str]:
    async with w.deps.sessions() as session:
        messages = await session.scalars(
            select(Activity.message)
            .where(Activity.kind == "effect", Activity.message.startswith(prefix))
            .order_by(Activity.id)
        )
        return list(messages)


async def _async(value: T) -> T:
    return value
