"""What changed since a time, as each adapter asks for it: GitHub's issues (`since`) and pull
requests (newest first, up to `since`) with ETags, against the respx fake whose answers are
checked against githubkit's models of GitHub's OpenAPI description; Jira's JQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from githubkit.compat import type_validate_python
from githubkit_schemas.latest.models import Issue, PullRequestSimple

from adapters.base import CachedPage, CodeHost, Page, PullRequestChanged, TicketUpserted
from adapters.github.client import GitHubApp
from bot.registry import TrackerClients
from bot.settings import Settings
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo
from tests.fakes.jira_server import FakeJira

INSTALLATION = 77
SINCE = datetime(2024, 3, 2, 12, 0, tzinfo=UTC)


class MemoryEtags:
    def __init__(self) -> None:
        self.pages: dict[str, CachedPage] = {}

    async def get(self, url: str) -> CachedPage | None:
        return self.pages.get(url)

    async def put(self, url: str, page: CachedPage) -> None:
        self.pages[url] = page


@pytest.fixture
def host(settings: Settings) -> CodeHost:
    return GitHubApp(
        api_url=settings.api_url,
        app_id=settings.github_app_id or 0,
        private_key=settings.github_private_key_pem() or "",
    )


UPDATED = {  # on March 2: issues 1 and 2, PRs 6 and 10 are older than SINCE
    **{number: f"{9 + number}:00" for number in range(1, 6)},
    **{6: "10:00", 7: "12:30", 8: "13:00", 9: "14:00", 10: "09:00"},
}


@pytest.fixture
def widgets(github_api: FakeGitHubAPI) -> FakeRepo:
    """Issues 1-5 and PRs 6-10, updated as UPDATED says; two a page."""
    github_api.add_installation(INSTALLATION, "acme")
    repo = github_api.add_repo("acme/widgets", 555, INSTALLATION)
    for number, at in UPDATED.items():
        stamp = f"2024-03-02T{int(at[:-3]):02d}:{at[-2:]}:00Z"
        if number <= 5:
            github_api.add_issue(repo, number, title=f"issue {number}", updated_at=stamp)
        else:
            github_api.add_pull(repo, number, title=f"pull {number}", updated_at=stamp)
    github_api.max_per_page = 2
    return repo


async def test_issues_changed_since_are_asked_by_update_and_come_oldest_first(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    repo = await host.repository("acme/widgets", INSTALLATION)
    pages: list[Page[TicketUpserted]] = [
        page async for page in host.issues_changed_since(repo, INSTALLATION, SINCE)
    ]

    numbers = [event.ticket.number for page in pages for event in page.items]
    assert numbers == [3, 4, 5]  # issues 1 and 2 are older; the PRs listed too are left out
    assert {event.action for page in pages for event in page.items} == {"reconcile"}
    lists = [r for r in github_api.requests if r.url.path.endswith("/issues")]
    assert lists[0].url.path == "/api/v3/repos/acme/widgets/issues"
    assert dict(lists[0].url.params) == {
        "state": "all",
        "sort": "updated",
        "direction": "asc",
        "since": "2024-03-02T12:00:00Z",
        "per_page": "100",
    }
    assert all(r.url.params["since"] == "2024-03-02T12:00:00Z" for r in lists[1:])
    for request, response in github_api.answers:
        if request.url.path.endswith("/issues"):
            [type_validate_python(Issue, item) for item in response.json()]


async def test_pull_requests_stop_at_the_page_that_reaches_back_past_since(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    repo = await host.repository("acme/widgets", INSTALLATION)
    etags = MemoryEtags()

    async def read() -> list[Page[PullRequestChanged]]:
        return [
            page
            async for page in host.pull_requests_changed_since(repo, INSTALLATION, SINCE, etags)
        ]

    first = await read()

    # 9 and 8, then 7 and 6: 6 is older than SINCE, so the page of 10 is not asked for.
    assert [[e.pull_request.number for e in page.items] for page in first] == [[9, 8], [7]]
    lists = [r for r in github_api.requests if r.url.path.endswith("/pulls")]
    assert len(lists) == 2
    assert dict(lists[0].url.params) == {
        "state": "all",
        "sort": "updated",
        "direction": "desc",
        "per_page": "100",
    }
    for request, response in github_api.answers:
        if request.url.path.endswith("/pulls") and response.status_code == 200:
            [type_validate_python(PullRequestSimple, item) for item in response.json()]

    # Nothing changed: two free 304s, and the last one wanted still ends the paging.
    remaining = github_api.rate_remaining
    again = await read()
    assert [page.not_modified for page in again] == [True, True]
    assert github_api.rate_remaining == remaining


async def test_a_jira_project_is_searched_by_relative_update_oldest_first(
    jira_fake: FakeJira, tracker_clients: TrackerClients
) -> None:
    jira = tracker_clients.jira_client()
    jira_fake.add_project("PROJ", "Project")
    first = jira_fake.add_issue("PROJ", "first")
    second = jira_fake.add_issue("PROJ", "second")
    now = datetime.now(UTC)

    page = await jira.changed_since("PROJ", now - timedelta(minutes=90, seconds=1), now=now)

    assert [issue["key"] for issue in page.issues] == [first["key"], second["key"]]
    [(_, query)] = [(p, q) for p, q in jira_fake.queries if p.endswith("/search/jql")]
    # Whole minutes, rounded up: never later than asked.
    assert query["jql"] == ['project = "PROJ" AND updated >= "-91m" ORDER BY updated ASC']
    with pytest.raises(ValueError, match="not a Jira project key"):
        await jira.changed_since('PROJ" OR project = "OTHER', now, now=now)
