"""The Jira client (the `jira` library in worker threads) against a real HTTP fake of Jira:
workflow moves, comments, labels, remote links, JQL paging on Cloud and Server, the mapping
of rate limits and failures onto adapter errors, and the webhooks the fake sends back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.base import (
    CommentCreated,
    CommentEdited,
    LabelsChanged,
    StatusChanged,
    TicketUpserted,
)
from adapters.errors import RateLimited, RequestRejected, TransientError
from adapters.jira.client import SEARCH_FIELDS, JiraClient, Moved, NoTransition
from adapters.jira.events import parse, ticket_from_issue
from tests.fakes.jira_server import FakeJira
from tests.support.helpers import FIXTURES as SHARED_FIXTURES

FIXTURES = SHARED_FIXTURES / "jira"
EMAIL = "openase-bot@example.com"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


@pytest.fixture
def fake() -> Iterator[FakeJira]:
    with FakeJira() as server:
        server.add_project("PROJ", "Project")
        yield server
    assert server.crashes == []


@pytest.fixture
async def client(fake: FakeJira) -> AsyncIterator[JiraClient]:
    jira = JiraClient(fake.url, EMAIL, fake.token, cloud=True, timeout=5)
    yield jira
    await jira.aclose()


@pytest.fixture
def server_fake() -> Iterator[FakeJira]:
    with FakeJira(cloud=False) as server:
        server.add_project("OPS", "Operations")
        yield server
    assert server.crashes == []


@pytest.fixture
async def server_client(server_fake: FakeJira) -> AsyncIterator[JiraClient]:
    jira = JiraClient(server_fake.url, None, server_fake.token, cloud=False, timeout=5)
    yield jira
    await jira.aclose()


def sent(fake: FakeJira, method: str, path: str) -> list[Any]:
    return [body for m, p, body in fake.requests if (m, p) == (method, path)]


# --- flavour and identity -----------------------------------------------------------------


def test_cloud_is_guessed_from_the_host() -> None:
    assert JiraClient("https://acme.atlassian.net/", EMAIL, "t").cloud is True
    assert JiraClient("https://jira.acme.example/jira", None, "t").cloud is False
    assert JiraClient("https://jira.acme.example", None, "t", cloud=True).cloud is True


async def test_myself_is_the_account_id_on_cloud_and_cached(
    fake: FakeJira, client: JiraClient
) -> None:
    assert await client.myself_id() == fake.api_user["accountId"]
    assert await client.myself_id() == fake.api_user["accountId"]
    assert len(sent(fake, "GET", "/rest/api/2/myself")) == 1


async def test_myself_is_the_user_name_on_server_with_a_pat(
    server_fake: FakeJira, server_client: JiraClient
) -> None:
    assert await server_client.myself_id() == "openase-bot"


# --- moves --------------------------------------------------------------------------------


async def test_a_move_to_the_current_status_makes_no_transition(
    fake: FakeJira, client: JiraClient
) -> None:
    key = fake.add_issue("PROJ", "Task", status="In Progress")["key"]
    assert await client.move(key, "in progress") == Moved(key, "In Progress", already=True)
    assert sent(fake, "GET", f"/rest/api/2/issue/{key}/transitions") == []
    assert sent(fake, "POST", f"/rest/api/2/issue/{key}/transitions") == []
    assert fake.outbound == []


async def test_a_move_picks_the_transition_into_the_wanted_status(
    fake: FakeJira, client: JiraClient
) -> None:
    key = fake.add_issue("PROJ", "Task")["key"]
    assert await client.move(key, "In Review") == Moved(key, "In Review", already=False)
    assert sent(fake, "POST", f"/rest/api/2/issue/{key}/transitions") == [
        {"transition": {"id": 31}, "fields": {}}
    ]
    assert fake.issues[key]["fields"]["status"]["name"] == "In Review"
    # The webhook Jira sends back names the bot as the actor, so the echo can be recognised.
    (echo,) = fake.outbound
    upserted, moved = parse(echo["webhookEvent"], echo).events
    assert isinstance(upserted, TicketUpserted)
    assert isinstance(moved, StatusChanged)
    assert (moved.from_status, moved.to_status) == ("To Do", "In Review")
    assert moved.actor_id == await client.myself_id()


async def test_the_target_status_wins_over_a_transition_of_that_name(
    fake: FakeJira, client: JiraClient
) -> None:
    key = fake.add_issue("PROJ", "Task")["key"]
    fake.transitions["To Do"] = [("71", "Done", "In Review"), ("41", "Resolve", "Done")]
    assert await client.move(key, "done") == Moved(key, "Done", already=False)
    assert fake.issues[key]["fields"]["resolution"]["name"] == "Done"


async def test_a_move_may_name_the_transition(fake: FakeJira, client: JiraClient) -> None:
    key = fake.add_issue("PROJ", "Task", status="Done")["key"]
    assert await client.move(key, "reopen") == Moved(key, "To Do", already=False)
    assert fake.issues[key]["fields"]["resolution"] is None


async def test_no_transition_lists_the_available_ones(fake: FakeJira, client: JiraClient) -> None:
    key = fake.add_issue("PROJ", "Task", status="Done")["key"]
    with pytest.raises(NoTransition) as caught:
        await client.move(key, "In Progress")
    error = caught.value
    assert (error.key, error.current, error.wanted) == (key, "Done", "In Progress")
    assert error.available == ["Reopen → To Do"]
    assert str(error) == (
        f"{key} cannot move from Done to In Progress: no such transition "
        "(available: Reopen → To Do)"
    )
    assert sent(fake, "POST", f"/rest/api/2/issue/{key}/transitions") == []


async def test_moving_a_missing_issue_is_rejected(fake: FakeJira, client: JiraClient) -> None:
    with pytest.raises(RequestRejected) as caught:
        await client.move("PROJ-99", "Done")
    assert caught.value.status == 404
    assert "PROJ-99" in str(caught.value)
    assert "Issue does not exist" in str(caught.value)


async def test_the_event_loop_runs_while_jira_is_slow(fake: FakeJira, client: JiraClient) -> None:
    key = fake.add_issue("PROJ", "Task")["key"]
    fake.slow(0.3)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    try:
        await client.move(key, "In Progress")
    finally:
        task.cancel()
    assert time.monotonic() - started >= 0.3
    assert ticks >= 10


# --- comments, labels, links --------------------------------------------------------------


async def test_comments_are_added_edited_and_gone(fake: FakeJira, client: JiraClient) -> None:
    key = fake.add_issue("PROJ", "Task")["key"]
    added = await client.add_comment(key, "h3. Status\n* running")
    assert added["url"] == f"{fake.url}/browse/{key}?focusedCommentId={added['id']}"
    assert sent(fake, "POST", f"/rest/api/2/issue/{key}/comment") == [
        {"body": "h3. Status\n* running"}
    ]

    edited = await client.update_comment(key, added["id"], "h3. Status\n* done")
    assert edited == added
    (comment,) = fake.comments[key]
    assert comment["body"] == "h3. Status\n* done"

    created, updated = (parse(p["webhookEvent"], p).events for p in fake.outbound)
    assert isinstance(created[0], CommentCreated)
    assert isinstance(updated[0], CommentEdited)
    assert created[0].comment.author_login == await client.myself_id()
    assert updated[0].comment.body == "h3. Status\n* done"

    fake.remove_comment(key, added["id"])
    with pytest.raises(RequestRejected) as caught:
        await client.update_comment(key, added["id"], "again")
    assert caught.value.status == 404
    assert f"comment {added['id']} on {key}" in str(caught.value)


async def test_labels_are_added_and_removed_in_one_edit(fake: FakeJira, client: JiraClient) -> None:
    key = fake.add_issue("PROJ", "Task", labels=["openase", "keep"])["key"]
    await client.set_labels(key, add=["openase/in-progress"], remove=["openase"])
    assert sent(fake, "PUT", f"/rest/api/2/issue/{key}") == [
        {"update": {"labels": [{"add": "openase/in-progress"}, {"remove": "openase"}]}}
    ]
    assert fake.issues[key]["fields"]["labels"] == ["keep", "openase/in-progress"]
    (echo,) = fake.outbound
    events = parse(echo["webhookEvent"], echo).events
    (upserted,) = [e for e in events if isinstance(e, TicketUpserted)]
    assert upserted.ticket.labels == ("keep", "openase/in-progress")
    (changed,) = [e for e in events if isinstance(e, LabelsChanged)]
    assert (changed.added, changed.removed) == (("openase/in-progress",), ("openase",))
    assert changed.actor_id == await client.myself_id()

    requests_before = len(fake.requests)
    await client.set_labels(key)
    assert len(fake.requests) == requests_before


async def test_a_bad_label_is_rejected_with_jiras_reason(
    fake: FakeJira, client: JiraClient
) -> None:
    key = fake.add_issue("PROJ", "Task")["key"]
    with pytest.raises(RequestRejected) as caught:
        await client.set_labels(key, add=["two words"])
    assert caught.value.status == 400
    assert "contains spaces" in str(caught.value)


async def test_a_remote_link_is_not_duplicated_by_a_retry(
    fake: FakeJira, client: JiraClient
) -> None:
    key = fake.add_issue("PROJ", "Task")["key"]
    pr = "https://github.com/acme/api/pull/7"
    await client.add_remote_link(key, pr, "PR #7")
    await client.add_remote_link(key, pr, "PR #7: Add a PASS file")
    (link,) = fake.remote_links[key]
    assert link["globalId"] == pr
    assert link["object"] == {"url": pr, "title": "PR #7: Add a PASS file"}
    assert len(sent(fake, "POST", f"/rest/api/2/issue/{key}/remotelink")) == 2


# --- search -------------------------------------------------------------------------------


async def test_cloud_search_pages_with_tokens(fake: FakeJira, client: JiraClient) -> None:
    for number in range(5):
        fake.add_issue(
            "PROJ",
            f"Task {number}",
            description="Line one\nLine two",
            labels=["openase"],
            components=["api"],
            status="Done" if number == 4 else "To Do",
        )
    keys: list[str] = []
    pages = 0
    token: str | None = None
    while True:
        page = await client.search("project = PROJ ORDER BY updated", token=token, limit=2)
        pages += 1
        for issue in page.issues:
            ticket = ticket_from_issue(issue, "x")
            assert ticket.key == issue["key"]
            assert ticket.body == "Line one\nLine two"
            assert ticket.labels == ("openase",)
            assert ticket.html_url == f"{fake.url}/browse/{issue['key']}"
            keys.append(issue["key"])
        if page.next_token is None:
            break
        token = page.next_token
    assert pages == 3
    assert keys == [f"PROJ-{n}" for n in range(1, 6)]
    assert ticket_from_issue(page.issues[-1], "x").state == "closed"
    searches = [q for path, q in fake.queries if path == "/rest/api/2/search/jql"]
    assert len(searches) == 3
    assert set(searches[0]["fields"]) == set(SEARCH_FIELDS)


async def test_server_search_pages_with_start_at(
    server_fake: FakeJira, server_client: JiraClient
) -> None:
    for number in range(5):
        server_fake.add_issue("OPS", f"Task {number}", status="In Progress")
    tokens: list[str | None] = []
    keys: list[str] = []
    token: str | None = None
    while True:
        page = await server_client.search("project = OPS", token=token, limit=2)
        keys += [ticket_from_issue(issue, "x").key for issue in page.issues]
        tokens.append(page.next_token)
        if page.next_token is None:
            break
        token = page.next_token
    assert tokens == ["2", "4", None]
    assert keys == [f"OPS-{n}" for n in range(1, 6)]
    assert ticket_from_issue(page.issues[0], "x").author_login == "alice"
    starts = [q["startAt"] for path, q in server_fake.queries if path == "/rest/api/2/search"]
    assert starts == [["0"], ["2"], ["4"]]


async def test_a_query_jira_cannot_parse_is_rejected(fake: FakeJira, client: JiraClient) -> None:
    with pytest.raises(RequestRejected) as caught:
        await client.search("assignee = currentUser()")
    assert caught.value.status == 400
    assert "Error in the JQL Query" in str(caught.value)


# --- failures -----------------------------------------------------------------------------


async def test_429_is_rate_limited_until_retry_after(fake: FakeJira, client: JiraClient) -> None:
    key = fake.add_issue("PROJ", "Task")["key"]
    fake.rate_limit(retry_after=30)
    before = datetime.now(UTC)
    with pytest.raises(RateLimited) as caught:
        await client.add_comment(key, "hello")
    after = datetime.now(UTC)
    assert before + timedelta(seconds=30) <= caught.value.retry_at
    assert caught.value.retry_at <= after + timedelta(seconds=30)
    # One attempt: the library's own retry loop (which sleeps) is off.
    assert len(fake.requests) == 1
    assert fake.comments[key] == []
    await client.add_comment(key, "hello")
    assert len(fake.comments[key]) == 1


async def test_429_without_retry_after_uses_the_reset_header_or_a_minute(
    fake: FakeJira, client: JiraClient
) -> None:
    reset = (datetime.now(UTC) + timedelta(minutes=5)).replace(second=0, microsecond=0)
    fake.rate_limit(retry_after=None, reset=reset)
    with pytest.raises(RateLimited) as caught:
        await client.myself_id()
    assert caught.value.retry_at == reset

    fake.rate_limit(retry_after=None)
    with pytest.raises(RateLimited) as caught:
        await client.myself_id()
    expected = datetime.now(UTC) + timedelta(seconds=60)
    assert abs((caught.value.retry_at - expected).total_seconds()) < 5


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_transient(fake: FakeJira, client: JiraClient, status: int) -> None:
    fake.fail(status=status)
    with pytest.raises(TransientError) as caught:
        await client.search("project = PROJ")
    assert str(status) in str(caught.value)
    assert len(fake.requests) == 1


async def test_timeouts_and_refused_connections_are_transient(fake: FakeJira) -> None:
    impatient = JiraClient(fake.url, EMAIL, fake.token, cloud=True, timeout=0.1)
    fake.slow(0.4)
    try:
        with pytest.raises(TransientError, match="Timeout"):
            await impatient.myself_id()
    finally:
        await impatient.aclose()

    closed = FakeJira()
    closed.stop()
    nobody = JiraClient(closed.url, EMAIL, closed.token, cloud=True, timeout=2)
    try:
        with pytest.raises(TransientError, match="ConnectionError"):
            await nobody.myself_id()
    finally:
        await nobody.aclose()


@pytest.mark.parametrize("email", [EMAIL, None])
async def test_bad_credentials_are_rejected_without_the_token(
    fake: FakeJira, email: str | None
) -> None:
    wrong = "wrong-token-" + fake.token[::-1]
    stranger = JiraClient(fake.url, email, wrong, cloud=True)
    try:
        with pytest.raises(RequestRejected) as caught:
            await stranger.move("PROJ-1", "Done")
    finally:
        await stranger.aclose()
    assert caught.value.status == 401
    message = str(caught.value)
    assert "PROJ-1" in message
    assert "not authenticated" in message
    assert wrong not in message
    assert fake.token not in message
    assert caught.value.__cause__ is None


# --- the fake's webhooks ------------------------------------------------------------------


def test_the_fakes_webhooks_have_jiras_shape_and_parse(fake: FakeJira) -> None:
    key = fake.add_issue("PROJ", "Add a PASS file", labels=["openase"])["key"]
    items = fixture("issue_updated.json")["changelog"]["items"]
    updated = fake.issue_webhook(key, changelog_items=items)
    assert set(fixture("issue_updated.json")) <= set(updated)
    assert set(fixture("issue_updated.json")["issue"]["fields"]) <= set(updated["issue"]["fields"])
    upserted, moved = parse("jira:issue_updated", updated).events
    assert isinstance(upserted, TicketUpserted)
    assert isinstance(moved, StatusChanged)
    assert moved.actor_id == fake.human["accountId"]
    assert upserted.ticket.labels == ("openase",)

    created = fake.issue_webhook(key, event="jira:issue_created")
    (opened,) = parse("jira:issue_created", created).events
    assert isinstance(opened, TicketUpserted)
    assert opened.action == "opened"


async def test_the_fakes_comment_webhook_parses(fake: FakeJira, client: JiraClient) -> None:
    key = fake.add_issue("PROJ", "Task")["key"]
    comment_id = (await client.add_comment(key, "/run"))["id"]
    payload = fake.comment_webhook(key, comment_id)
    assert set(fixture("comment_created.json")) <= set(payload)
    assert set(fixture("comment_created.json")["comment"]) <= set(payload["comment"])
    (event,) = parse("comment_created", payload).events
    assert isinstance(event, CommentCreated)
    assert (event.comment.external_id, event.comment.body) == (comment_id, "/run")
    assert event.ticket.key == key
