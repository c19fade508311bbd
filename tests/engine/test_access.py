"""Who may use a slash command: the whole permission matrix, the cache, teams and the reply's
reason, with the real GitHubApp against the respx fake of the GitHub API."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
from githubkit.compat import type_validate_python
from githubkit_schemas.latest.models import TeamMembership

from adapters.errors import RequestRejected, TransientError
from bot.config.repo import CommandAccess
from bot.engine.access import (
    Actor,
    Decision,
    GitHubPermissions,
    Level,
    PermissionCache,
    decide,
)
from bot.registry import GitHubApp
from bot.settings import Settings
from tests.fakes.github_api import FakeGitHubAPI
from tests.support.helpers import TEST_API_URL
from tests.support.helpers import test_private_key as app_private_key

INSTALLATION = 41
REPO = "octo/hello"
PERMISSION_PATH = r"/collaborators/[^/]+/permission$"
TEAM_PATH = r"^/orgs/[^/]+/teams/[^/]+/memberships/[^/]+$"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[GitHubApp]:
    github = GitHubApp(
        api_url=TEST_API_URL, app_id=settings.github_app_id or 0, private_key=app_private_key()
    )
    yield github
    await github.aclose()


@pytest.fixture(autouse=True)
def hello(github_api: FakeGitHubAPI) -> None:
    github_api.add_installation(INSTALLATION, "octo")
    github_api.add_repo(REPO, 4100, INSTALLATION)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def source(app: GitHubApp, clock: Clock) -> GitHubPermissions:
    return GitHubPermissions(app, REPO, INSTALLATION, PermissionCache(clock=clock))


def user(login: str = "mona") -> Actor:
    return Actor(login=login, kind="User")


async def check(
    source: GitHubPermissions,
    actor: Actor,
    *,
    needs: Level = Level.WRITE,
    access: CommandAccess | None = None,
    command: str = "retry",
) -> Decision:
    return await decide(source, command=command, needs=needs, actor=actor, access=access, repo=REPO)


# --- the matrix ------------------------------------------------------------------------

PERMISSIONS = ("admin", "maintain", "write", "triage", "read", "none")


def _expected(permission: str, needs: Level, listed: bool, in_team: bool, bot: bool) -> bool:
    """The rule of DESIGN §5, written out once more as the table's oracle."""
    if listed:
        return True
    if bot:
        return False
    if needs is Level.ANYONE:
        return True
    return permission in ("admin", "maintain", "write") or in_team


MATRIX = [
    pytest.param(
        permission,
        needs,
        listed,
        in_team,
        bot,
        _expected(permission, needs, listed, in_team, bot),
        id=f"{permission}-{needs}-{'listed' if listed else 'unlisted'}-"
        f"{'team' if in_team else 'noteam'}-{'bot' if bot else 'user'}",
    )
    for permission, needs, listed, in_team, bot in itertools.product(
        PERMISSIONS, Level, (False, True), (False, True), (False, True)
    )
]


@pytest.mark.parametrize(("permission", "needs", "listed", "in_team", "bot", "allowed"), MATRIX)
async def test_permission_matrix(
    source: GitHubPermissions,
    github_api: FakeGitHubAPI,
    permission: str,
    needs: Level,
    listed: bool,
    in_team: bool,
    bot: bool,
    allowed: bool,
) -> None:
    login = "helper[bot]" if bot else "mona"
    github_api.permissions[login] = permission
    if in_team:
        github_api.team_members["octo/core"] = {login}
    access = CommandAccess(users=(login,) if listed else ("someone-else",), teams=("octo/core",))
    decision = await check(
        source, Actor(login, "Bot" if bot else "User"), needs=needs, access=access
    )
    assert decision.allowed is allowed, decision.reason
    # GitHub is asked only when the allow-list, a bot or an anyone-command did not decide.
    asked = not listed and not bot and needs is Level.WRITE
    assert bool(github_api.calls("GET", PERMISSION_PATH)) is asked
    needs_team = asked and permission not in ("admin", "maintain", "write")
    assert len(github_api.calls("GET", TEAM_PATH)) == (1 if needs_team else 0)


async def test_a_bot_with_write_access_is_refused_unless_listed(
    source: GitHubPermissions, github_api: FakeGitHubAPI
) -> None:
    github_api.permissions["openase[bot]"] = "admin"
    refused = await check(source, Actor("openase[bot]", "Bot"))
    assert not refused.allowed
    assert refused.reason == (
        "`/retry` is not taken from bots unless they are listed under commands.retry.users "
        "in .github/openase.yml"
    )
    # A bot login tells it apart even when the tracker did not say it is a bot.
    assert not (await check(source, Actor("renovate[bot]", None), needs=Level.ANYONE)).allowed
    listed = CommandAccess(users=("OpenASE[bot]",))
    assert (await check(source, Actor("openase[bot]", "Bot"), access=listed)).allowed


async def test_anyone_may_use_read_only_commands_without_asking_github(
    source: GitHubPermissions, github_api: FakeGitHubAPI
) -> None:
    github_api.permissions["stranger"] = "none"
    decision = await check(source, user("stranger"), needs=Level.ANYONE, command="status")
    assert decision == Decision(True, "anyone may use `/status`")
    assert github_api.requests == []


# --- GitHub's answers ----------------------------------------------------------------------


async def test_not_found_from_the_permission_endpoint_means_none(
    source: GitHubPermissions, github_api: FakeGitHubAPI
) -> None:
    github_api.queue(404, {"message": "Not Found"}, path_regex=PERMISSION_PATH)
    assert await source.permission("ghost") == "none"
    decision = await check(source, user("ghost"))  # cached: GitHub is not asked again
    assert not decision.allowed
    assert "(you have no access)" in decision.reason
    assert len(github_api.calls("GET", PERMISSION_PATH)) == 1


async def test_an_unreadable_team_refuses_instead_of_failing(
    source: GitHubPermissions, github_api: FakeGitHubAPI
) -> None:
    access = CommandAccess(teams=("core",))
    github_api.queue(
        403, {"message": "Resource not accessible by integration"}, path_regex=TEAM_PATH
    )
    assert not (await check(source, user(), access=access)).allowed
    before = len(github_api.calls("GET", TEAM_PATH))
    await check(source, user(), access=access)  # not cached: asked again
    assert len(github_api.calls("GET", TEAM_PATH)) == before + 1


@pytest.mark.parametrize("path", [PERMISSION_PATH, TEAM_PATH])
async def test_other_github_errors_propagate(
    source: GitHubPermissions, github_api: FakeGitHubAPI, path: str
) -> None:
    access = CommandAccess(teams=("core",))
    if path == PERMISSION_PATH:
        github_api.queue(403, {"message": "Resource not accessible"}, path_regex=path)
        with pytest.raises(RequestRejected) as refused:
            await check(source, user(), access=access)
        assert refused.value.status == 403
    github_api.queue(502, {"message": "Bad Gateway"}, path_regex=path)
    with pytest.raises(TransientError):
        await check(source, user(), access=access)
    # Nothing was cached from a failure: the next command asks again, and succeeds.
    before = len(github_api.requests)
    assert not (await check(source, user(), access=access)).allowed
    assert len(github_api.requests) > before


async def test_the_permission_endpoint_is_asked_about_the_login(
    source: GitHubPermissions, github_api: FakeGitHubAPI
) -> None:
    github_api.permissions["mona"] = "maintain"
    assert await source.permission("mona") == "maintain"
    ((path, body),) = github_api.calls("GET", PERMISSION_PATH)
    assert path == "/repos/octo/hello/collaborators/mona/permission"
    assert body is None


# --- teams ---------------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["core", "octo/core", "@octo/core", "OCTO/Core"])
async def test_a_team_without_an_org_is_the_repo_owners(
    source: GitHubPermissions, github_api: FakeGitHubAPI, written: str
) -> None:
    github_api.team_members["octo/core"] = {"mona"}
    decision = await check(source, user(), access=CommandAccess(teams=(written,)))
    assert decision.allowed
    assert decision.reason == f"member of team {written}, listed under commands.retry"
    ((path, _),) = github_api.calls("GET", TEAM_PATH)
    assert path.lower() == "/orgs/octo/teams/core/memberships/mona"


async def test_team_membership_checks_each_listed_team_until_one_answers_yes(
    source: GitHubPermissions, github_api: FakeGitHubAPI
) -> None:
    github_api.team_members["octo/ops"] = {"mona"}
    access = CommandAccess(teams=("octo/core", "octo/ops", "octo/never-asked"))
    assert (await check(source, user(), access=access)).allowed
    asked = [path for path, _ in github_api.calls("GET", TEAM_PATH)]
    assert asked == [
        "/orgs/octo/teams/core/memberships/mona",
        "/orgs/octo/teams/ops/memberships/mona",
    ]


async def test_a_pending_invitation_is_not_membership(
    source: GitHubPermissions, github_api: FakeGitHubAPI
) -> None:
    url = f"{TEST_API_URL}/teams/1/memberships/mona"
    github_api.queue(200, {"url": url, "role": "member", "state": "pending"}, path_regex=TEAM_PATH)
    assert not await source.in_team("core", "mona")


async def test_a_team_of_another_org_is_not_seen(
    source: GitHubPermissions, github_api: FakeGitHubAPI
) -> None:
    github_api.team_members["elsewhere/core"] = {"mona"}
    assert not await source.in_team("elsewhere/core", "mona")


async def test_the_fake_answers_team_membership_as_github_does(
    app: GitHubApp, github_api: FakeGitHubAPI
) -> None:
    github_api.team_members["octo/core"] = {"Mona"}
    response = await app.request(
        "GET", "/orgs/octo/teams/core/memberships/mona", installation_id=INSTALLATION
    )
    membership = type_validate_python(TeamMembership, response.json())
    assert (membership.state, membership.role) == ("active", "member")
    assert membership.url.endswith("/memberships/mona")
    with pytest.raises(RequestRejected) as missing:
        await app.request(
            "GET", "/orgs/octo/teams/core/memberships/hubot", installation_id=INSTALLATION
        )
    assert missing.value.status == 404


# --- logins ignore case --------------------------------------------------------------------


async def test_logins_ignore_case(source: GitHubPermissions, github_api: FakeGitHubAPI) -> None:
    listed = CommandAccess(users=("@Mona",))
    assert (await check(source, user("MONA"), access=listed)).allowed
    assert github_api.requests == []  # the allow-list needs no API call
    github_api.team_members["octo/core"] = {"HUBOT"}
    assert (await check(source, user("hubot"), access=CommandAccess(teams=("core",)))).allowed
    github_api.permissions["Octocat"] = "write"
    assert (await check(source, user("Octocat"))).allowed
    assert (await check(source, user("octocat"))).allowed  # the cache ignores case too
    assert len(github_api.calls("GET", PERMISSION_PATH)) == 2  # Octocat, hubot


# --- the cache -----------------------------------------------------------------------------


async def test_a_second_command_within_the_ttl_does_not_ask_github(
    source: GitHubPermissions, github_api: FakeGitHubAPI, clock: Clock
) -> None:
    github_api.permissions["mona"] = "read"
    github_api.team_members["octo/core"] = {"mona"}
    access = CommandAccess(teams=("core",))
    for _ in range(3):
        assert (await check(source, user(), access=access)).allowed
        clock.now += 20
    assert len(github_api.calls("GET", PERMISSION_PATH)) == 1
    assert len(github_api.calls("GET", TEAM_PATH)) == 1
    # 60 s after they were fetched the answers are stale: a removed member is refused.
    github_api.team_members["octo/core"] = set()
    assert not (await check(source, user(), access=access)).allowed
    assert len(github_api.calls("GET", PERMISSION_PATH)) == 2
    assert len(github_api.calls("GET", TEAM_PATH)) == 2


async def test_the_cache_is_shared_and_keyed_by_repo(
    app: GitHubApp, github_api: FakeGitHubAPI, clock: Clock
) -> None:
    github_api.add_repo("octo/other", 4101, INSTALLATION)
    github_api.permissions["mona"] = "write"
    cache = PermissionCache(clock=clock)
    for _ in range(2):
        assert await GitHubPermissions(app, REPO, INSTALLATION, cache).permission("mona") == "write"
    assert len(github_api.calls("GET", PERMISSION_PATH)) == 1
    other = GitHubPermissions(app, "octo/other", INSTALLATION, cache)
    assert await other.permission("mona") == "write"
    assert len(github_api.calls("GET", PERMISSION_PATH)) == 2


def test_the_cache_expires_and_stays_bounded(clock: Clock) -> None:
    cache = PermissionCache(ttl=10, max_entries=2, clock=clock)
    cache.remember_permission("octo/hello", "a", "write")
    cache.remember_membership("octo", "core", "b", True)
    assert cache.permission("OCTO/hello", "A") == "write"  # now used more recently than b
    cache.remember_permission("octo/hello", "c", "read")
    assert len(cache) == 2
    assert cache.membership("octo", "core", "b") is None  # the least recently used went
    assert cache.permission("octo/hello", "a") == "write"
    clock.now += 10
    assert cache.permission("octo/hello", "a") is None
    assert cache.permission("octo/hello", "c") is None
    assert len(cache) == 0


# --- the reason a refusal gives -----------------------------------------------------------


@pytest.mark.parametrize(
    ("permission", "access", "reason"),
    [
        (
            "read",
            None,
            "`/retry` needs write access to octo/hello (you have read), or to be listed under "
            "commands.retry in .github/openase.yml",
        ),
        (
            "none",
            CommandAccess(users=("hubot",)),
            "`/retry` needs write access to octo/hello (you have no access), or to be listed "
            "under commands.retry in .github/openase.yml",
        ),
        (
            "triage",
            CommandAccess(teams=("core", "acme/ops", "acme/qa")),
            "`/retry` needs write access to octo/hello (you have triage), or to be listed "
            "under commands.retry in .github/openase.yml (by login, or as a member of team "
            "core, acme/ops or acme/qa)",
        ),
    ],
)
async def test_a_refusal_names_the_permission_needed(
    source: GitHubPermissions,
    github_api: FakeGitHubAPI,
    permission: str,
    access: CommandAccess | None,
    reason: str,
) -> None:
    github_api.permissions["mona"] = permission
    assert await check(source, user(), access=access) == Decision(False, reason)


@pytest.mark.parametrize(
    ("permission", "access", "reason"),
    [
        ("admin", None, "admin access to octo/hello"),
        ("write", None, "write access to octo/hello"),
        (
            "read",
            CommandAccess(users=("mona",)),
            "listed under commands.retry in .github/openase.yml",
        ),
    ],
)
async def test_an_allowed_command_says_why(
    source: GitHubPermissions,
    github_api: FakeGitHubAPI,
    permission: str,
    access: CommandAccess | None,
    reason: str,
) -> None:
    github_api.permissions["mona"] = permission
    assert await check(source, user(), access=access) == Decision(True, reason)
