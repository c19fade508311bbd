"""Reading `.github/openase.yml` through the GitHub API (the respx fake): always at the default
branch's head, once per commit."""

from __future__ import annotations

import base64

import httpx
import pytest
from githubkit.compat import type_validate_python
from githubkit_schemas.latest.models import ContentFile, GitRef

from adapters.errors import BranchMissing, TransientError
from bot.config.control import ControlConfig, default_control_config, parse_control_config
from bot.config.loader import MAX_REPO_CONFIG_BYTES, ConfigCache, RepoConfigResult, repo_config
from bot.config.problems import explain
from bot.config.repo import default_repo_config
from bot.config.workflow import REPO_CONFIG_PATH
from bot.errors import ConfigUnavailable
from bot.registry import GitHubApp
from bot.settings import Settings
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo
from tests.support.helpers import TEST_API_URL
from tests.support.helpers import test_private_key as app_private_key

INSTALLATION = 31
GOOD = "workflows:\n  coder:\n    max_attempts: 5\n"


@pytest.fixture
def control() -> ControlConfig:
    return default_control_config({})


@pytest.fixture
def app(settings: Settings) -> GitHubApp:
    return GitHubApp(
        api_url=TEST_API_URL, app_id=settings.github_app_id or 0, private_key=app_private_key()
    )


@pytest.fixture
def repo(github_api: FakeGitHubAPI) -> FakeRepo:
    github_api.add_installation(INSTALLATION, "acme")
    repo = github_api.add_repo("acme/widgets", 901, INSTALLATION)
    repo.data["default_branch"] = "main"
    return repo


def calls(github_api: FakeGitHubAPI, part: str) -> list[httpx.Request]:
    return [r for r in github_api.requests if part in r.url.path]


async def read(
    app: GitHubApp, control: ControlConfig, cache: ConfigCache, name: str = "acme/widgets"
) -> RepoConfigResult:
    return await repo_config(app, INSTALLATION, name, "main", control, cache=cache)


async def test_reads_the_file_at_the_default_branch_head_never_a_pr_branch(
    app: GitHubApp, repo: FakeRepo, github_api: FakeGitHubAPI, control: ControlConfig
) -> None:
    head = github_api.commit(repo, {REPO_CONFIG_PATH: GOOD, "README.md": "hi"})
    github_api.commit(
        repo, {REPO_CONFIG_PATH: "workflows: {coder: {max_attempts: 1}}"}, branch="pr"
    )
    result = await read(app, control, ConfigCache())
    assert result.ok
    assert result.found
    assert result.sha == head
    assert result.config is not None
    assert result.config.workflows["coder"].max_attempts == 5
    (ref,) = calls(github_api, "/git/ref/")
    assert ref.url.path.endswith("/repos/acme/widgets/git/ref/heads/main")
    (contents,) = calls(github_api, "/contents/")
    assert contents.url.path.endswith("/repos/acme/widgets/contents/.github/openase.yml")
    assert contents.url.params["ref"] == head  # the commit, not the branch name


async def test_a_cached_commit_is_not_fetched_again(
    app: GitHubApp, repo: FakeRepo, github_api: FakeGitHubAPI, control: ControlConfig
) -> None:
    github_api.commit(repo, {REPO_CONFIG_PATH: GOOD})
    cache = ConfigCache()
    first = await read(app, control, cache)
    second = await read(app, control, cache)
    assert second is first
    assert len(calls(github_api, "/git/ref/")) == 2  # the head is asked for every time
    assert len(calls(github_api, "/contents/")) == 1
    # A push to the default branch is a new commit: read again.
    new_head = github_api.commit(repo, {REPO_CONFIG_PATH: "workflows: {coder: {}}"})
    third = await read(app, control, cache)
    assert third.sha == new_head
    assert third.config is not None
    assert third.config.workflows["coder"].max_attempts == 3
    assert len(calls(github_api, "/contents/")) == 2
    # Another control config may change what is valid: validated again, not refetched blindly.
    other = default_control_config({"ANTHROPIC_API_KEY": "x"})
    assert (await read(app, other, cache)) is not third


async def test_the_cache_is_bounded(
    app: GitHubApp, repo: FakeRepo, github_api: FakeGitHubAPI, control: ControlConfig
) -> None:
    cache = ConfigCache(entries=2)
    for n in range(3):
        github_api.commit(
            repo, {REPO_CONFIG_PATH: f"workflows: {{coder: {{max_attempts: {n + 1}}}}}"}
        )
        await read(app, control, cache)
    assert len(cache) == 2


async def test_no_file_means_the_default_workflow(
    app: GitHubApp, repo: FakeRepo, github_api: FakeGitHubAPI, control: ControlConfig
) -> None:
    head = github_api.commit(repo, {"README.md": "no config here"})
    result = await read(app, control, ConfigCache())
    assert result == RepoConfigResult(
        "acme/widgets", head, default_repo_config(control), branch="main"
    )
    assert not result.found
    assert result.ok


async def test_an_empty_repository_gets_the_default_workflow(
    app: GitHubApp, repo: FakeRepo, github_api: FakeGitHubAPI, control: ControlConfig
) -> None:
    result = await read(app, control, ConfigCache())
    assert (result.sha, result.config) == (None, default_repo_config(control))
    assert calls(github_api, "/contents/") == []


async def test_a_renamed_default_branch_is_looked_up_and_read(
    app: GitHubApp, repo: FakeRepo, github_api: FakeGitHubAPI, control: ControlConfig
) -> None:
    """`main` became `trunk` before any webhook said so: the repository is asked again and
    its file read from `trunk`, never the default workflow in its place."""
    head = github_api.commit(repo, {REPO_CONFIG_PATH: GOOD}, branch="trunk")
    repo.data["default_branch"] = "trunk"

    result = await read(app, control, ConfigCache())  # still asks for `main`

    assert (result.sha, result.branch, result.found) == (head, "trunk", True)
    assert result.config is not None
    assert result.config.workflows["coder"].max_attempts == 5
    assert [r.url.path for r in calls(github_api, "/git/ref/")] == [
        "/api/v3/repos/acme/widgets/git/ref/heads/main",
        "/api/v3/repos/acme/widgets/git/ref/heads/trunk",
    ]


async def test_a_default_branch_that_is_gone_fails_closed(
    app: GitHubApp, repo: FakeRepo, github_api: FakeGitHubAPI, control: ControlConfig
) -> None:
    github_api.commit(repo, {REPO_CONFIG_PATH: GOOD}, branch="feature")  # commits, but no main

    with pytest.raises(ConfigUnavailable, match="no default branch `main`"):
        await read(app, control, ConfigCache())
    assert calls(github_api, "/contents/") == []


async def test_a_repository_the_app_cannot_see_fails_closed(
    app: GitHubApp, github_api: FakeGitHubAPI, control: ControlConfig
) -> None:
    github_api.add_installation(INSTALLATION, "acme")
    with pytest.raises(ConfigUnavailable, match=r"does not show acme/gone to the App \(HTTP 404\)"):
        await read(app, control, ConfigCache(), name="acme/gone")


@pytest.mark.parametrize("path", ["/git/ref/", "/contents/"])
async def test_github_failing_is_no_default_workflow(
    app: GitHubApp,
    repo: FakeRepo,
    github_api: FakeGitHubAPI,
    control: ControlConfig,
    path: str,
) -> None:
    """A 5xx on the branch or on the file propagates for the caller to wait and retry."""
    github_api.commit(repo, {REPO_CONFIG_PATH: GOOD})
    for _ in range(5):  # the client's own retries included
        github_api.queue(502, {"message": "Server Error"}, path_regex=f".*{path}.*")

    with pytest.raises(TransientError):
        await read(app, control, ConfigCache())


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b"# padding\n" * 7000,
            f"is 70000 bytes; the limit is {MAX_REPO_CONFIG_BYTES}",
        ),
        (
            b"workflows:\n  coder: {harness: \xff}\n",
            "is not UTF-8 text (byte 30 cannot be decoded)",
        ),
    ],
)
async def test_oversized_or_binary_files_are_problems(
    content: bytes,
    reason: str,
    app: GitHubApp,
    repo: FakeRepo,
    github_api: FakeGitHubAPI,
    control: ControlConfig,
) -> None:
    github_api.commit(repo, {REPO_CONFIG_PATH: content})
    result = await read(app, control, ConfigCache())
    assert not result.ok
    assert result.found
    assert [(p.file, p.key, p.reason) for p in result.problems] == [(REPO_CONFIG_PATH, "", reason)]


async def test_a_file_over_a_megabyte_is_refused_by_its_size(
    app: GitHubApp, repo: FakeRepo, github_api: FakeGitHubAPI, control: ControlConfig
) -> None:
    github_api.commit(repo, {REPO_CONFIG_PATH: b"#" * (2 * 1024 * 1024)})
    result = await read(app, control, ConfigCache())
    assert [p.reason for p in result.problems] == [
        f"is {2 * 1024 * 1024} bytes; the limit is {MAX_REPO_CONFIG_BYTES}"
    ]


async def test_a_folder_in_place_of_the_file_is_a_problem(
    app: GitHubApp, repo: FakeRepo, github_api: FakeGitHubAPI, control: ControlConfig
) -> None:
    github_api.commit(repo, {REPO_CONFIG_PATH + "/x.yml": "workflows: {}"})
    result = await read(app, control, ConfigCache())
    assert [p.reason for p in result.problems] == ["is a dir, not a file"]


async def test_an_invalid_file_comes_back_as_problems_to_comment(
    app: GitHubApp, repo: FakeRepo, github_api: FakeGitHubAPI
) -> None:
    control = parse_control_config(
        "providers: {claude: {cli: claude_code}, script: {cli: command, argv: [a]}}\n"
        "defaults: {provider: claude}\n",
        file="control.yml",
        environ={},
    )
    assert isinstance(control, ControlConfig)
    github_api.commit(repo, {REPO_CONFIG_PATH: "workflows:\n  coder:\n    provider: gpt\n"})
    result = await read(app, control, ConfigCache())
    assert result.config is None
    assert explain(result.problems).splitlines()[2] == (
        "- `.github/openase.yml` line 3, `workflows.coder.provider`: no provider 'gpt' in the "
        "control-plane config (providers: claude, script)"
    )


async def test_fake_answers_have_githubs_shapes(
    app: GitHubApp, repo: FakeRepo, github_api: FakeGitHubAPI, control: ControlConfig
) -> None:
    github_api.commit(repo, {REPO_CONFIG_PATH: GOOD})
    await read(app, control, ConfigCache())
    (ref_answer,) = [a for r, a in github_api.answers if "/git/ref/" in r.url.path]
    (file_answer,) = [a for r, a in github_api.answers if "/contents/" in r.url.path]
    ref = type_validate_python(GitRef, ref_answer.json())
    content = type_validate_python(ContentFile, file_answer.json())
    assert ref.ref == "refs/heads/main"
    assert base64.b64decode(content.content).decode() == GOOD
    assert content.encoding == "base64"


async def test_the_fakes_file_api_matches_the_client(
    app: GitHubApp, repo: FakeRepo, github_api: FakeGitHubAPI
) -> None:
    head = github_api.commit(repo, {"docs/a.md": "A", "docs/b.md": "B"})
    assert await app.branch_head_sha("acme/widgets", "main", INSTALLATION) == head
    with pytest.raises(BranchMissing, match="acme/widgets has no branch 'nope'") as missing:
        await app.branch_head_sha("acme/widgets", "nope", INSTALLATION)
    assert missing.value.status == 404
    file = await app.file_at("acme/widgets", "docs/a.md", head, INSTALLATION)
    assert file is not None
    assert (file.kind, file.size, file.content) == ("file", 1, b"A")
    assert "b'A'" not in repr(file)  # contents stay out of logs
    folder = await app.file_at("acme/widgets", "docs", head, INSTALLATION)
    assert folder is not None
    assert folder.kind == "dir"
    assert await app.file_at("acme/widgets", "missing.md", head, INSTALLATION) is None
    github_api.commit(repo, {"docs/a.md": None})
    later = await app.branch_head_sha("acme/widgets", "main", INSTALLATION)
    assert later is not None
    assert await app.file_at("acme/widgets", "docs/a.md", later, INSTALLATION) is None
    assert await app.file_at("acme/widgets", "docs/a.md", head, INSTALLATION) is not None
