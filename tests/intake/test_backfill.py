"""Backfill of a repository into the mirror, against real Postgres and a respx fake of GitHub."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from arq import Retry
from arq.worker import Worker
from sqlalchemy import select

from adapters.base import RepoInfo, RepositoryChanged
from adapters.errors import RateLimited, TransientError
from bot.deps import Deps
from bot.intake import mirror
from bot.intake.backfill import (
    SyncFailed,
    backfill_job,
    backfill_repository,
    sync_repository,
)
from bot.intake.ingest import enqueue_backfill
from bot.jobs import BACKFILL_JOB
from bot.processes.worker import control_functions
from bot.registry import Clients
from bot.settings import Settings
from bot.tables.mirror import (
    HttpCacheEntry,
    Installation,
    PullRequest,
    Repository,
    Ticket,
    TicketPullRequest,
)
from harness_store.db import transaction
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo, fake_github_api
from tests.support.helpers import TEST_API_URL

INSTALLATION = 77
REPO_ID = 555
ISSUES_PATH = r"^/repositories/555/issues$"  # every page after the first


@pytest.fixture
def github_api(settings: Settings) -> Iterator[FakeGitHubAPI]:
    with fake_github_api(settings) as fake:
        fake.add_installation(INSTALLATION, "acme")
        yield fake


@pytest.fixture
def widgets(github_api: FakeGitHubAPI) -> FakeRepo:
    """acme/widgets: issues 1-5 (two labelled), PRs 6 and 7 (7 fixes #2); 3 items a page."""
    repo = github_api.add_repo("acme/widgets", REPO_ID, INSTALLATION)
    for number in range(1, 6):
        labels = ("openase",) if number in (2, 4) else ()
        github_api.add_issue(repo, number, title=f"issue {number}", labels=labels)
    github_api.add_pull(repo, 6, title="wip", head_ref="openase/4-thing")
    github_api.add_pull(repo, 7, title="fix two", body="This fixes #2.")
    github_api.max_per_page = 3  # the issues endpoint lists 7 items: three pages
    return repo


async def _tickets(deps: Deps) -> dict[str, tuple[str, list[str], datetime]]:
    async with deps.sessions() as session:
        rows = await session.execute(
            select(Ticket.key, Ticket.title, Ticket.labels, Ticket.updated_at)
        )
        return {key: (title, labels, updated) for key, title, labels, updated in rows}


def _list_answers(github_api: FakeGitHubAPI) -> list[int]:
    return [
        response.status_code
        for request, response in github_api.answers
        if request.url.path.endswith(("/issues", "/pulls"))
    ]


async def test_backfill_mirrors_open_issues_and_prs_through_the_webhook_mirror(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    report = await backfill_repository(deps, "acme/widgets")

    assert (report.issues, report.pull_requests) == (5, 2)
    assert (report.pages_fetched, report.pages_unchanged) == (4, 0)
    tickets = await _tickets(deps)
    assert sorted(tickets) == [f"acme/widgets#{n}" for n in range(1, 6)]  # no PRs among them
    assert tickets["acme/widgets#2"][:2] == ("issue 2", ["openase"])
    async with deps.sessions() as session:
        prs = (await session.execute(select(PullRequest.number, PullRequest.head_ref))).all()
        assert sorted(prs) == [(6, "openase/4-thing"), (7, "feature")]
        links = await session.execute(
            select(Ticket.number, PullRequest.number, TicketPullRequest.via)
            .join(TicketPullRequest, TicketPullRequest.ticket_id == Ticket.id)
            .join(PullRequest, PullRequest.id == TicketPullRequest.pull_request_id)
        )
        assert sorted(links.all()) == [(2, 7, "closing_keyword"), (4, 6, "branch")]
        repo = await session.get(Repository, REPO_ID)
        assert repo is not None
        assert (repo.full_name, repo.installation_id, repo.active) == ("acme/widgets", 77, True)
        assert repo.clone_url == "https://ghe.example.test/acme/widgets.git"
        installation = await session.get(Installation, INSTALLATION)
        assert installation is not None
        assert installation.account_login == "acme"
    # Found the installation as the App, then read as the installation; all on the GHES URL.
    paths = [(r.method, r.url.path.removeprefix("/api/v3")) for r in github_api.requests]
    assert paths[:3] == [
        ("GET", "/repos/acme/widgets/installation"),
        ("POST", "/app/installations/77/access_tokens"),
        ("GET", "/repos/acme/widgets"),
    ]
    assert all(str(r.url).startswith(TEST_API_URL + "/") for r in github_api.requests)
    first_issues, first_pulls = (
        next(r for r in github_api.requests if r.url.path.endswith(f"/repos/acme/widgets/{kind}"))
        for kind in ("issues", "pulls")
    )
    assert dict(first_issues.url.params) == {"state": "open", "per_page": "100"}
    assert dict(first_pulls.url.params) == {"state": "open", "per_page": "100"}


async def test_a_second_sync_gets_304_on_every_page_and_applies_nothing(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    await backfill_repository(deps, "acme/widgets")
    before = await _tickets(deps)
    async with deps.sessions() as session:
        assert len((await session.execute(select(HttpCacheEntry))).all()) == 4
    github_api.answers.clear()

    report = await backfill_repository(deps, REPO_ID)

    assert _list_answers(github_api) == [304, 304, 304, 304]
    assert (report.pages_fetched, report.pages_unchanged) == (4, 4)
    assert (report.issues, report.pull_requests) == (0, 0)
    assert await _tickets(deps) == before  # not even our own updated_at moved
    # Known repository: no need to ask which installation covers it.
    assert not any(r.url.path.endswith("/installation") for r, _ in github_api.answers)


async def test_a_changed_issue_refetches_only_its_page(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    await backfill_repository(deps, "acme/widgets")
    issue = next(i for i in widgets.issues if i["number"] == 5 and "pull_request" not in i)
    issue.update(title="issue 5, renamed", updated_at="2024-04-01T00:00:00Z")
    github_api.answers.clear()

    report = await backfill_repository(deps, "acme/widgets")

    assert _list_answers(github_api) == [200, 304, 304, 304]  # page 1 holds 7, 6 and 5
    assert (report.issues, report.pages_unchanged) == (1, 3)
    assert (await _tickets(deps))["acme/widgets#5"][0] == "issue 5, renamed"


async def test_backfill_never_moves_newer_webhook_data_backwards(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    await backfill_repository(deps, "acme/widgets")
    async with transaction(deps.sessions) as session:
        ticket = (await session.execute(select(Ticket).where(Ticket.number == 3))).scalar_one()
        ticket.title = "renamed by a newer webhook"
        ticket.external_updated_at = datetime(2030, 1, 1, tzinfo=UTC)

    await backfill_repository(deps, "acme/widgets", use_etags=False)

    assert (await _tickets(deps))["acme/widgets#3"][0] == "renamed by a newer webhook"


async def test_a_rate_limit_mid_backfill_keeps_finished_pages_and_the_job_retries_at_reset(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    reset = int((datetime.now(UTC) + timedelta(minutes=20)).timestamp())
    limited = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    message = {"message": "API rate limit exceeded for installation ID 77."}
    github_api.queue(403, message, path_regex=ISSUES_PATH, headers=limited)

    with pytest.raises(RateLimited) as caught:
        await backfill_repository(deps, "acme/widgets")

    assert caught.value.retry_at == datetime.fromtimestamp(reset, UTC)
    assert sorted(await _tickets(deps)) == ["acme/widgets#5"]  # page 1 was applied
    async with deps.sessions() as session:
        cached = (await session.execute(select(HttpCacheEntry.key))).scalars().all()
    assert cached == [f"{TEST_API_URL}/repos/acme/widgets/issues?state=open&per_page=100"]

    github_api.queue(403, message, path_regex=ISSUES_PATH, headers=limited)
    with pytest.raises(Retry) as retry:
        await backfill_job({"deps": deps, "job_try": 1}, REPO_ID)
    seconds = (retry.value.defer_score or 0) / 1000
    expected = reset - datetime.now(UTC).timestamp()
    assert expected - 5 < seconds < expected + 5

    # After the reset the job completes; page 1 comes back as a 304.
    result = await backfill_job({"deps": deps, "job_try": 2}, REPO_ID)
    assert result == "acme/widgets: 4 issues, 2 PRs, 1/4 pages unchanged"
    assert sorted(await _tickets(deps)) == [f"acme/widgets#{n}" for n in range(1, 6)]


async def test_a_server_error_is_transient_and_the_job_backs_off(
    deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    github_api.queue(502, {"message": "Server Error"}, path_regex=r"/pulls$")
    with pytest.raises(TransientError, match="502"):
        await backfill_repository(deps, "acme/widgets")

    for job_try, defer in [(1, 5.0), (3, 20.0), (20, 300.0)]:
        github_api.queue(503, {"message": "Unavailable"}, path_regex=r"^/repos/acme/widgets$")
        with pytest.raises(Retry) as retry:
            await backfill_job({"deps": deps, "job_try": job_try}, REPO_ID)
        assert retry.value.defer_score == int(defer * 1000)


async def test_the_job_gives_up_on_what_retrying_cannot_fix(
    deps: Deps, github_api: FakeGitHubAPI
) -> None:
    assert "not in the mirror" in await backfill_job({"deps": deps, "job_try": 1}, 999)


async def test_the_worker_runs_the_job_enqueued_after_an_installation(
    deps: Deps,
    github_api: FakeGitHubAPI,
    widgets: FakeRepo,
    run_worker: Callable[[], Awaitable[Worker]],
) -> None:
    (function,) = [f for f in control_functions() if f.name == BACKFILL_JOB]
    assert function.name == "backfill_repository"
    # What an `installation` webhook leaves behind: the repository row, then the job.
    async with transaction(deps.sessions) as session:
        repo = RepoInfo(id=REPO_ID, full_name="acme/widgets")
        await mirror.apply(session, [RepositoryChanged("added", repo, INSTALLATION)])
    await enqueue_backfill(deps, REPO_ID)

    await run_worker()

    assert sorted(await _tickets(deps)) == [f"acme/widgets#{n}" for n in range(1, 6)]
    job = await deps.redis.enqueue_job(BACKFILL_JOB, REPO_ID, _job_id=f"backfill:{REPO_ID}")
    assert job is not None  # a finished backfill frees its job id for the next one


async def test_sync_waits_politely_for_a_short_rate_limit(
    settings: Settings, deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    github_api.queue(
        429,
        {"message": "secondary rate limit"},
        path_regex=ISSUES_PATH,
        headers={"retry-after": "3"},
    )
    said: list[str] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    report = await sync_repository(deps, "acme/widgets", say=said.append, sleep=sleep)

    # The retry found page 1 (issue 5) unchanged and took the rest.
    assert (report.issues, report.pull_requests) == (4, 2)
    assert report.pages_unchanged == 1
    assert len(slept) == 1
    assert 3 <= slept[0] <= 4.5
    assert "rate limited" in said[0]
    assert "waiting" in said[0]


async def test_sync_fails_clearly_when_the_limit_resets_too_late(
    settings: Settings, deps: Deps, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    reset = int((datetime.now(UTC) + timedelta(hours=2)).timestamp())
    github_api.queue(
        403,
        {"message": "API rate limit exceeded"},
        path_regex=r"/issues$",
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
    )
    with pytest.raises(SyncFailed, match=r"run `openase sync acme/widgets` again later"):
        await sync_repository(deps, "acme/widgets", say=print)


async def test_sync_of_a_repository_without_the_app_says_so(
    settings: Settings, deps: Deps, github_api: FakeGitHubAPI
) -> None:
    with pytest.raises(SyncFailed, match="not installed on acme/elsewhere"):
        await sync_repository(deps, "acme/elsewhere")


def test_the_client_is_built_once_per_configuration(settings: Settings) -> None:
    clients = Clients()
    assert clients.github_app(settings) is clients.github_app(settings)
    assert clients.github_app(settings).api_url == TEST_API_URL
    other = settings.model_copy(update={"github_app_id": 4343})
    assert clients.github_app(other) is not clients.github_app(settings)
