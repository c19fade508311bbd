"""The control config's Linear and Jira sections (`linear:`, `jira:`): which repository and
workflow a team's or project's tickets go to, how tracker users and states meet ours, and
the tickets each team or project files on a cron (bot/config/control.py holds the rest)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bot.config.schedules import MAX_SCHEDULES, Schedule
from bot.config.workflow import DEFAULT_WORKFLOW, WorkflowName

_FULL_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _full_name(value: str) -> str:
    if not _FULL_NAME.fullmatch(value):
        raise ValueError(f"must be a repository as owner/name, got {value[:100]!r}")
    return value


class TrackerRule(_Model):
    """A narrower route inside a team or project: another repository, another workflow."""

    repo: Annotated[str, AfterValidator(_full_name)] | None = None
    workflow: WorkflowName | None = None


TrackerName = Annotated[str, Field(min_length=1, max_length=200)]


class TrackerRoute(_Model):
    """Where tickets of one Linear team or Jira project are worked on.

    A ticket carrying one of `labels` goes where that label says; else one in one of
    `projects` (Linear) or `components` (Jira); else `repo` and `workflow` (names compare
    case-insensitively, the first match in the file's order wins).
    """

    repo: Annotated[str, AfterValidator(_full_name)]
    workflow: WorkflowName = DEFAULT_WORKFLOW
    labels: dict[TrackerName, TrackerRule] = Field(default_factory=dict)
    projects: dict[TrackerName, TrackerRule] = Field(default_factory=dict)
    components: dict[TrackerName, TrackerRule] = Field(default_factory=dict)
    # Tickets filed on a cron in this team or project (bot/config/schedules.py).
    schedules: Annotated[tuple[Schedule, ...], Field(max_length=MAX_SCHEDULES)] = ()


TrackerKey = Annotated[str, Field(min_length=1, max_length=64)]
GitHubLogin = Annotated[str, Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$")]
CANONICAL_STATES = (
    "backlog",
    "todo",
    "in_progress",
    "in_review",
    "merging",
    "done",
    "canceled",
    "failed",
)


def _known_states(value: dict[str, str]) -> dict[str, str]:
    unknown = sorted(set(value) - set(CANONICAL_STATES))
    if unknown:
        raise ValueError(
            f"unknown state {unknown[0]!r}; the states are {', '.join(CANONICAL_STATES)}"
        )
    return value


class TrackerAccess(_Model):
    """How a tracker's people and workflow meet ours.

    `states` names the tracker state (Linear) or status (Jira) each workflow state moves the
    issue to, overriding the defaults. `users` maps a tracker user, by id or email, to the
    GitHub login whose repository permission decides their slash commands; `allow` lists
    tracker users (id or email) who may use every command without one.
    """

    states: Annotated[dict[str, TrackerName], AfterValidator(_known_states)] = Field(
        default_factory=dict
    )
    users: dict[TrackerName, GitHubLogin] = Field(default_factory=dict)
    allow: tuple[TrackerName, ...] = ()


class LinearConfig(TrackerAccess):
    teams: dict[TrackerKey, TrackerRoute] = Field(default_factory=dict)


class JiraRoute(TrackerRoute):
    """A Jira project's route; its schedules file issues of `issue_type` (the project's
    scheme must have it: Jira refuses an issue of a type the project lacks)."""

    issue_type: Annotated[str, Field(min_length=1, max_length=60)] = "Task"


class JiraConfig(TrackerAccess):
    projects: dict[TrackerKey, JiraRoute] = Field(default_factory=dict)
    # JQL the backfill adds to `project = KEY` (e.g. `statusCategory != Done`).
    backfill_jql: str | None = Field(default=None, max_length=2000)
