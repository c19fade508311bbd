"""The IssueTracker role, played by the Linear and the Jira client alike: the same tests run
against each client and its fake (Linear's GraphQL schema, a real HTTP fake of Jira)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import respx

from adapters.base import IssueTracker, TrackerComment
from adapters.errors import RequestRejected
from adapters.jira.client import JiraClient
from adapters.linear.client import LinearClient
from tests.fakes.jira_server import FakeJira
from tests.fakes.linear_api import FakeLinear

LINEAR_KEY = "lin_api_0123456789abcdefSECRETkey"
JIRA_EMAIL = "openase-bot@example.com"


@dataclass
class Tracker:
    """A client as its role, one issue on the tracker, and what the fake holds."""

    client: IssueTracker
    issue: str
    own_account: str  # the id the tracker's webhooks give the bot's own changes
    comment_body: Callable[[str], str | None]  # None: no such comment (deleted)
    delete_comment: Callable[[str], None]
    links: Callable[[], list[tuple[str, str]]]  # (url, title) linked from the issue


async def _linear() -> AsyncIterator[Tracker]:
    fake = FakeLinear(api_key=LINEAR_KEY)
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        fake.mount(router)
        fake.add_team("ENG", "Engineering")
        issue = fake.add_issue("ENG", "talk")
        client = LinearClient(LINEAR_KEY, url=fake.url, timeout=5.0)
        yield Tracker(
            client=client,
            issue=issue["id"],
            own_account=fake.viewer["id"],
            comment_body=lambda cid: next(
                (c["body"] for c in fake.comments if c["id"] == cid), None
            ),
            delete_comment=fake.remove_comment,
            links=lambda: [(a["url"], a["title"]) for a in fake.attachments],
        )
        await client.aclose()
    assert fake.invalid == []


async def _jira() -> AsyncIterator[Tracker]:
    with FakeJira() as fake:
        fake.add_project("PROJ", "Project")
        key = fake.add_issue("PROJ", "Task")["key"]
        client = JiraClient(fake.url, JIRA_EMAIL, fake.token, cloud=True, timeout=5)
        yield Tracker(
            client=client,
            issue=key,
            own_account=fake.api_user["accountId"],
            comment_body=lambda cid: next(
                (c["body"] for c in fake.comments[key] if c["id"] == cid), None
            ),
            delete_comment=lambda cid: fake.remove_comment(key, cid),
            links=lambda: [
                (li["object"]["url"], li["object"]["title"]) for li in fake.remote_links[key]
            ],
        )
        await client.aclose()
    assert fake.crashes == []


@pytest.fixture(params=["linear", "jira"])
async def tracker(request: pytest.FixtureRequest) -> AsyncIterator[Tracker]:
    trackers = {"linear": _linear, "jira": _jira}
    async for made in trackers[request.param]():
        yield made


async def test_the_account_is_the_one_webhooks_name(tracker: Tracker) -> None:
    assert await tracker.client.account_id() == tracker.own_account


async def test_a_comment_is_posted_then_edited_in_place(tracker: Tracker) -> None:
    posted = await tracker.client.post_comment(tracker.issue, "On it.")
    edited = await tracker.client.edit_comment(tracker.issue, posted.id, "Done.")

    assert isinstance(posted, TrackerComment)
    assert posted.url is not None
    assert edited == posted
    assert tracker.comment_body(posted.id) == "Done."


async def test_editing_a_deleted_comment_is_a_404(tracker: Tracker) -> None:
    posted = await tracker.client.post_comment(tracker.issue, "status")
    tracker.delete_comment(posted.id)

    with pytest.raises(RequestRejected) as caught:
        await tracker.client.edit_comment(tracker.issue, posted.id, "status, updated")
    assert caught.value.status == 404
    assert tracker.comment_body(posted.id) is None


async def test_a_url_is_linked_once_however_often_it_is_asked(tracker: Tracker) -> None:
    pr = "https://github.com/acme/api/pull/7"
    await tracker.client.link_url(tracker.issue, pr, "PR #7")
    await tracker.client.link_url(tracker.issue, pr, "PR #7: fix login")

    assert tracker.links() == [(pr, "PR #7: fix login")]
