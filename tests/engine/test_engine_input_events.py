"""The webhooks the workflow engine reacts to (reviews, checks, project items) parse into
normalized events, checked against the raw example payloads of @octokit/webhooks-examples;
the mirror stores what they carry and their deliveries end done."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from adapters.base import (
    CheckRunRequested,
    ChecksCompleted,
    IssueRef,
    LabelsChanged,
    NormalizedEvent,
    PayloadError,
    ProjectItemChanged,
    PullRequestReviewed,
    ReviewCommented,
)
from adapters.github.events import parse
from bot.deps import Deps
from bot.tables.mirror import Delivery, DeliveryTicket, PullRequest, TicketPullRequest
from tests.support.helpers import GitHubWebhookSender, github_example, github_examples

IngestAll = Callable[[], Awaitable[list[str]]]

# Per event, the actions the engine uses; every other action is ignored with a reason.
HANDLED = {
    "pull_request_review": {"submitted", "edited", "dismissed"},
    "pull_request_review_comment": {"created"},
    "check_run": {"completed", "requested_action", "rerequested"},
    "check_suite": {"completed", "rerequested"},
    "projects_v2_item": {"created", "edited"},
}


def _examples(handled: bool) -> list[Any]:
    cases = []
    for event, actions in HANDLED.items():
        for index, payload in enumerate(github_examples(event)):
            if (payload["action"] in actions) == handled:
                cases.append(
                    pytest.param(event, payload, id=f"{event}-{payload['action']}-{index}")
                )
    return cases


def _only(event: str, payload: dict[str, Any]) -> NormalizedEvent:
    parsed = parse(event, payload)
    assert parsed.ignored_reason is None
    assert len(parsed.events) == 1
    return parsed.events[0]


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _pull_numbers(check: dict[str, Any]) -> tuple[int, ...]:
    return tuple(pr["number"] for pr in check["pull_requests"])


def _check_pull_request(event: PullRequestReviewed | ReviewCommented, p: dict[str, Any]) -> None:
    raw = p["pull_request"]
    pr = event.pull_request
    assert (pr.id, pr.number, pr.title, pr.state) == (
        raw["id"],
        raw["number"],
        raw["title"],
        raw["state"],
    )
    assert (pr.head_ref, pr.head_sha, pr.base_ref) == (
        raw["head"]["ref"],
        raw["head"]["sha"],
        raw["base"]["ref"],
    )
    assert pr.repo.full_name == p["repository"]["full_name"]


# --- every example -----------------------------------------------------------------------


@pytest.mark.parametrize(("event", "p"), _examples(handled=True))
def test_each_handled_example_parses_to_what_the_payload_says(
    event: str, p: dict[str, Any]
) -> None:
    parsed = _only(event, p)
    sender = p["sender"]
    if event == "pull_request_review":
        assert isinstance(parsed, PullRequestReviewed)
        review = p["review"]
        _check_pull_request(parsed, p)
        assert parsed.action == p["action"]
        assert parsed.review_id == review["id"]
        assert parsed.state == review["state"].lower()
        assert parsed.body == (review["body"] or "")
        assert (parsed.author_login, parsed.author_type) == (
            review["user"]["login"],
            review["user"]["type"],
        )
        assert parsed.commit_id == review["commit_id"]
        assert parsed.submitted_at == _time(review["submitted_at"])
    elif event == "pull_request_review_comment":
        assert isinstance(parsed, ReviewCommented)
        comment = p["comment"]
        _check_pull_request(parsed, p)
        assert parsed.comment.external_id == str(comment["id"])
        assert parsed.comment.body == comment["body"]
        assert parsed.comment.author_login == comment["user"]["login"]
        assert parsed.comment.author_type == comment["user"]["type"]
        assert parsed.comment.html_url == comment["html_url"]
        assert (parsed.path, parsed.line, parsed.review_id) == (
            comment["path"],
            comment.get("line"),  # older payloads have `position` only
            comment["pull_request_review_id"],
        )
    elif event in ("check_run", "check_suite"):
        check = p[event]
        if p["action"] == "completed":
            assert isinstance(parsed, ChecksCompleted)
            assert parsed.name == (check["name"] if event == "check_run" else None)
            assert parsed.conclusion == check["conclusion"]
        else:
            assert isinstance(parsed, CheckRunRequested)
            assert parsed.action == p["action"]
            assert parsed.actor_login == sender["login"]
            if event == "check_run":
                assert parsed.check_run_id == check["id"]
                assert parsed.name == check["name"]
                assert parsed.external_id == check["external_id"]
            else:
                assert (parsed.check_run_id, parsed.name, parsed.external_id) == (None, None, None)
            requested = p.get("requested_action")
            assert parsed.identifier == (requested["identifier"] if requested else None)
        assert parsed.repo.id == p["repository"]["id"]
        assert parsed.head_sha == check["head_sha"]
        assert parsed.app_id == check["app"]["id"]
        assert parsed.pull_numbers == _pull_numbers(check)
    else:
        assert isinstance(parsed, ProjectItemChanged)
        item = p["projects_v2_item"]
        assert parsed.action == p["action"]
        assert (parsed.item_node_id, parsed.project_node_id) == (
            item["node_id"],
            item["project_node_id"],
        )
        assert (parsed.content_node_id, parsed.content_type) == (
            item["content_node_id"],
            item["content_type"],
        )
        field_value = (p.get("changes") or {}).get("field_value") or {}
        assert parsed.field_node_id == field_value.get("field_node_id")
        assert parsed.field_type == field_value.get("field_type")
        # The examples predate the values' names in the payload.
        assert (parsed.from_value, parsed.to_value, parsed.field_name) == (None, None, None)
        assert (parsed.actor_login, parsed.actor_type) == (sender["login"], sender["type"])
        assert parsed.organization_login == p["organization"]["login"]


@pytest.mark.parametrize(("event", "p"), _examples(handled=False))
def test_other_actions_are_ignored_with_a_reason(event: str, p: dict[str, Any]) -> None:
    parsed = parse(event, p)
    assert parsed.events == ()
    assert parsed.ignored_reason == f"{event}.{p['action']} is not used"


def test_every_handled_action_has_an_example_or_a_variant_below() -> None:
    seen = {(e, p["action"]) for e in HANDLED for p in github_examples(e)}
    wanted = {(e, a) for e, actions in HANDLED.items() for a in actions}
    # No example of an edited review: test_an_edited_approval_with_its_references covers it.
    assert wanted - seen == {("pull_request_review", "edited")}


# --- variants the examples lack ------------------------------------------------------------


def test_an_edited_approval_with_its_references() -> None:
    p = github_example("pull_request_review", "submitted", 2)
    p["action"] = "edited"
    p["changes"] = {"body": {"from": "ok"}}
    p["review"].update(state="APPROVED", body="Looks good, ship it", submitted_at=None)
    p["review"]["user"].update(login="openase-dev[bot]", type="Bot")
    p["pull_request"]["head"]["ref"] = "openase/12-fix-typo"
    p["pull_request"]["body"] = "Fixes #12, closes other/repo#3"
    event = _only("pull_request_review", p)
    assert isinstance(event, PullRequestReviewed)
    assert (event.action, event.state, event.body) == ("edited", "approved", "Looks good, ship it")
    assert (event.author_login, event.author_type, event.submitted_at) == (
        "openase-dev[bot]",
        "Bot",
        None,
    )
    repo = p["repository"]["full_name"]
    assert event.closing_refs == (IssueRef(repo, 12), IssueRef("other/repo", 3))
    assert event.branch_ref == IssueRef(repo, 12)


def test_a_review_by_a_deleted_user_has_no_author() -> None:
    p = github_example("pull_request_review", "dismissed")
    p["review"]["user"] = None
    event = _only("pull_request_review", p)
    assert isinstance(event, PullRequestReviewed)
    assert (event.author_login, event.author_type, event.state) == (None, None, "dismissed")


def test_a_comment_on_a_whole_file_has_no_line() -> None:
    p = github_example("pull_request_review_comment", "created")
    p["comment"].update(line=None, subject_type="file", pull_request_review_id=None)
    event = _only("pull_request_review_comment", p)
    assert isinstance(event, ReviewCommented)
    assert (event.path, event.line, event.review_id) == (p["comment"]["path"], None, None)


@pytest.mark.parametrize("app_id", [1_234_567, 29310])
def test_check_runs_of_our_app_and_of_others_parse(app_id: int) -> None:
    p = github_example("check_run", "rerequested")
    p["check_run"]["app"]["id"] = app_id
    p["check_run"]["check_suite"]["app"]["id"] = app_id
    p["check_run"]["external_id"] = "run-7:review"
    event = _only("check_run", p)
    assert isinstance(event, CheckRunRequested)
    assert (event.app_id, event.external_id) == (app_id, "run-7:review")


def test_a_check_run_without_its_app_names_the_suites() -> None:
    p = github_example("check_run", "completed")
    p["check_run"]["app"] = None
    event = _only("check_run", p)
    assert isinstance(event, ChecksCompleted)
    assert event.app_id == p["check_run"]["check_suite"]["app"]["id"]


def test_a_fork_check_leaves_out_pull_requests_of_other_repositories() -> None:
    p = github_example("check_suite", "completed")
    upstream = {**p["check_suite"]["pull_requests"][0], "number": 900}
    upstream["base"] = {**upstream["base"], "repo": {**upstream["base"]["repo"], "id": 1}}
    p["check_suite"]["pull_requests"].append(upstream)
    event = _only("check_suite", p)
    assert isinstance(event, ChecksCompleted)
    assert event.pull_numbers == (p["check_suite"]["pull_requests"][0]["number"],)


@pytest.mark.parametrize(
    ("before", "after", "names"),
    [
        (
            {"id": "f75ad846", "name": "Todo", "color": "GRAY", "description": ""},
            {"id": "47fc9ee4", "name": "In Progress", "color": "YELLOW", "description": ""},
            ("Todo", "In Progress"),
        ),
        (None, {"id": "a1", "title": "Sprint 3", "duration": 14}, (None, "Sprint 3")),
        ("old text", "new text", ("old text", "new text")),
        (3, 5, ("3", "5")),
    ],
    ids=["single_select", "iteration", "text", "number"],
)
def test_a_project_field_edit_carries_the_values_names(before: Any, after: Any, names: Any) -> None:
    p = github_example("projects_v2_item", "edited")
    p["projects_v2_item"]["content_type"] = "Issue"
    p["changes"]["field_value"].update(field_name="Status", project_number=4)
    p["changes"]["field_value"]["from"] = before
    p["changes"]["field_value"]["to"] = after
    event = _only("projects_v2_item", p)
    assert isinstance(event, ProjectItemChanged)
    assert (event.from_value, event.to_value) == names
    assert (event.field_name, event.field_type, event.content_type) == (
        "Status",
        "single_select",
        "Issue",
    )


def test_a_draft_body_edit_names_no_field() -> None:
    p = github_example("projects_v2_item", "edited")
    p["changes"] = {"body": {"from": "a", "to": "b"}}
    event = _only("projects_v2_item", p)
    assert isinstance(event, ProjectItemChanged)
    assert (event.field_node_id, event.field_type, event.from_value, event.to_value) == (
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(("sender_type", "login"), [("User", "Codertocat"), ("Bot", "app[bot]")])
def test_label_changes_say_who_made_them(sender_type: str, login: str) -> None:
    p = github_example("issues", "labeled")
    p["sender"].update(type=sender_type, login=login)
    labels = [e for e in parse("issues", p).events if isinstance(e, LabelsChanged)]
    assert [(e.added, e.actor, e.actor_type) for e in labels] == [
        ((p["label"]["name"],), login, sender_type)
    ]


# --- malformed payloads --------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation setting `a.b[0].c` of a payload (None: deleting it)."""

    def mutate(payload: dict[str, Any]) -> None:
        *parents, last = path.replace("[", ".").replace("]", "").split(".")
        target: Any = payload
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        index: Any = int(last) if last.isdigit() else last
        if value is None:
            del target[index]
        else:
            target[index] = value

    return mutate


@pytest.mark.parametrize(
    ("event", "action", "mutate", "message"),
    [
        (
            "pull_request_review",
            "submitted",
            _set("review.id", None),
            "payload.review.id: expected an integer, got null",
        ),
        (
            "pull_request_review",
            "submitted",
            _set("review.state", "pending"),
            "payload.review.state: expected one of approved, changes_requested, commented, "
            "dismissed, got 'pending'",
        ),
        (
            "pull_request_review",
            "dismissed",
            _set("review.submitted_at", "yesterday"),
            "payload.review.submitted_at: not an ISO 8601 timestamp: 'yesterday'",
        ),
        (
            "pull_request_review",
            "submitted",
            _set("pull_request", None),
            "payload.pull_request: expected an object, got null",
        ),
        (
            "pull_request_review_comment",
            "created",
            _set("comment.line", "12"),
            "payload.comment.line: expected an integer, got a string",
        ),
        (
            "pull_request_review_comment",
            "created",
            _set("comment.pull_request_review_id", True),
            "payload.comment.pull_request_review_id: expected an integer, got a boolean",
        ),
        (
            "check_run",
            "completed",
            _set("check_run.head_sha", None),
            "payload.check_run.head_sha: expected a string, got null",
        ),
        (
            "check_run",
            "requested_action",
            _set("check_run.app.id", "25811"),
            "payload.check_run.app.id: expected an integer, got a string",
        ),
        (
            "check_run",
            "completed",
            _set("check_run.pull_requests[0]", 2),
            "payload.check_run.pull_requests[0]: expected an object, got int",
        ),
        (
            "check_run",
            "requested_action",
            _set("requested_action.identifier", 7),
            "payload.requested_action.identifier: expected a string or null, got int",
        ),
        (
            "check_suite",
            "rerequested",
            _set("check_suite.pull_requests[0].number", None),
            "payload.check_suite.pull_requests[0].number: expected an integer, got null",
        ),
        (
            "check_suite",
            "completed",
            _set("repository", None),
            "payload.repository: expected an object, got null",
        ),
        (
            "projects_v2_item",
            "created",
            _set("projects_v2_item.content_type", "Note"),
            "payload.projects_v2_item.content_type: expected one of Issue, PullRequest, "
            "DraftIssue, got 'Note'",
        ),
        (
            "projects_v2_item",
            "edited",
            _set("projects_v2_item.project_node_id", None),
            "payload.projects_v2_item.project_node_id: expected a string, got null",
        ),
        (
            "projects_v2_item",
            "edited",
            _set("changes.field_value.to", ["Done"]),
            "payload.changes.field_value.to: expected text, a number, an option or an "
            "iteration, got list",
        ),
        (
            "projects_v2_item",
            "edited",
            _set("changes.field_value.to", {"id": "x"}),
            "payload.changes.field_value.to: expected an option's name or an iteration's title",
        ),
        (
            "projects_v2_item",
            "edited",
            _set("changes.field_value", "Status"),
            "payload.changes.field_value: expected an object, got a string",
        ),
    ],
)
def test_a_malformed_payload_names_the_field(
    event: str, action: str, mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    payload = github_example(event, action)
    mutate(payload)
    with pytest.raises(PayloadError) as raised:
        parse(event, payload)
    assert str(raised.value) == message


# --- ingest ----------------------------------------------------------------------------------


async def test_a_review_stores_its_pull_request_and_links_the_ticket(
    github: GitHubWebhookSender, deps: Deps, ingest_all: IngestAll
) -> None:
    issue = github_example("issues", "opened")
    number = issue["issue"]["number"]
    review = github_example("pull_request_review", "submitted", 2)
    review["pull_request"]["head"]["ref"] = f"openase/{number}-fix"
    assert review["repository"]["id"] == issue["repository"]["id"]
    await github.send("issues", issue)
    await github.send("pull_request_review", review, delivery_id="review")
    assert await ingest_all() == ["done", "done"]
    raw = review["pull_request"]
    async with deps.sessions() as s:
        pr = (await s.execute(select(PullRequest))).scalar_one()
        links = (await s.execute(select(TicketPullRequest))).scalars().all()
        touched = (
            await s.execute(
                select(DeliveryTicket.ticket_id)
                .join(Delivery, Delivery.id == DeliveryTicket.delivery_id)
                .where(Delivery.delivery_id == "review")
            )
        ).scalars()
        assert (pr.id, pr.number, pr.head_ref, pr.head_sha) == (
            raw["id"],
            raw["number"],
            f"openase/{number}-fix",
            raw["head"]["sha"],
        )
        assert [(link.pull_request_id, link.via) for link in links] == [(raw["id"], "branch")]
        assert list(touched) == [links[0].ticket_id]


async def test_a_review_comment_stores_its_pull_request(
    github: GitHubWebhookSender, deps: Deps, ingest_all: IngestAll
) -> None:
    payload = github_example("pull_request_review_comment", "created")
    await github.send("pull_request_review_comment", payload)
    assert await ingest_all() == ["done"]
    async with deps.sessions() as s:
        pr = (await s.execute(select(PullRequest))).scalar_one()
    assert (pr.id, pr.title) == (payload["pull_request"]["id"], payload["pull_request"]["title"])


@pytest.mark.parametrize(
    ("event", "action"),
    [
        ("check_run", "completed"),
        ("check_run", "requested_action"),
        ("check_run", "rerequested"),
        ("check_suite", "completed"),
        ("check_suite", "rerequested"),
        ("projects_v2_item", "created"),
        ("projects_v2_item", "edited"),
    ],
)
async def test_engine_only_events_are_done_without_touching_the_mirror(
    github: GitHubWebhookSender, deps: Deps, ingest_all: IngestAll, event: str, action: str
) -> None:
    await github.send(event, github_example(event, action))
    assert await ingest_all() == ["done"]
    async with deps.sessions() as s:
        status, error = (await s.execute(select(Delivery.status, Delivery.error))).one()
        assert (status, error) == ("done", None)
        assert (await s.execute(select(PullRequest))).first() is None
        assert (await s.execute(select(DeliveryTicket))).first() is None
