"""Tracker-neutral records and normalized events: what every adapter turns its webhook
payloads and API pages into (re-exported by adapters/base.py, where callers import them).

Nothing past an adapter reads a raw payload (STYLE practice 2). Events are frozen
dataclasses; `occurred_at` / `updated_at` are the tracker's clock, used to keep the mirror
from moving backwards when deliveries arrive out of order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


class PayloadError(ValueError):
    """A payload lacks a field its event promises, or has it in the wrong shape."""


@dataclass(frozen=True)
class RepoInfo:
    """A code repository as the code host describes it."""

    id: int
    full_name: str
    private: bool = False
    default_branch: str | None = None
    clone_url: str | None = None
    html_url: str | None = None


@dataclass(frozen=True)
class TicketInfo:
    """A tracker issue's full current state, as of `updated_at`."""

    source: str  # "github" | "linear" | "jira"
    external_id: str  # the tracker's stable id (GitHub: the issue's numeric id)
    key: str  # what humans call it: "acme/api#12", "ENG-123", "PROJ-7"
    title: str
    body: str
    state: Literal["open", "closed"]
    state_reason: str | None
    author_login: str | None
    assignees: tuple[str, ...]
    labels: tuple[str, ...]
    milestone: str | None
    html_url: str | None
    created_at: datetime | None
    updated_at: datetime | None
    closed_at: datetime | None
    repo: RepoInfo | None = None
    number: int | None = None
    # The trackers' ids of `labels`, in the same order, where the tracker has them: a label
    # renamed or deleted after this state was captured is then known by its current name.
    label_ids: tuple[int, ...] = ()
    # What Linear and Jira say besides the common fields, for routing a ticket to a
    # repository and for moving it: team/project, workflow state or status, components.
    tracker: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class CommentInfo:
    source: str
    external_id: str
    author_login: str | None
    author_type: str | None  # "User" | "Bot" | ...
    body: str
    html_url: str | None
    created_at: datetime | None
    updated_at: datetime | None
    # Linear and Jira know people by an id and (where the site shows it) an email, which is
    # how config maps them to GitHub users for slash commands.
    author_id: str | None = None
    author_email: str | None = None


@dataclass(frozen=True)
class PullRequestInfo:
    id: int
    number: int
    repo: RepoInfo
    title: str
    body: str
    state: Literal["open", "closed"]
    merged: bool
    draft: bool
    author_login: str | None
    head_ref: str | None
    head_sha: str | None
    base_ref: str | None
    labels: tuple[str, ...]
    html_url: str | None
    merged_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class InstallationInfo:
    id: int
    account_login: str
    account_type: str
    repository_selection: str | None
    suspended: bool
    updated_at: datetime | None


# --- normalized events -------------------------------------------------------------------


@dataclass(frozen=True)
class InstallationChanged:
    """The App was installed, removed, suspended or re-permissioned on an account."""

    action: Literal["created", "deleted", "suspend", "unsuspend", "new_permissions_accepted"]
    installation: InstallationInfo
    # Present on `created` (the repositories granted); None when the payload does not list them.
    repositories: tuple[RepoInfo, ...] | None = None


@dataclass(frozen=True)
class RepositoriesChanged:
    """Repositories added to or removed from an installation's selection."""

    installation: InstallationInfo
    added: tuple[RepoInfo, ...] = ()
    removed: tuple[RepoInfo, ...] = ()


@dataclass(frozen=True)
class RepositoryChanged:
    """A repository was renamed, transferred, edited, archived or deleted."""

    action: str
    repo: RepoInfo
    installation_id: int | None
    deleted: bool = False


@dataclass(frozen=True)
class TicketUpserted:
    """A ticket's whole current state; applying it twice, or an older one later, is harmless."""

    ticket: TicketInfo
    action: str


@dataclass(frozen=True)
class LabelsChanged:
    """A label was added to or removed from a ticket (the workflow engine's trigger)."""

    ticket: TicketInfo
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    actor: str | None = None
    # "Bot" | "User" | ...: lets the engine tell its own label changes coming back from people's.
    actor_type: str | None = None
    # The tracker's id of whoever did it (Linear user id, Jira accountId): the engine knows
    # its own changes coming back by it where the tracker cannot say "bot".
    actor_id: str | None = None


@dataclass(frozen=True)
class TicketRemoved:
    """A ticket was deleted, or transferred away (it lives on as `moved_to`, if we see it).

    `ticket` is its last state, so a removal that arrives before any other event of the
    ticket still leaves a tombstone that later, older events cannot resurrect.
    """

    ticket: TicketInfo
    reason: Literal["deleted", "transferred"]
    moved_to: TicketInfo | None = None


@dataclass(frozen=True)
class CommentCreated:
    ticket: TicketInfo
    comment: CommentInfo


@dataclass(frozen=True)
class CommentEdited:
    ticket: TicketInfo
    comment: CommentInfo


@dataclass(frozen=True)
class CommentDeleted:
    ticket: TicketInfo
    comment: CommentInfo


@dataclass(frozen=True)
class PullRequestChanged:
    """A pull request's whole current state, with the issues it refers to."""

    action: str
    pull_request: PullRequestInfo
    closing_refs: tuple[IssueRef, ...] = field(default_factory=tuple)
    # The ticket whose work branch (`openase/<ticket>`) the PR comes from, if any.
    branch_ref: IssueRef | None = None


@dataclass(frozen=True)
class IssueRef:
    """A reference to an issue by repository name and number (`owner/repo#12`)."""

    full_name: str
    number: int


@dataclass(frozen=True)
class LabelChanged:
    """A repository label was created, edited (possibly renamed) or deleted."""

    action: Literal["created", "edited", "deleted"]
    repo: RepoInfo
    label_id: int
    name: str
    color: str | None
    description: str | None
    old_name: str | None = None


@dataclass(frozen=True)
class PullRequestReviewed:
    """A review of a pull request was submitted, edited or dismissed."""

    action: Literal["submitted", "edited", "dismissed"]
    pull_request: PullRequestInfo
    review_id: int
    state: Literal["approved", "changes_requested", "commented", "dismissed"]
    body: str
    author_login: str | None
    author_type: str | None
    commit_id: str | None
    submitted_at: datetime | None
    # What the PR refers to, as PullRequestChanged has it: storing the PR keeps its links right.
    closing_refs: tuple[IssueRef, ...] = ()
    branch_ref: IssueRef | None = None


@dataclass(frozen=True)
class ReviewCommented:
    """A comment was made on a line or file of a pull request's diff."""

    pull_request: PullRequestInfo
    comment: CommentInfo
    path: str | None
    line: int | None  # None when the comment is on the whole file or its line is outdated
    review_id: int | None
    closing_refs: tuple[IssueRef, ...] = ()
    branch_ref: IssueRef | None = None


@dataclass(frozen=True)
class CheckRunRequested:
    """Someone asked for a check again (re-run) or pressed one of a check run's buttons."""

    action: Literal["requested_action", "rerequested"]
    repo: RepoInfo
    head_sha: str
    app_id: int | None  # the App that owns the check run or suite: ours, or another CI's
    check_run_id: int | None  # None when a whole suite is re-requested
    name: str | None
    external_id: str | None
    identifier: str | None  # the button pressed (`requested_action` only)
    actor_login: str | None
    pull_numbers: tuple[int, ...] = ()  # open PRs into `repo` whose head is `head_sha`


@dataclass(frozen=True)
class ChecksCompleted:
    """A check run, or a whole check suite, finished on a commit."""

    repo: RepoInfo
    head_sha: str
    app_id: int | None
    name: str | None  # the check run's; None for a suite
    conclusion: str | None  # success | failure | neutral | cancelled | timed_out | ...
    pull_numbers: tuple[int, ...] = ()


@dataclass(frozen=True)
class ProjectItemChanged:
    """An item was added to an organization's project, or one of its fields was set."""

    action: Literal["created", "edited"]
    item_node_id: str
    project_node_id: str
    content_node_id: str
    content_type: Literal["Issue", "PullRequest", "DraftIssue"]
    # Which field changed (`edited` of a field; None for `created` and draft body edits).
    field_node_id: str | None
    field_type: str | None
    # The values' names (a single-select option's name, an iteration's title, the text or
    # number itself) where the payload carries them; older payloads do not.
    from_value: str | None
    to_value: str | None
    actor_login: str | None
    actor_type: str | None
    organization_login: str | None
    field_name: str | None = None  # "Status", ...; newer payloads only


@dataclass(frozen=True)
class StatusChanged:
    """A ticket moved in its tracker's own workflow (Jira's changelog, Linear's state): the
    engine maps the status name onto a workflow state, as it does a status label."""

    ticket: TicketInfo
    from_status: str | None
    to_status: str
    actor: str | None = None
    actor_id: str | None = None


@dataclass(frozen=True)
class TrackerLabelChanged:
    """A Linear label was renamed or deleted: the tickets carrying it (by id) follow."""

    source: str
    label_id: str
    name: str
    action: Literal["edited", "deleted"]


NormalizedEvent = (
    InstallationChanged
    | RepositoriesChanged
    | RepositoryChanged
    | TicketUpserted
    | LabelsChanged
    | TicketRemoved
    | CommentCreated
    | CommentEdited
    | CommentDeleted
    | PullRequestChanged
    | LabelChanged
    | PullRequestReviewed
    | ReviewCommented
    | CheckRunRequested
    | ChecksCompleted
    | ProjectItemChanged
    | StatusChanged
    | TrackerLabelChanged
)


@dataclass(frozen=True)
class ParsedDelivery:
    """What an adapter made of one delivery: the events, or why it has none."""

    events: tuple[NormalizedEvent, ...]
    ignored_reason: str | None = None  # set when the event type/action is one we do not use
