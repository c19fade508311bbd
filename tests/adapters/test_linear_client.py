"""The Linear client against the recording fake of Linear's GraphQL API, which executes
every request against Linear's published schema (and refuses what Linear would refuse)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import graphql
import httpx
import pytest
import respx

from adapters.base import (
    CommentCreated,
    CommentDeleted,
    CommentEdited,
    TicketInfo,
    TicketRemoved,
    TicketUpserted,
)
from adapters.errors import AdapterError, RateLimited, RequestRejected, TransientError
from adapters.linear.client import IssuePage, LinearClient, LinearLabel
from adapters.linear.documents import DOCUMENTS
from adapters.linear.events import parse, ticket_from_issue
from adapters.linear.verify import timestamp_fresh
from tests.fakes.linear_api import FakeLinear, linear_schema

API_KEY = "lin_api_0123456789abcdefSECRETkey"


@pytest.fixture
def fake() -> Iterator[FakeLinear]:
    fake = FakeLinear(api_key=API_KEY)
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        fake.mount(router)
        yield fake
    # Everything the client sent was a request Linear's schema accepts.
    assert fake.invalid == []


@pytest.fixture
async def linear(fake: FakeLinear) -> AsyncIterator[LinearClient]:
    client = LinearClient(API_KEY, url=fake.url, timeout=5.0)
    yield client
    await client.aclose()


@pytest.fixture
def eng(fake: FakeLinear) -> dict[str, Any]:
    return fake.add_team("ENG", "Engineering")


def names(fake: FakeLinear) -> list[str]:
    return [name for name, _ in fake.calls]


# --- the documents ----------------------------------------------------------------------------


@pytest.mark.parametrize("operation", sorted(DOCUMENTS))
def test_every_document_validates_against_linears_schema(operation: str) -> None:
    document = graphql.parse(DOCUMENTS[operation])
    assert graphql.validate(linear_schema(), document) == []
    operations = [
        d.name.value
        for d in document.definitions
        if isinstance(d, graphql.OperationDefinitionNode) and d.name
    ]
    assert operations == [operation]


async def test_the_fake_refuses_what_linears_schema_refuses(fake: FakeLinear) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            fake.url,
            headers={"Authorization": API_KEY},
            json={"query": "query Bad { issue(id: 1) { identifer } }"},
        )
    assert answer.status_code == 400
    errors = answer.json()["errors"]
    assert {e["extensions"]["code"] for e in errors} == {"GRAPHQL_VALIDATION_FAILED"}
    assert any("identifer" in e["message"] for e in errors)
    assert [query for query, _ in fake.invalid] == ["query Bad { issue(id: 1) { identifer } }"]
    fake.invalid.clear()


# --- reads ------------------------------------------------------------------------------------


async def test_viewer_id_is_the_keys_user_and_asked_once(
    fake: FakeLinear, linear: LinearClient
) -> None:
    assert await linear.viewer_id() == fake.viewer["id"]
    assert await linear.viewer_id() == fake.viewer["id"]
    assert names(fake) == ["Viewer"]


async def test_team_states_are_cached(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    states = await linear.team_states(eng["id"])
    assert [(s.name, s.type) for s in states] == [
        ("Triage", "triage"),
        ("Backlog", "backlog"),
        ("Todo", "unstarted"),
        ("In Progress", "started"),
        ("In Review", "started"),
        ("Done", "completed"),
        ("Canceled", "canceled"),
    ]
    assert [s.id for s in states] == [s["id"] for s in eng["states"]]
    assert await linear.team_states(eng["id"]) == states
    assert names(fake) == ["TeamStates"]


async def test_team_labels_are_the_teams_and_the_workspaces(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    fake.add_team("OPS", "Operations")
    team_label = fake.add_label("bug", "ENG")
    workspace_label = fake.add_label("security")
    fake.add_label("pager", "OPS")
    group = fake.add_label("area", "ENG")
    group["isGroup"] = True  # a group only holds labels; it cannot go on an issue
    labels = await linear.team_labels(eng["id"])
    assert sorted(labels, key=lambda label: label.name) == [
        LinearLabel(team_label["id"], "bug"),
        LinearLabel(workspace_label["id"], "security"),
    ]
    await linear.team_labels(eng["id"])
    assert names(fake) == ["TeamLabels"]


async def test_team_labels_are_read_across_pages(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    made = {fake.add_label(f"label-{i:03}", "ENG")["id"] for i in range(260)}
    labels = await linear.team_labels(eng["id"])
    assert {label.id for label in labels} == made
    assert names(fake) == ["TeamLabels", "TeamLabels"]
    assert fake.calls[0][1]["after"] is None
    assert fake.calls[1][1]["after"]


async def test_ensure_label_finds_an_existing_label_in_any_case(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    existing = fake.add_label("OpenASE")
    label = await linear.ensure_label(eng["id"], "openase")
    assert label == LinearLabel(existing["id"], "OpenASE")
    assert names(fake) == ["TeamLabels"]
    assert fake.outbound == []


async def test_ensure_label_creates_a_missing_label_on_the_team(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    label = await linear.ensure_label(eng["id"], "openase/in-review", color="#0f783c")
    stored = fake.labels[label.id]
    assert (stored["name"], stored["teamId"], stored["color"]) == (
        "openase/in-review",
        eng["id"],
        "#0f783c",
    )
    assert [(w["type"], w["action"]) for w in fake.outbound] == [("IssueLabel", "create")]
    # The cache knows the new label: asking again sends nothing.
    assert await linear.ensure_label(eng["id"], "OpenASE/In-Review") == label
    assert names(fake) == ["TeamLabels", "CreateLabel"]


async def test_ensure_label_takes_a_label_made_meanwhile_by_someone_else(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    assert await linear.team_labels(eng["id"]) == []
    theirs = fake.add_label("openase", "ENG")  # after our list was cached
    label = await linear.ensure_label(eng["id"], "openase")
    assert label.id == theirs["id"]
    assert names(fake) == ["TeamLabels", "CreateLabel", "TeamLabels"]


async def test_an_issue_comes_back_shaped_like_its_webhook(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    created = fake.add_issue(
        "ENG", "Login rejects plus signs", "Steps: ...", labels=["bug", "openase"]
    )
    issue = await linear.issue(created["id"])
    assert issue["identifier"] == "ENG-1"
    assert issue["number"] == 1
    assert issue["teamId"] == eng["id"] == issue["team"]["id"]
    assert issue["stateId"] == fake.state("ENG", "Todo")["id"] == issue["state"]["id"]
    assert [label["name"] for label in issue["labels"]] == ["bug", "openase"]
    assert issue["labelIds"] == created["labelIds"]
    assert issue["creator"] == {
        "id": fake.human["id"],
        "name": "Ada Lovelace",
        "email": "ada@example.com",
    }
    assert issue["assignee"] is None
    assert issue["project"] is None
    # The same ticket as Linear's webhook for it (which names no creator).
    from_api = ticket_from_issue(issue)
    from_webhook = ticket_from_issue(fake.issue_webhook(created["id"])["data"])
    # (`tracker` holds the extras each shape has; the common fields must agree.)
    assert dataclasses.replace(from_api, author_login=None, tracker=None) == dataclasses.replace(
        from_webhook, tracker=None
    )
    assert from_api.author_login == "Ada Lovelace"
    assert (from_api.key, from_api.state, from_api.labels) == ("ENG-1", "open", ("bug", "openase"))
    # Linear also finds an issue by its identifier.
    assert (await linear.issue("ENG-1"))["id"] == created["id"]


async def test_a_missing_issue_is_rejected_as_not_found(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    with pytest.raises(RequestRejected) as caught:
        await linear.issue("ENG-404")
    assert caught.value.status == 404
    assert "Issue" in str(caught.value)
    assert "Entity not found: Issue" in str(caught.value)


async def test_issue_pages_run_newest_update_first_over_every_issue_of_the_team(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    fake.add_team("OPS", "Operations")
    fake.add_issue("OPS", "not ours")
    made = [fake.add_issue("ENG", f"issue {i}") for i in range(5)]
    await linear.move_issue(made[1]["id"], fake.state("ENG", "In Progress")["id"])
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        page = await linear.issues_page("ENG", after=after, first=2)
        assert isinstance(page, IssuePage)
        pages += 1
        seen.extend(issue["identifier"] for issue in page.issues)
        for issue in page.issues:
            ticket_from_issue(issue)
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert pages == 3
    assert seen == ["ENG-2", "ENG-5", "ENG-4", "ENG-3", "ENG-1"]


# --- writes -----------------------------------------------------------------------------------


async def test_move_issue_changes_state_and_linear_sends_the_update(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    issue = fake.add_issue("ENG", "ship it")
    todo, done = fake.state("ENG", "Todo"), fake.state("ENG", "Done")
    before = issue["updatedAt"]
    await linear.move_issue(issue["id"], done["id"])
    assert issue["stateId"] == done["id"]
    assert issue["completedAt"] is not None
    assert issue["updatedAt"] > before
    [webhook] = fake.outbound
    assert webhook["actor"]["id"] == fake.viewer["id"]
    assert webhook["updatedFrom"] == {
        "stateId": todo["id"],
        "completedAt": None,
        "updatedAt": before,
    }
    [event] = [e for e in parse("issue", webhook).events if isinstance(e, TicketUpserted)]
    assert (event.ticket.state, event.ticket.state_reason) == ("closed", "completed")


async def test_labels_are_added_and_removed(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    issue = fake.add_issue("ENG", "label me", labels=["bug"])
    [bug] = issue["labelIds"]
    label = await linear.ensure_label(eng["id"], "openase")
    await linear.add_label(issue["id"], label.id)
    assert issue["labelIds"] == [bug, label.id]
    await linear.add_label(issue["id"], label.id)  # already there: nothing changes
    await linear.remove_label(issue["id"], bug)
    assert issue["labelIds"] == [label.id]
    updates = [w for w in fake.outbound if w["type"] == "Issue"]
    assert [w["updatedFrom"]["labelIds"] for w in updates] == [[bug], [bug, label.id]]
    assert updates[-1]["data"]["labelIds"] == [label.id]


async def test_comments_are_created_and_edited(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    issue = fake.add_issue("ENG", "talk")
    made = await linear.create_comment(issue["id"], "On it.\n<!-- openase:status -->")
    [stored] = fake.comments
    assert made == {"id": stored["id"], "url": stored["url"]}
    assert (stored["userId"], stored["issueId"]) == (fake.viewer["id"], issue["id"])
    edited = await linear.update_comment(made["id"], "Done.\n<!-- openase:status -->")
    assert edited == made
    assert stored["body"] == "Done.\n<!-- openase:status -->"
    assert stored["editedAt"]
    created, updated = fake.outbound
    assert {created["actor"]["id"], updated["actor"]["id"]} == {fake.viewer["id"]}
    assert updated["updatedFrom"]["body"] == "On it.\n<!-- openase:status -->"
    [first] = parse("comment", created).events
    [second] = parse("comment", updated).events
    assert isinstance(first, CommentCreated)
    assert isinstance(second, CommentEdited)
    assert second.comment.body == "Done.\n<!-- openase:status -->"


async def test_editing_a_deleted_comment_is_rejected_as_not_found(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    issue = fake.add_issue("ENG", "talk")
    made = await linear.create_comment(issue["id"], "status")
    fake.remove_comment(made["id"])
    with pytest.raises(RequestRejected) as caught:
        await linear.update_comment(made["id"], "status, updated")
    assert caught.value.status == 404
    assert "UpdateComment" in str(caught.value)
    assert "Comment" in str(caught.value)


async def test_editing_someone_elses_comment_is_forbidden(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    comment = fake.add_comment(fake.add_issue("ENG", "talk")["id"], "mine, says Ada")
    with pytest.raises(RequestRejected) as caught:
        await linear.update_comment(comment["id"], "no")
    assert caught.value.status == 403
    assert comment["body"] == "mine, says Ada"


async def test_react_puts_an_emoji_on_a_comment(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    comment = fake.add_comment(fake.add_issue("ENG", "talk")["id"], "/run")
    reaction_id = await linear.react(comment["id"], "eyes")
    [reaction] = fake.reactions
    assert reaction["id"] == reaction_id
    assert (reaction["emoji"], reaction["commentId"], reaction["userId"]) == (
        "eyes",
        comment["id"],
        fake.viewer["id"],
    )


async def test_attach_url_keeps_one_attachment_per_url(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    issue = fake.add_issue("ENG", "link")
    pr = "https://github.com/acme/api/pull/7"
    await linear.attach_url(issue["id"], pr, "PR #7")
    await linear.attach_url(issue["id"], pr, "PR #7: fix login")
    [attachment] = fake.attachments
    assert (attachment["issueId"], attachment["url"], attachment["title"]) == (
        issue["id"],
        pr,
        "PR #7: fix login",
    )


# --- failures ---------------------------------------------------------------------------------


def assert_no_key(error: AdapterError) -> None:
    assert API_KEY not in str(error)
    assert API_KEY not in repr(error)


async def test_a_rate_limited_answer_says_when_to_retry(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    reset = fake.rate_limit(reset_in=42.0)
    with pytest.raises(RateLimited) as caught:
        await linear.team_states(eng["id"])
    assert caught.value.retry_at == reset
    assert 40 < caught.value.seconds_left() <= 42
    assert_no_key(caught.value)
    assert len(await linear.team_states(eng["id"])) == 7  # the limit has passed


async def test_a_bare_429_waits_a_minute(fake: FakeLinear, linear: LinearClient) -> None:
    fake.fail(status=429, body="Too Many Requests")
    with pytest.raises(RateLimited) as caught:
        await linear.viewer_id()
    assert 55 < caught.value.seconds_left() <= 60


@pytest.mark.parametrize(
    ("status", "body"), [(500, None), (503, None), (502, "<html>Bad gateway</html>")]
)
async def test_server_errors_are_transient(
    fake: FakeLinear, linear: LinearClient, status: int, body: str | None
) -> None:
    fake.fail(status=status, body=body)
    with pytest.raises(TransientError) as caught:
        await linear.viewer_id()
    assert_no_key(caught.value)
    assert await linear.viewer_id() == fake.viewer["id"]


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ReadTimeout])
async def test_network_failures_are_transient(
    fake: FakeLinear, linear: LinearClient, error: type[httpx.TransportError]
) -> None:
    fake.disconnect(error=error)
    with pytest.raises(TransientError) as caught:
        await linear.viewer_id()
    assert error.__name__ in str(caught.value)
    assert_no_key(caught.value)


async def test_a_request_that_outlives_the_timeout_is_transient() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(1)
        return httpx.Response(200, json={"data": {"viewer": {"id": "late"}}})

    # The route never counts as called: the timeout cancels it before it answers.
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        router.post("https://slow.linear.test/graphql").mock(side_effect=slow)
        client = LinearClient(API_KEY, url="https://slow.linear.test/graphql", timeout=0.05)
        with pytest.raises(TransientError, match="timed out"):
            await client.viewer_id()
        await client.aclose()


async def test_a_wrong_key_is_rejected_without_showing_it(fake: FakeLinear) -> None:
    wrong = "lin_api_wrongwrongwrongSECRET"
    client = LinearClient(wrong, url=fake.url)
    with pytest.raises(RequestRejected) as caught:
        await client.viewer_id()
    await client.aclose()
    assert caught.value.status == 401
    assert "Viewer" in str(caught.value)
    assert "authenticate" in str(caught.value)
    assert wrong not in str(caught.value)
    assert API_KEY not in str(caught.value)


async def test_a_mutation_answering_success_false_is_rejected() -> None:
    url = "https://refusing.linear.test/graphql"
    with respx.mock(assert_all_mocked=True) as router:
        router.post(url).respond(200, json={"data": {"issueUpdate": {"success": False}}})
        client = LinearClient(API_KEY, url=url)
        with pytest.raises(RequestRejected, match="MoveIssue"):
            await client.move_issue("issue-id", "state-id")
        await client.aclose()


async def test_concurrent_calls_each_get_their_own_answer(
    fake: FakeLinear, linear: LinearClient, eng: dict[str, Any]
) -> None:
    issues = [fake.add_issue("ENG", f"issue {i}") for i in range(4)]
    await linear.viewer_id()  # connected
    reset = fake.rate_limit(times=1, reset_in=10.0)
    got = await asyncio.gather(
        *(linear.issue(issue["id"]) for issue in issues), return_exceptions=True
    )
    limited = [g for g in got if isinstance(g, RateLimited)]
    answered = [g["id"] for g in got if isinstance(g, dict)]
    assert [g.retry_at for g in limited] == [reset]
    assert len(answered) == 3
    assert set(answered) < {issue["id"] for issue in issues}


# --- the fake's webhooks ------------------------------------------------------------------------


def tickets(payload: dict[str, Any]) -> list[TicketInfo]:
    """The tickets of the TicketUpserted/TicketRemoved events a webhook parses to."""
    events = parse(payload["type"].lower(), payload).events
    return [e.ticket for e in events if isinstance(e, (TicketUpserted, TicketRemoved))]


@pytest.mark.parametrize("action", ["create", "update", "remove"])
def test_issue_webhooks_parse(fake: FakeLinear, eng: dict[str, Any], action: str) -> None:
    issue = fake.add_issue("ENG", "from a human", labels=["bug"])
    payload = fake.issue_webhook(
        issue["id"], action, updated_from={"title": "old"} if action == "update" else None
    )
    assert payload["type"] == "Issue"
    assert payload["actor"]["id"] == fake.human["id"]
    assert timestamp_fresh(payload["webhookTimestamp"])
    [ticket] = tickets(payload)
    assert (ticket.key, ticket.title, ticket.labels) == ("ENG-1", "from a human", ("bug",))
    created_at = datetime.fromisoformat(payload["data"]["createdAt"])
    assert abs(created_at.timestamp() - time.time()) < 60
    assert created_at.tzinfo == UTC
    if action == "remove":
        assert isinstance(parse("issue", payload).events[0], TicketRemoved)


@pytest.mark.parametrize(
    ("action", "kind"),
    [("create", CommentCreated), ("update", CommentEdited), ("remove", CommentDeleted)],
)
def test_comment_webhooks_parse(
    fake: FakeLinear,
    eng: dict[str, Any],
    action: str,
    kind: type[CommentCreated | CommentEdited | CommentDeleted],
) -> None:
    comment = fake.add_comment(fake.add_issue("ENG", "talk")["id"], "/run")
    payload = fake.comment_webhook(comment["id"], action)
    assert payload["type"] == "Comment"
    [event] = parse("comment", payload).events
    assert isinstance(event, kind)
    assert event.ticket.key == "ENG-1"
    assert event.comment.body == "/run"
    assert event.comment.author_login == "Ada Lovelace"
