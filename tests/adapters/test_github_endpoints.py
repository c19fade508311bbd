"""The GitHub App client's typed endpoints against the respx fake of the REST API: each
sends the method, path, query and body GitHub documents (the fake validates bodies with
githubkit's models of GitHub's OpenAPI schema and refuses others with a 422), and reads
the answer into what its callers use."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from adapters.base import CheckRunInfo, CodeHost, CommitStatusInfo, ReviewCommentInfo
from adapters.errors import RequestRejected
from adapters.github.client import GitHubApp
from bot.settings import Settings
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo

INSTALLATION = 77
REPO = "acme/widgets"
HEAD_SHA = "a" * 40

Sent = tuple[str, str, dict[str, str], Any]  # method, API path, query, JSON body


@pytest.fixture
def widgets(github_api: FakeGitHubAPI) -> FakeRepo:
    github_api.add_installation(INSTALLATION, "acme")
    repo = github_api.add_repo(REPO, 555, INSTALLATION)
    github_api.add_issue(repo, 7, title="Add a widget", labels=("bug", "status/todo"))
    return repo


@pytest.fixture
def host(settings: Settings) -> CodeHost:
    # Typed as the role: what bot may rely on is what these tests exercise.
    return GitHubApp(
        api_url=settings.api_url,
        app_id=settings.github_app_id or 0,
        private_key=settings.github_private_key_pem() or "",
    )


def api_requests(github_api: FakeGitHubAPI) -> list[httpx.Request]:
    """Every request the fake received but those for installation tokens."""
    return [r for r in github_api.requests if not r.url.path.endswith("/access_tokens")]


def sent(github_api: FakeGitHubAPI) -> list[Sent]:
    """What each request (but the tokens') asked, as the API saw it."""
    return [
        (
            request.method,
            request.url.path.removeprefix("/api/v3"),
            dict(request.url.params),
            json.loads(request.content) if request.content else None,
        )
        for request in api_requests(github_api)
    ]


# --- labels -----------------------------------------------------------------------------------


async def test_label_names_of_an_issue(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    assert await host.issue_label_names(REPO, 7, INSTALLATION) == ["bug", "status/todo"]
    assert sent(github_api) == [
        ("GET", "/repos/acme/widgets/issues/7/labels", {"per_page": "100"}, None)
    ]


async def test_adding_and_removing_labels(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    await host.add_issue_labels(REPO, 7, ["status/in progress"], INSTALLATION)
    await host.remove_issue_label(REPO, 7, "status/todo", INSTALLATION)

    assert github_api.labels_of(widgets, 7) == ["bug", "status/in progress"]
    assert sent(github_api) == [
        ("POST", "/repos/acme/widgets/issues/7/labels", {}, {"labels": ["status/in progress"]}),
        ("DELETE", "/repos/acme/widgets/issues/7/labels/status/todo", {}, None),
    ]
    # A label name is one path segment: its '/' and spaces travel encoded.
    assert api_requests(github_api)[-1].url.raw_path.endswith(b"/labels/status%2Ftodo")


async def test_removing_a_label_the_issue_lacks_is_a_404(host: CodeHost, widgets: FakeRepo) -> None:
    with pytest.raises(RequestRejected) as caught:
        await host.remove_issue_label(REPO, 7, "status/done", INSTALLATION)
    assert caught.value.status == 404


async def test_repository_labels_are_looked_up_and_created(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    assert await host.has_repo_label(REPO, "status/todo", INSTALLATION)
    assert not await host.has_repo_label(REPO, "status/review", INSTALLATION)
    await host.create_repo_label(
        REPO, "status/review", INSTALLATION, color="fbca04", description="In review"
    )
    await host.create_repo_label(REPO, "plain", INSTALLATION)

    assert await host.has_repo_label(REPO, "status/review", INSTALLATION)
    assert sent(github_api)[:4] == [
        ("GET", "/repos/acme/widgets/labels/status/todo", {}, None),
        ("GET", "/repos/acme/widgets/labels/status/review", {}, None),
        (
            "POST",
            "/repos/acme/widgets/labels",
            {},
            {"name": "status/review", "color": "fbca04", "description": "In review"},
        ),
        ("POST", "/repos/acme/widgets/labels", {}, {"name": "plain"}),
    ]
    assert api_requests(github_api)[1].url.raw_path.endswith(b"/labels/status%2Freview")
    with pytest.raises(RequestRejected) as caught:
        await host.create_repo_label(REPO, "plain", INSTALLATION)
    assert caught.value.status == 422  # already_exists


# --- comments, reactions, issues --------------------------------------------------------------


async def test_comments_are_created_edited_and_listed(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    github_api.add_comment(widgets, 7, "a person's comment")
    created = await host.create_issue_comment(REPO, 7, "<!-- marker -->\nhello", INSTALLATION)
    edited = await host.update_issue_comment(REPO, created["id"], "changed", INSTALLATION)
    listed = [comment async for comment in host.issue_comments(REPO, 7, INSTALLATION)]

    assert edited["id"] == created["id"]
    assert [comment["body"] for comment in listed] == ["a person's comment", "changed"]
    assert created["html_url"].endswith(f"#issuecomment-{created['id']}")
    assert sent(github_api) == [
        ("POST", "/repos/acme/widgets/issues/7/comments", {}, {"body": "<!-- marker -->\nhello"}),
        ("PATCH", f"/repos/acme/widgets/issues/comments/{created['id']}", {}, {"body": "changed"}),
        ("GET", "/repos/acme/widgets/issues/7/comments", {"per_page": "100"}, None),
    ]


async def test_comment_pages_are_fetched_only_as_far_as_they_are_read(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    for n in range(5):
        github_api.add_comment(widgets, 7, f"comment {n}")
    github_api.max_per_page = 2

    everything = [c["body"] async for c in host.issue_comments(REPO, 7, INSTALLATION)]
    assert everything == [f"comment {n}" for n in range(5)]
    assert [query.get("page") for _, _, query, _ in sent(github_api)] == [None, "2", "3"]

    github_api.requests.clear()
    comments = host.issue_comments(REPO, 7, INSTALLATION)
    assert (await anext(comments))["body"] == "comment 0"
    await comments.aclose()
    assert len(sent(github_api)) == 1


async def test_reactions_go_to_the_issue_or_either_kind_of_comment(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    comment = github_api.add_comment(widgets, 7, "/run")
    on_issue = await host.react_to_issue(REPO, 7, "rocket", INSTALLATION)
    on_comment = await host.react_to_issue_comment(REPO, comment["id"], "eyes", INSTALLATION)
    on_review = await host.react_to_review_comment(REPO, 4242, "+1", INSTALLATION)
    again = await host.react_to_issue(REPO, 7, "rocket", INSTALLATION)

    assert again["id"] == on_issue["id"]  # GitHub answers an existing reaction with it
    assert [on_issue["content"], on_comment["content"], on_review["content"]] == [
        "rocket",
        "eyes",
        "+1",
    ]
    assert sent(github_api)[:3] == [
        ("POST", "/repos/acme/widgets/issues/7/reactions", {}, {"content": "rocket"}),
        (
            "POST",
            f"/repos/acme/widgets/issues/comments/{comment['id']}/reactions",
            {},
            {"content": "eyes"},
        ),
        ("POST", "/repos/acme/widgets/pulls/comments/4242/reactions", {}, {"content": "+1"}),
    ]


async def test_an_issue_update_sends_only_what_is_given(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    closed = await host.update_issue(
        REPO, 7, INSTALLATION, state="closed", state_reason="completed"
    )
    renamed = await host.update_issue(REPO, 7, INSTALLATION, title="New title", body="New body")

    assert closed["state"] == "closed"
    assert (renamed["title"], renamed["body"]) == ("New title", "New body")
    assert sent(github_api) == [
        (
            "PATCH",
            "/repos/acme/widgets/issues/7",
            {},
            {"state": "closed", "state_reason": "completed"},
        ),
        ("PATCH", "/repos/acme/widgets/issues/7", {}, {"title": "New title", "body": "New body"}),
    ]


async def test_an_issue_is_opened_and_found_among_the_newest(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    opened = await host.create_issue(
        REPO, INSTALLATION, title="Weekly deps", body="Update them.", labels=["deps", "openase"]
    )
    newest = await host.recent_issues(REPO, INSTALLATION, count=5)

    assert (opened["title"], opened["body"], opened["state"]) == (
        "Weekly deps",
        "Update them.",
        "open",
    )
    assert [label["name"] for label in opened["labels"]] == ["deps", "openase"]
    assert newest[0]["number"] == opened["number"] > 7
    assert sent(github_api) == [
        (
            "POST",
            "/repos/acme/widgets/issues",
            {},
            {"title": "Weekly deps", "body": "Update them.", "labels": ["deps", "openase"]},
        ),
        (
            "GET",
            "/repos/acme/widgets/issues",
            {"state": "all", "sort": "created", "direction": "desc", "per_page": "5"},
            None,
        ),
    ]


# --- checks -----------------------------------------------------------------------------------


async def test_check_runs_are_created_updated_and_found_by_external_id(
    settings: Settings, host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    fields = {"name": "openase/tests", "external_id": "12:tests", "status": "in_progress"}
    created = await host.create_check_run(REPO, HEAD_SHA, fields, INSTALLATION)
    done = {"status": "completed", "conclusion": "success", "completed_at": "2024-05-01T10:00:00Z"}
    updated = await host.update_check_run(REPO, created["id"], done, INSTALLATION)
    found = await host.find_check_run(
        REPO, HEAD_SHA, INSTALLATION, name="openase/tests", external_id="12:tests"
    )
    missing = await host.find_check_run(
        REPO, HEAD_SHA, INSTALLATION, name="openase/tests", external_id="13:tests"
    )

    assert (found, missing) == (created["id"], None)
    assert updated["conclusion"] == "success"
    query = {
        "check_name": "openase/tests",
        "filter": "all",
        "app_id": str(settings.github_app_id),
        "per_page": "100",
        "page": "1",
    }
    runs = f"/repos/acme/widgets/commits/{HEAD_SHA}/check-runs"
    assert sent(github_api) == [
        ("POST", "/repos/acme/widgets/check-runs", {}, {"head_sha": HEAD_SHA, **fields}),
        ("PATCH", f"/repos/acme/widgets/check-runs/{created['id']}", {}, done),
        ("GET", runs, query, None),
        ("GET", runs, query, None),
    ]
    # The head sha leads the create request, as GitHub's documentation shows it.
    assert next(iter(json.loads(api_requests(github_api)[0].content))) == "head_sha"


async def test_the_check_runs_of_a_commit_are_read_page_by_page(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    for n in range(101):
        github_api.add_foreign_check_run(widgets, HEAD_SHA, f"ci/{n:03d}")

    runs = await host.check_runs(REPO, HEAD_SHA, INSTALLATION)

    assert len(runs) == 101
    newest = runs[0]
    assert isinstance(newest, CheckRunInfo)
    assert (newest.name, newest.status, newest.conclusion) == ("ci/100", "in_progress", None)
    path = f"/repos/acme/widgets/commits/{HEAD_SHA}/check-runs"
    assert sent(github_api) == [
        ("GET", path, {"per_page": "100", "page": "1", "filter": "latest"}, None),
        ("GET", path, {"per_page": "100", "page": "2", "filter": "latest"}, None),
    ]


async def test_commit_statuses(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    github_api.statuses[HEAD_SHA] = [
        {"context": "ci/build", "state": "success"},
        {"context": "ci/deploy", "state": "pending"},
    ]

    assert await host.commit_statuses(REPO, HEAD_SHA, INSTALLATION) == [
        CommitStatusInfo(context="ci/build", state="success"),
        CommitStatusInfo(context="ci/deploy", state="pending"),
    ]
    assert sent(github_api) == [("GET", f"/repos/acme/widgets/commits/{HEAD_SHA}/status", {}, None)]


# --- pull requests ----------------------------------------------------------------------------


async def test_a_pull_request_is_opened_found_updated_and_merged(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    assert await host.find_pull_request(REPO, "openase/7", "main", INSTALLATION) is None
    opened = await host.create_pull_request(
        REPO,
        INSTALLATION,
        title="Add a widget",
        head="openase/7",
        base="main",
        body="Closes #7",
        draft=True,
    )
    found = await host.find_pull_request(REPO, "openase/7", "main", INSTALLATION)
    forked = await host.find_pull_request(REPO, "someone:openase/7", "main", INSTALLATION)
    number = opened["number"]
    edited = await host.update_pull_request(
        REPO, number, INSTALLATION, title="Add widgets", body="Closes #7 and more"
    )
    sha = opened["head"]["sha"]
    merged = await host.merge_pull_request(
        REPO, number, INSTALLATION, method="squash", sha=sha, commit_title="Add widgets (#8)"
    )
    after = await host.pull_request(REPO, number, INSTALLATION)

    assert found is not None
    assert found["number"] == number
    assert forked is None
    assert edited["title"] == "Add widgets"
    assert after["merged"] is True
    assert after["merge_commit_sha"] == merged
    pulls = "/repos/acme/widgets/pulls"
    find = {"head": "acme:openase/7", "base": "main", "state": "open", "per_page": "100"}
    assert sent(github_api) == [
        ("GET", pulls, find, None),
        (
            "POST",
            pulls,
            {},
            {
                "title": "Add a widget",
                "head": "openase/7",
                "base": "main",
                "body": "Closes #7",
                "draft": True,
            },
        ),
        ("GET", pulls, find, None),
        ("GET", pulls, {**find, "head": "someone:openase/7"}, None),
        (
            "PATCH",
            f"{pulls}/{number}",
            {},
            {"title": "Add widgets", "body": "Closes #7 and more"},
        ),
        (
            "PUT",
            f"{pulls}/{number}/merge",
            {},
            {"merge_method": "squash", "sha": sha, "commit_title": "Add widgets (#8)"},
        ),
        ("GET", f"{pulls}/{number}", {}, None),
    ]


async def test_a_pull_request_is_opened_without_draft_unless_asked(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    await host.create_pull_request(
        REPO, INSTALLATION, title="t", head="openase/7", base="main", body="b"
    )
    assert sent(github_api)[-1][3] == {
        "title": "t",
        "head": "openase/7",
        "base": "main",
        "body": "b",
    }


async def test_a_merge_at_a_moved_head_is_refused_with_409(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    pull = github_api.add_pull(widgets, 8, title="A fix", head_ref="openase/7")
    pull.update(state="open", merged=False, mergeable=True)
    with pytest.raises(RequestRejected) as caught:
        await host.merge_pull_request(REPO, 8, INSTALLATION, method="merge", sha="b" * 40)
    assert caught.value.status == 409
    assert sent(github_api)[-1][3] == {"merge_method": "merge", "sha": "b" * 40}


async def test_the_comments_of_a_review(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    github_api.review_comments[31] = [
        {"path": "src/app.py", "line": 12, "original_line": 10, "body": " Use a constant "},
        {"path": "README.md", "line": None, "original_line": 3, "body": "typo"},
        {"path": "setup.cfg", "line": None, "original_line": None, "body": None},
    ]

    comments = await host.review_comments(REPO, 8, 31, INSTALLATION, limit=50)

    assert comments == [
        ReviewCommentInfo(path="src/app.py", line=12, body=" Use a constant "),
        ReviewCommentInfo(path="README.md", line=3, body="typo"),  # an outdated line
        ReviewCommentInfo(path="setup.cfg", line=None, body=""),
    ]
    assert sent(github_api) == [
        ("GET", "/repos/acme/widgets/pulls/8/reviews/31/comments", {"per_page": "50"}, None)
    ]


# --- who may do what --------------------------------------------------------------------------


async def test_a_collaborators_permission(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    github_api.permissions["octo cat"] = "write"
    assert await host.collaborator_permission(REPO, "octo cat", INSTALLATION) == "write"
    github_api.queue(404, {"message": "Not Found"}, path_regex="/collaborators/")
    assert await host.collaborator_permission(REPO, "ghost", INSTALLATION) is None

    assert [(method, path) for method, path, _, _ in sent(github_api)] == [
        ("GET", "/repos/acme/widgets/collaborators/octo cat/permission"),
        ("GET", "/repos/acme/widgets/collaborators/ghost/permission"),
    ]
    assert api_requests(github_api)[0].url.raw_path.endswith(
        b"/collaborators/octo%20cat/permission"
    )


async def test_team_membership(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    github_api.team_members["acme/reviewers"] = {"octocat"}

    assert await host.team_membership_state("acme", "reviewers", "octocat", INSTALLATION) == (
        "active"
    )
    assert await host.team_membership_state("acme", "reviewers", "hubot", INSTALLATION) is None
    github_api.queue(403, {"message": "Resource not accessible by integration"})
    with pytest.raises(RequestRejected) as caught:
        await host.team_membership_state("acme", "reviewers", "octocat", INSTALLATION)
    assert caught.value.status == 403
    assert [path for _, path, _, _ in sent(github_api)][:2] == [
        "/orgs/acme/teams/reviewers/memberships/octocat",
        "/orgs/acme/teams/reviewers/memberships/hubot",
    ]


async def test_a_name_that_is_not_owner_slash_repo_never_reaches_a_path(
    host: CodeHost, github_api: FakeGitHubAPI, widgets: FakeRepo
) -> None:
    with pytest.raises(ValueError, match="not an OWNER/REPO name"):
        await host.pull_request("acme/widgets/../../orgs", 1, INSTALLATION)
    assert sent(github_api) == []
