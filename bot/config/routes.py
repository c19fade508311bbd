"""Linear and Jira tickets on GitHub code: which repository and workflow a ticket goes to,
and which tracker state each workflow state is shown as (DESIGN §4, §5).

The control-plane config routes a Linear team (or a Jira project) to a repository; a label,
a Linear project or a Jira component can route narrower. State names compare
case-insensitively, as both trackers do; where the config names none, the defaults below
fit the trackers' stock workflows, and Linear falls back on the state's type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.config.control import ControlConfig
from bot.config.states import State
from bot.config.trackers import TrackerAccess, TrackerRoute, TrackerRule
from bot.registry import JIRA, LINEAR

TRACKERS = (LINEAR, JIRA)

# Names tried in order for each workflow state; `merging` shows as review until merged.
# `failed` has none on purpose: a human decides, and the status label and comment say so.
LINEAR_NAMES: Mapping[str, tuple[str, ...]] = {
    State.BACKLOG: ("Backlog",),
    State.TODO: ("Todo", "To Do"),
    State.IN_PROGRESS: ("In Progress",),
    State.IN_REVIEW: ("In Review",),
    State.MERGING: ("In Review",),
    State.DONE: ("Done",),
    State.CANCELED: ("Canceled", "Cancelled"),
}
# Linear's state types, for a team whose states have other names.
LINEAR_TYPES: Mapping[str, str] = {
    State.BACKLOG: "backlog",
    State.TODO: "unstarted",
    State.IN_PROGRESS: "started",
    State.IN_REVIEW: "started",
    State.MERGING: "started",
    State.DONE: "completed",
    State.CANCELED: "canceled",
}
JIRA_NAMES: Mapping[str, tuple[str, ...]] = {
    State.BACKLOG: ("Backlog",),
    State.TODO: ("To Do", "Selected for Development", "Open"),
    State.IN_PROGRESS: ("In Progress",),
    State.IN_REVIEW: ("In Review", "Review", "Code Review"),
    State.MERGING: ("In Review", "Review", "Code Review"),
    State.DONE: ("Done", "Closed", "Resolved"),
    State.CANCELED: ("Canceled", "Cancelled", "Won't Do"),
}
# What a human moving an issue by type (Linear) or category (Jira) means to the engine.
LINEAR_TYPE_STATES: Mapping[str, str] = {
    "triage": State.BACKLOG,
    "backlog": State.BACKLOG,
    "unstarted": State.TODO,
    "completed": State.DONE,
    "canceled": State.CANCELED,
}
JIRA_CATEGORY_STATES: Mapping[str, str] = {"new": State.TODO, "done": State.DONE}


@dataclass(frozen=True)
class Route:
    """Where a tracker ticket's code lives, and why (for the activity log)."""

    repo: str
    workflow: str
    reason: str


def access_of(control: ControlConfig, source: str) -> TrackerAccess:
    return control.linear if source == LINEAR else control.jira


def route_of(
    control: ControlConfig, source: str, tracker: Mapping[str, Any] | None, labels: Sequence[str]
) -> Route | None:
    """The repository and workflow of a Linear or Jira ticket; None when none is configured."""
    if not tracker:
        return None
    routes: Mapping[str, TrackerRoute]
    if source == LINEAR:
        scope, routes, narrower = tracker.get("team_key"), control.linear.teams, "projects"
        picks: Iterable[str] = [tracker["project"]] if tracker.get("project") else []
    elif source == JIRA:
        scope, routes, narrower = tracker.get("project_key"), control.jira.projects, "components"
        picks = tracker.get("components") or []
    else:
        return None
    if not isinstance(scope, str):
        return None
    route = _find(routes, scope)
    if route is None:
        return None
    what = "team" if source == LINEAR else "project"
    rule = _match(route.labels, labels)
    if rule is not None:
        return _narrowed(route, rule[1], f"{source} {what} {scope}, label {rule[0]!r}")
    rule = _match(getattr(route, narrower), picks)
    if rule is not None:
        kind = narrower.rstrip("s")
        return _narrowed(route, rule[1], f"{source} {what} {scope}, {kind} {rule[0]!r}")
    return Route(route.repo, route.workflow, f"{source} {what} {scope}")


def _find(routes: Mapping[str, TrackerRoute], key: str) -> TrackerRoute | None:
    folded = key.casefold()
    for name, route in routes.items():
        if name.casefold() == folded:
            return route
    return None


def _match(
    rules: Mapping[str, TrackerRule], names: Iterable[str]
) -> tuple[str, TrackerRule] | None:
    present = {name.casefold() for name in names}
    for name, rule in rules.items():
        if name.casefold() in present:
            return name, rule
    return None


def _narrowed(route: TrackerRoute, rule: TrackerRule, reason: str) -> Route:
    return Route(rule.repo or route.repo, rule.workflow or route.workflow, reason)


# --- states ------------------------------------------------------------------------------------


def target_names(control: ControlConfig, source: str, state: str) -> list[str]:
    """The tracker state names `state` is shown as, best first (empty: leave it where it is)."""
    states = access_of(control, source).states
    review = State.IN_REVIEW if state == State.MERGING else state  # merging shows as review
    configured = states.get(state) or states.get(review)
    defaults = (LINEAR_NAMES if source == LINEAR else JIRA_NAMES).get(state, ())
    names = [configured] if configured else []
    return names + [name for name in defaults if name.casefold() != (configured or "").casefold()]


def linear_target_type(state: str) -> str | None:
    return LINEAR_TYPES.get(state)


def state_of_tracker(
    control: ControlConfig, source: str, name: str, kind: str | None = None
) -> str | None:
    """The workflow state a human moving the issue to `name` asks for (None: nothing we
    know). `kind` is Linear's state type or Jira's status category, used last."""
    folded = name.casefold()
    for state, configured in access_of(control, source).states.items():
        if configured.casefold() == folded and state != State.MERGING:
            return state
    for state, names in (LINEAR_NAMES if source == LINEAR else JIRA_NAMES).items():
        if state == State.MERGING:
            continue  # shown as review; moving there means review
        if folded in {n.casefold() for n in names}:
            return state
    if kind is None:
        return None
    return (LINEAR_TYPE_STATES if source == LINEAR else JIRA_CATEGORY_STATES).get(kind)


def tracker_identities(source: str, author_id: str | None, email: str | None) -> list[str]:
    """How config may name a tracker user: by id, or by email (case-insensitively)."""
    del source
    return [value for value in (author_id, email) if value]


def github_login_for(access: TrackerAccess, identities: Sequence[str]) -> str | None:
    """The GitHub login config maps this tracker user to, if any."""
    for key, login in access.users.items():
        if key.casefold() in {identity.casefold() for identity in identities}:
            return login
    return None


def allowed(access: TrackerAccess, identities: Sequence[str]) -> bool:
    """Whether config allows this tracker user every command."""
    listed = {entry.casefold() for entry in access.allow}
    return any(identity.casefold() in listed for identity in identities)
