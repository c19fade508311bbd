"""Every real example payload from @octokit/webhooks-examples is accepted and ingested,
and the mirror holds what the payload says (checked against the raw JSON, not the parser)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from bot.deps import Deps
from bot.tables.mirror import (
    Comment,
    Delivery,
    Installation,
    Label,
    PullRequest,
    Repository,
    Ticket,
)
from tests.support.helpers import GitHubWebhookSender, github_event_names, github_examples

IngestAll = Callable[[], Awaitable[list[str]]]
USED_EVENTS = {
    "installation",
    "installation_repositories",
    "repository",
    "issues",
    "issue_comment",
    "pull_request",
    "label",
    # The workflow engine's input: reviews store their PR; checks and project items only
    # reach the engine.
    "pull_request_review",
    "pull_request_review_comment",
    "check_run",
    "check_suite",
    "projects_v2_item",
}


async def test_every_event_type_github_sends_is_accepted(
    github: GitHubWebhookSender, deps: Deps, ingest_all: IngestAll
) -> None:
    sent = 0
    for event in github_event_names():
        for payload in github_examples(event):
            response = await github.send(event, payload)
            assert response.status_code in (200, 202), (event, response.text)
            sent += 1
    await ingest_all()
    async with deps.sessions() as s:
        rows = (await s.execute(select(Delivery.event, Delivery.status, Delivery.error))).all()
    assert len(rows) == sent
    failed = [(e, err) for e, status, err in rows if status == "failed"]
    assert failed == []
    for event, status, _ in rows:
        if event not in USED_EVENTS:
            assert status == "ignored", event
    assert {e for e, status, _ in rows if status == "done"} == USED_EVENTS


def _cases() -> list[Any]:
    cases = []
    for event in sorted(USED_EVENTS):
        for index, payload in enumerate(github_examples(event)):
            cases.append(
                pytest.param(event, payload, id=f"{event}-{payload.get('action')}-{index}")
            )
    return cases


@pytest.mark.parametrize(("event", "payload"), _cases())
async def test_example_is_mirrored(
    github: GitHubWebhookSender,
    deps: Deps,
    ingest_all: IngestAll,
    event: str,
    payload: dict[str, Any],
) -> None:
    response = await github.send(event, payload)
    assert response.status_code == 202
    await ingest_all()
    async with deps.sessions() as s:
        status, error = (await s.execute(select(Delivery.status, Delivery.error))).one()
        assert status in ("done", "ignored"), error
        await _check_mirror(s, event, payload, status)


async def _check_mirror(s: Any, event: str, p: dict[str, Any], status: str) -> None:
    action = p.get("action")
    if event == "issues":
        issue = p["issue"]
        ticket = (
            await s.execute(select(Ticket).where(Ticket.external_id == str(issue["id"])))
        ).scalar_one()
        assert ticket.number == issue["number"]
        assert ticket.title == issue["title"]
        assert ticket.labels == [label["name"] for label in issue.get("labels") or []]
        assert ticket.assignees == [a["login"] for a in issue.get("assignees") or []]
        repo = (
            await s.execute(select(Repository).where(Repository.id == ticket.repository_id))
        ).scalar_one()
        assert repo.full_name == p["repository"]["full_name"]
        if action == "deleted":
            assert ticket.state == "deleted"
        elif action == "transferred":
            assert ticket.state == "transferred"
            new_issue = p["changes"]["new_issue"]
            moved = (
                await s.execute(select(Ticket).where(Ticket.external_id == str(new_issue["id"])))
            ).scalar_one()
            assert (
                moved.key == f"{p['changes']['new_repository']['full_name']}#{new_issue['number']}"
            )
        else:
            assert ticket.state == (
                issue.get("state") or ("closed" if issue["closed_at"] else "open")
            )
    elif event == "issue_comment":
        if p["issue"].get("pull_request"):
            assert status == "ignored"
            return
        comment = (
            await s.execute(select(Comment).where(Comment.external_id == str(p["comment"]["id"])))
        ).scalar_one()
        assert comment.body == p["comment"]["body"]
        assert comment.author_login == p["comment"]["user"]["login"]
        assert comment.deleted == (action == "deleted")
        ticket = (
            await s.execute(select(Ticket).where(Ticket.id == comment.ticket_id))
        ).scalar_one()
        assert ticket.number == p["issue"]["number"]
    elif event in ("pull_request_review", "pull_request_review_comment"):
        if status == "ignored":  # review comments edited or deleted
            assert (event, action) != ("pull_request_review_comment", "created")
            return
        raw = p["pull_request"]
        pr = (await s.execute(select(PullRequest).where(PullRequest.id == raw["id"]))).scalar_one()
        assert (pr.number, pr.head_sha) == (raw["number"], raw["head"]["sha"])
    elif event == "pull_request":
        raw = p["pull_request"]
        pr = (await s.execute(select(PullRequest).where(PullRequest.id == raw["id"]))).scalar_one()
        assert (pr.number, pr.state, pr.merged) == (
            raw["number"],
            raw["state"],
            bool(raw["merged"]),
        )
        assert (pr.head_ref, pr.head_sha) == (raw["head"]["ref"], raw["head"]["sha"])
    elif event == "label":
        label = (await s.execute(select(Label).where(Label.id == p["label"]["id"]))).scalar_one()
        assert label.name == p["label"]["name"]
        assert label.deleted == (action == "deleted")
    elif event == "installation":
        inst = (
            await s.execute(select(Installation).where(Installation.id == p["installation"]["id"]))
        ).scalar_one()
        assert inst.account_login == p["installation"]["account"]["login"]
        assert inst.deleted == (action == "deleted")
        for raw_repo in p.get("repositories") or []:
            repo = (
                await s.execute(select(Repository).where(Repository.id == raw_repo["id"]))
            ).scalar_one()
            assert repo.full_name == raw_repo["full_name"]
            assert repo.active == (action != "deleted")
    elif event == "installation_repositories":
        for raw_repo in p["repositories_added"]:
            repo = (
                await s.execute(select(Repository).where(Repository.id == raw_repo["id"]))
            ).scalar_one()
            assert repo.active
            assert repo.installation_id == p["installation"]["id"]
        for raw_repo in p["repositories_removed"]:
            repo = (
                await s.execute(select(Repository).where(Repository.id == raw_repo["id"]))
            ).scalar_one()
            assert not repo.active
    elif event == "repository":
        repo = (
            await s.execute(select(Repository).where(Repository.id == p["repository"]["id"]))
        ).scalar_one()
        assert repo.full_name == p["repository"]["full_name"]
        assert repo.active == (action != "deleted")
