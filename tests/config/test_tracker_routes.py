"""Linear and Jira tickets on GitHub code: which repository and workflow the control-plane
config routes a ticket to, which tracker state each workflow state is shown as (and back),
and who a tracker user is on GitHub. The config is parsed from YAML, as an operator writes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.config.control import ControlConfig, parse_control_config
from bot.config.problems import ConfigProblem
from bot.config.routes import (
    Route,
    access_of,
    allowed,
    github_login_for,
    route_of,
    state_of_tracker,
    target_names,
    tracker_identities,
)
from bot.config.states import State
from bot.engine.access import GitHubPermissions, PermissionCache
from bot.engine.tracker_tickets import TrackerPermissions, access_hint, tracker_actor
from bot.registry import JIRA, LINEAR, GitHubApp
from bot.settings import Settings
from tests.fakes.github_api import FakeGitHubAPI
from tests.support.helpers import TEST_API_URL
from tests.support.helpers import test_private_key as app_private_key

CONTROL = """\
linear:
  states: {in_review: Code Review, done: Shipped}
  users: {"Ada@Example.com": ada-gh, "lin-user-7": bob-gh}
  allow: ["carol@example.com", "lin-user-9"]
  teams:
    ENG:
      repo: acme/api
      workflow: coder
      labels:
        Frontend: {repo: acme/web}
        hotfix: {workflow: fixer}
      projects:
        Mobile: {repo: acme/app, workflow: mobile}
        docs: {repo: acme/docs}
    OPS: {repo: acme/infra}
jira:
  states: {todo: to do, merging: Code Review, in_review: Code Review}
  users: {"5b10a2844c20165700ede21g": alice-gh}
  allow: ["Dave@Example.com"]
  projects:
    PROJ:
      repo: acme/api
      labels: {urgent: {workflow: fixer}}
      components:
        UI: {repo: acme/web}
        Backend: {workflow: backend}
"""


def parsed(text: str) -> ControlConfig:
    result = parse_control_config(text, file="control.yml", environ={})
    assert isinstance(result, ControlConfig), result
    return result


def problems(text: str) -> list[ConfigProblem]:
    result = parse_control_config(text, file="control.yml", environ={})
    assert isinstance(result, list), result
    return result


@pytest.fixture(scope="module")
def control() -> ControlConfig:
    return parsed(CONTROL)


def linear_ticket(team: str = "ENG", project: str | None = None) -> dict[str, Any]:
    return {"team_id": "t-1", "team_key": team, "project": project}


def jira_ticket(project: str = "PROJ", components: list[str] | None = None) -> dict[str, Any]:
    return {"project_key": project, "components": components or []}


# --- parsing -------------------------------------------------------------------------------------


def test_the_tracker_sections_parse(control: ControlConfig) -> None:
    eng = control.linear.teams["ENG"]
    assert (eng.repo, eng.workflow) == ("acme/api", "coder")
    assert eng.labels["Frontend"].repo == "acme/web"
    assert eng.labels["Frontend"].workflow is None
    assert eng.projects["Mobile"].workflow == "mobile"
    assert control.linear.teams["OPS"].workflow == "coder"  # the default workflow
    assert control.linear.states == {"in_review": "Code Review", "done": "Shipped"}
    assert control.linear.users["lin-user-7"] == "bob-gh"
    assert control.linear.allow == ("carol@example.com", "lin-user-9")
    proj = control.jira.projects["PROJ"]
    assert proj.components["UI"].repo == "acme/web"
    assert proj.components["Backend"].workflow == "backend"
    assert control.jira.users == {"5b10a2844c20165700ede21g": "alice-gh"}


def test_an_unknown_state_name_is_a_problem_naming_the_key_and_the_states() -> None:
    [problem] = problems("linear:\n  states: {reviewing: In Review}\n")
    assert (problem.file, problem.key, problem.line) == ("control.yml", "linear.states", 2)
    assert "'reviewing'" in problem.reason
    assert "in_review" in problem.reason  # the states there are


def test_a_bad_github_login_under_users_is_a_problem_naming_the_user() -> None:
    [problem] = problems('jira:\n  users: {"dave@example.com": "not a login!"}\n')
    assert problem.key == "jira.users.dave@example.com"
    assert problem.line == 2
    assert "not a login!" in problem.reason


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("linear: {teams: {ENG: {repo: acme/api, labels: {bug: {repo: nope}}}}}\n",
         "linear.teams.ENG.labels.bug.repo"),
        ("jira: {projects: {P: {repo: acme/api, components: {UI: {workflow: Bad Name}}}}}\n",
         "jira.projects.P.components.UI.workflow"),
        ("linear: {teams: {ENG: {repo: acme/api, label: {}}}}\n", "linear.teams.ENG.label"),
        ("jira: {allow: [''] }\n", "jira.allow[0]"),
    ],
)  # fmt: skip
def test_bad_routes_are_problems_naming_their_key(text: str, key: str) -> None:
    assert [problem.key for problem in problems(text)] == [key]


# --- routing -------------------------------------------------------------------------------------


def test_a_team_without_narrower_rules_goes_to_its_repository(control: ControlConfig) -> None:
    route = route_of(control, LINEAR, linear_ticket("OPS"), [])
    assert route == Route("acme/infra", "coder", "linear team OPS")


def test_team_and_project_keys_compare_case_insensitively(control: ControlConfig) -> None:
    assert route_of(control, LINEAR, linear_ticket("eng"), []) == Route(
        "acme/api", "coder", "linear team eng"
    )
    route = route_of(control, JIRA, jira_ticket("proj"), [])
    assert route is not None
    assert (route.repo, route.workflow) == ("acme/api", "coder")


def test_a_label_routes_narrower_and_inherits_what_it_leaves_out(control: ControlConfig) -> None:
    web = route_of(control, LINEAR, linear_ticket(), ["openase", "FRONTEND"])
    assert web == Route("acme/web", "coder", "linear team ENG, label 'Frontend'")
    fix = route_of(control, LINEAR, linear_ticket(), ["Hotfix"])
    assert fix == Route("acme/api", "fixer", "linear team ENG, label 'hotfix'")


def test_the_first_matching_label_in_the_files_order_wins(control: ControlConfig) -> None:
    route = route_of(control, LINEAR, linear_ticket(), ["hotfix", "frontend"])
    assert route is not None
    assert route.repo == "acme/web"
    assert route.workflow == "coder"


def test_a_linear_project_routes_narrower(control: ControlConfig) -> None:
    mobile = route_of(control, LINEAR, linear_ticket(project="mobile"), [])
    assert mobile == Route("acme/app", "mobile", "linear team ENG, project 'Mobile'")
    docs = route_of(control, LINEAR, linear_ticket(project="Docs"), [])
    assert docs == Route("acme/docs", "coder", "linear team ENG, project 'docs'")


def test_a_label_wins_over_a_project(control: ControlConfig) -> None:
    route = route_of(control, LINEAR, linear_ticket(project="Mobile"), ["hotfix"])
    assert route == Route("acme/api", "fixer", "linear team ENG, label 'hotfix'")


def test_jira_components_route_narrower_and_labels_win_over_them(control: ControlConfig) -> None:
    ui = route_of(control, JIRA, jira_ticket(components=["Docs", "ui"]), [])
    assert ui == Route("acme/web", "coder", "jira project PROJ, component 'UI'")
    backend = route_of(control, JIRA, jira_ticket(components=["Backend"]), [])
    assert backend == Route("acme/api", "backend", "jira project PROJ, component 'Backend'")
    urgent = route_of(control, JIRA, jira_ticket(components=["UI"]), ["URGENT"])
    assert urgent == Route("acme/api", "fixer", "jira project PROJ, label 'urgent'")


def test_a_linear_project_rule_does_not_apply_to_jira_and_back(control: ControlConfig) -> None:
    # A Jira ticket's "project" is its scope, never a Linear project rule, and vice versa.
    assert route_of(control, JIRA, {"project_key": "PROJ", "project": "Mobile"}, []) == Route(
        "acme/api", "coder", "jira project PROJ"
    )
    ticket = linear_ticket() | {"components": ["UI"]}
    assert route_of(control, LINEAR, ticket, []) == Route("acme/api", "coder", "linear team ENG")


@pytest.mark.parametrize(
    ("source", "tracker"),
    [
        (LINEAR, {"team_key": "DESIGN"}),
        (JIRA, {"project_key": "OTHER"}),
        (LINEAR, {"project_key": "PROJ"}),  # a Jira ticket's fields under Linear
        (LINEAR, {"team_key": None}),
        (LINEAR, None),
        (LINEAR, {}),
        ("github", {"team_key": "ENG"}),
    ],
)
def test_no_route_for_an_unknown_scope(
    control: ControlConfig, source: str, tracker: dict[str, Any] | None
) -> None:
    assert route_of(control, source, tracker, ["frontend"]) is None


# --- states we show on the tracker ---------------------------------------------------------------


def test_the_configured_name_comes_first_then_the_defaults(control: ControlConfig) -> None:
    assert target_names(control, LINEAR, State.IN_REVIEW) == ["Code Review", "In Review"]
    assert target_names(control, LINEAR, State.DONE) == ["Shipped", "Done"]


def test_a_configured_name_equal_to_a_default_is_not_tried_twice(control: ControlConfig) -> None:
    assert target_names(control, JIRA, State.TODO) == ["to do", "Selected for Development", "Open"]


def test_without_config_the_defaults_fit_the_stock_workflows() -> None:
    bare = parsed("")
    assert target_names(bare, LINEAR, State.TODO) == ["Todo", "To Do"]
    assert target_names(bare, LINEAR, State.CANCELED) == ["Canceled", "Cancelled"]
    assert target_names(bare, JIRA, State.IN_REVIEW) == ["In Review", "Review", "Code Review"]
    assert target_names(bare, JIRA, State.DONE) == ["Done", "Closed", "Resolved"]
    # Merging shows as review until the PR merges.
    assert target_names(bare, LINEAR, State.MERGING) == ["In Review"]


def test_merging_shows_as_the_configured_review_state(control: ControlConfig) -> None:
    # Only in_review is configured for Linear: merging must not fall back to a state the
    # team does not have (and from there to the first "started" state, In Progress).
    assert target_names(control, LINEAR, State.MERGING)[0] == "Code Review"
    assert target_names(control, JIRA, State.MERGING)[0] == "Code Review"


def test_failed_leaves_the_issue_where_it_is(control: ControlConfig) -> None:
    assert target_names(control, LINEAR, State.FAILED) == []
    assert target_names(control, JIRA, State.FAILED) == []
    assert target_names(control, LINEAR, "no-such-state") == []


# --- states humans move issues to ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "name", "kind", "state"),
    [
        (LINEAR, "code review", "started", State.IN_REVIEW),  # configured, any case
        (LINEAR, "Shipped", "completed", State.DONE),
        (LINEAR, "In Progress", "started", State.IN_PROGRESS),  # defaults
        (LINEAR, "In Review", "started", State.IN_REVIEW),
        (LINEAR, "cancelled", None, State.CANCELED),
        (LINEAR, "Triage", "triage", State.BACKLOG),  # by type
        (LINEAR, "Ready", "unstarted", State.TODO),
        (LINEAR, "Released", "completed", State.DONE),
        (LINEAR, "Won't fix", "canceled", State.CANCELED),
        (LINEAR, "Doing", "started", None),  # started says nothing about which state
        (LINEAR, "Doing", None, None),
        (JIRA, "Code Review", "indeterminate", State.IN_REVIEW),  # configured twice
        (JIRA, "TO DO", "new", State.TODO),
        (JIRA, "Selected for Development", "new", State.TODO),
        (JIRA, "Resolved", "done", State.DONE),
        (JIRA, "Won't Do", "done", State.CANCELED),  # the name beats the category
        (JIRA, "Triaged", "new", State.TODO),  # by category
        (JIRA, "QA", "done", State.DONE),
        (JIRA, "QA", "indeterminate", None),
        (JIRA, "QA", None, None),
    ],
)
def test_the_state_a_human_moves_an_issue_to(
    control: ControlConfig, source: str, name: str, kind: str | None, state: str | None
) -> None:
    assert state_of_tracker(control, source, name, kind) == state


def test_merging_is_never_read_from_a_review_state() -> None:
    bare = parsed("")
    for name in ("In Review", "Review", "Code Review"):
        assert state_of_tracker(bare, JIRA, name, "indeterminate") == State.IN_REVIEW
    assert state_of_tracker(bare, LINEAR, "In Review", "started") == State.IN_REVIEW
    # Configured with the same name as in_review, and listed first, merging still loses.
    shared = parsed("linear: {states: {merging: Review, in_review: Review}}\n")
    assert state_of_tracker(shared, LINEAR, "review", "started") == State.IN_REVIEW
    # Only the engine moves a ticket to merging, whatever the state is called.
    own = parsed("jira: {states: {merging: Ready to Merge}}\n")
    assert state_of_tracker(own, JIRA, "Ready to Merge", "indeterminate") is None
    assert target_names(own, JIRA, State.MERGING)[0] == "Ready to Merge"


# --- people --------------------------------------------------------------------------------------


def test_users_map_to_github_logins_by_id_or_email_in_any_case(control: ControlConfig) -> None:
    linear = access_of(control, LINEAR)
    assert github_login_for(linear, tracker_identities(LINEAR, "u-1", "ada@EXAMPLE.com")) == (
        "ada-gh"
    )
    assert github_login_for(linear, tracker_identities(LINEAR, "LIN-USER-7", None)) == "bob-gh"
    assert github_login_for(linear, tracker_identities(LINEAR, "u-2", "eve@example.com")) is None
    assert github_login_for(linear, []) is None
    jira = access_of(control, JIRA)
    assert github_login_for(jira, ["5b10a2844c20165700ede21g"]) == "alice-gh"
    assert github_login_for(jira, ["ada@example.com"]) is None  # Linear's users stay Linear's


def test_allow_lists_users_by_id_or_email_in_any_case(control: ControlConfig) -> None:
    linear = access_of(control, LINEAR)
    assert allowed(linear, tracker_identities(LINEAR, "u-3", "Carol@example.COM"))
    assert allowed(linear, tracker_identities(LINEAR, "LIN-user-9", None))
    assert not allowed(linear, tracker_identities(LINEAR, "u-1", "ada@example.com"))
    assert not allowed(linear, [])
    assert allowed(access_of(control, JIRA), ["acc-1", "dave@example.com"])


def test_identities_leave_out_what_the_tracker_did_not_say() -> None:
    assert tracker_identities(JIRA, None, "x@example.com") == ["x@example.com"]
    assert tracker_identities(LINEAR, "id", None) == ["id"]
    assert tracker_identities(LINEAR, None, None) == []


def test_the_actor_is_the_mapped_login_else_the_trackers_name(control: ControlConfig) -> None:
    actor, mapped, allow_all = tracker_actor(
        control, LINEAR, name="Ada Lovelace", kind="user", identities=["u-1", "ADA@example.com"]
    )
    assert (actor.login, mapped, allow_all) == ("ada-gh", True, False)
    actor, mapped, allow_all = tracker_actor(
        control, LINEAR, name="Carol", kind="user", identities=["u-3", "carol@example.com"]
    )
    assert (actor.login, mapped, allow_all) == ("Carol", False, True)
    actor, mapped, _ = tracker_actor(control, JIRA, name=None, kind=None, identities=["acc-9"])
    assert (actor.login, mapped) == ("acc-9", False)
    assert tracker_actor(control, JIRA, name=None, kind=None, identities=[])[0].login == "someone"


def test_the_refusal_hint_names_the_config_keys() -> None:
    assert "`linear.users`" in access_hint(LINEAR)
    assert "`linear.allow`" in access_hint(LINEAR)
    assert "`jira.users`" in access_hint(JIRA)
    assert "Jira user" in access_hint(JIRA)


# --- permissions, through the real GitHub permission lookup --------------------------------------

INSTALLATION = 52
REPO = "acme/api"


@pytest.fixture
async def repo_permissions(
    settings: Settings, github_api: FakeGitHubAPI
) -> AsyncIterator[GitHubPermissions]:
    github_api.add_installation(INSTALLATION, "acme")
    github_api.add_repo(REPO, 5200, INSTALLATION)
    github_api.permissions["ada-gh"] = "write"
    app = GitHubApp(
        api_url=TEST_API_URL, app_id=settings.github_app_id or 0, private_key=app_private_key()
    )
    yield GitHubPermissions(app, REPO, INSTALLATION, PermissionCache())
    await app.aclose()


def _permission_asks(github_api: FakeGitHubAPI) -> list[str]:
    return [path for path, _ in github_api.calls("GET", r"/collaborators/[^/]+/permission$")]


async def test_a_mapped_user_has_their_github_logins_permission(
    repo_permissions: GitHubPermissions, github_api: FakeGitHubAPI
) -> None:
    permissions = TrackerPermissions(repo_permissions, mapped=True, allow_all=False)
    assert await permissions.permission("ada-gh") == "write"
    assert await permissions.permission("bob-gh") == "read"
    assert _permission_asks(github_api) == [
        "/repos/acme/api/collaborators/ada-gh/permission",
        "/repos/acme/api/collaborators/bob-gh/permission",
    ]


async def test_an_unmapped_user_has_none_and_github_is_not_asked(
    repo_permissions: GitHubPermissions, github_api: FakeGitHubAPI
) -> None:
    # Their tracker name may be someone else's GitHub login: it must never be looked up.
    permissions = TrackerPermissions(repo_permissions, mapped=False, allow_all=False)
    assert await permissions.permission("ada-gh") == "none"
    assert not await permissions.in_team("acme/maintainers", "ada-gh")
    assert github_api.calls("GET") == []


async def test_an_allowed_user_may_do_everything_without_a_mapping(
    repo_permissions: GitHubPermissions, github_api: FakeGitHubAPI
) -> None:
    permissions = TrackerPermissions(repo_permissions, mapped=False, allow_all=True)
    assert await permissions.permission("Carol") == "write"
    assert _permission_asks(github_api) == []
