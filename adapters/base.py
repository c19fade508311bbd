"""The roles an adapter plays (STYLE practice 4) and the types the roles speak in.

A `CodeHost` keeps the code and its reviews (GitHub); an `IssueTracker` keeps tickets
beside it (Linear, Jira); a `WebhookParser` turns one delivery into normalized events. Each
concrete client is checked against its role by mypy where it is defined, so a method that
drifts from the role fails the type check there rather than in `bot`.

The tracker-neutral records and normalized events are defined in adapters/normalized.py
and re-exported here: `adapters.base` is the one import of everything tracker-neutral.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from adapters.answers import (
    AccessToken,
    AppInfo,
    CachedPage,
    CheckRunInfo,
    CommitStatusInfo,
    EtagStore,
    HookDelivery,
    Page,
    ProjectItemInfo,
    ProjectItems,
    RepoFile,
    ReviewCommentInfo,
    TrackerComment,
)
from adapters.normalized import (
    CheckRunRequested,
    ChecksCompleted,
    CommentCreated,
    CommentDeleted,
    CommentEdited,
    CommentInfo,
    InstallationChanged,
    InstallationInfo,
    IssueRef,
    LabelChanged,
    LabelsChanged,
    NormalizedEvent,
    ParsedDelivery,
    PayloadError,
    ProjectItemChanged,
    PullRequestChanged,
    PullRequestInfo,
    PullRequestReviewed,
    RepoInfo,
    RepositoriesChanged,
    RepositoryChanged,
    ReviewCommented,
    StatusChanged,
    TicketInfo,
    TicketRemoved,
    TicketUpserted,
    TrackerLabelChanged,
)

__all__ = [
    "AccessToken",
    "AppInfo",
    "CachedPage",
    "CheckRunInfo",
    "CheckRunRequested",
    "ChecksCompleted",
    "CodeHost",
    "CommentCreated",
    "CommentDeleted",
    "CommentEdited",
    "CommentInfo",
    "CommitStatusInfo",
    "EtagStore",
    "HookDelivery",
    "InstallationChanged",
    "InstallationInfo",
    "IssueRef",
    "IssueTracker",
    "Json",
    "LabelChanged",
    "LabelsChanged",
    "NormalizedEvent",
    "Page",
    "ParsedDelivery",
    "PayloadError",
    "ProjectItemChanged",
    "ProjectItemInfo",
    "ProjectItems",
    "PullRequestChanged",
    "PullRequestInfo",
    "PullRequestReviewed",
    "RepoFile",
    "RepoInfo",
    "RepositoriesChanged",
    "RepositoryChanged",
    "ReviewCommentInfo",
    "ReviewCommented",
    "StatusChanged",
    "TicketInfo",
    "TicketRemoved",
    "TicketUpserted",
    "TrackerComment",
    "TrackerLabelChanged",
    "WebhookParser",
    "WriteGate",
]

# An object as an API answered it. Where a caller keeps parts of an answer in its own
# records (an effect's result) the object is handed on whole rather than re-typed here.
Json = dict[str, Any]
T = TypeVar("T")


# --- the roles --------------------------------------------------------------------------------


class WebhookParser(Protocol):
    """Turns one webhook delivery of a tracker into normalized events."""

    def __call__(self, event: str, payload: dict[str, object]) -> ParsedDelivery: ...


class WriteGate(Protocol):
    """Asked before each content-creating request as an installation (what GitHub's
    secondary rate limits count: POST, PATCH, PUT, DELETE, GraphQL mutations)."""

    async def write(self, installation_id: int) -> object:
        """Count one such request about to go out; Paced (adapters.errors), counting
        nothing, when the installation's budget has no room for it now. What it answers is
        handed to `sent` once the request is over."""
        ...

    async def sent(self, written: object) -> None:
        """The request `write` let out is over (answered, or failed): GitHub has counted it
        by now, whatever delayed it on its way."""
        ...


class CodeHost(Protocol):
    """Where the code lives and is reviewed (GitHub): repositories, issues, pull requests,
    checks and project boards, asked as one installation of an App.

    Every method raises RateLimited, TransientError or RequestRejected (adapters.errors);
    a RequestRejected carries GitHub's status, which callers test for 404 and the like.
    """

    @property
    def app_id(self) -> int: ...

    async def aclose(self) -> None: ...

    def paced(self, gate: WriteGate) -> CodeHost:
        """This client (its connections, tokens and limits shared) sending each
        content-creating request as an installation only once `gate` lets it."""
        ...

    async def installation_token(self, installation_id: int) -> str: ...

    async def run_token(self, installation_id: int, full_name: str, *, write: bool) -> AccessToken:
        """A new token for one run: `full_name`'s contents only (write, or read), never cached
        or shared with anything else."""
        ...

    # repositories and their files
    async def repo_installation(self, full_name: str) -> InstallationInfo: ...

    async def repository(self, full_name: str, installation_id: int) -> RepoInfo: ...

    def open_issues(
        self, repo: RepoInfo, installation_id: int, etags: EtagStore | None = None
    ) -> AsyncGenerator[Page[TicketUpserted], None]: ...

    def open_pull_requests(
        self, repo: RepoInfo, installation_id: int, etags: EtagStore | None = None
    ) -> AsyncGenerator[Page[PullRequestChanged], None]: ...

    # what changed since a time, by update time (events with action "reconcile")
    def issues_changed_since(
        self,
        repo: RepoInfo,
        installation_id: int,
        since: datetime,
        etags: EtagStore | None = None,
    ) -> AsyncGenerator[Page[TicketUpserted], None]: ...

    def pull_requests_changed_since(
        self,
        repo: RepoInfo,
        installation_id: int,
        since: datetime,
        etags: EtagStore | None = None,
    ) -> AsyncGenerator[Page[PullRequestChanged], None]: ...

    async def branch_head_sha(
        self, full_name: str, branch: str, installation_id: int
    ) -> str | None:
        """The branch's commit; None: no commit at all; BranchMissing: no such branch."""
        ...

    async def file_at(
        self, full_name: str, path: str, ref: str, installation_id: int
    ) -> RepoFile | None: ...

    # who may do what
    async def collaborator_permission(
        self, full_name: str, login: str, installation_id: int
    ) -> str | None: ...

    async def team_membership_state(
        self, org: str, team_slug: str, login: str, installation_id: int
    ) -> str | None: ...

    # labels
    async def issue_label_names(
        self, full_name: str, number: int, installation_id: int
    ) -> list[str]: ...

    async def add_issue_labels(
        self, full_name: str, number: int, labels: Sequence[str], installation_id: int
    ) -> None: ...

    async def remove_issue_label(
        self, full_name: str, number: int, name: str, installation_id: int
    ) -> None: ...

    async def has_repo_label(self, full_name: str, name: str, installation_id: int) -> bool: ...

    async def create_repo_label(
        self,
        full_name: str,
        name: str,
        installation_id: int,
        *,
        color: str | None = None,
        description: str | None = None,
    ) -> None: ...

    # comments, reactions and issues
    def issue_comments(
        self, full_name: str, number: int, installation_id: int
    ) -> AsyncGenerator[Json, None]: ...

    async def create_issue_comment(
        self, full_name: str, number: int, body: str, installation_id: int
    ) -> Json: ...

    async def update_issue_comment(
        self, full_name: str, comment_id: int, body: str, installation_id: int
    ) -> Json: ...

    async def react_to_issue(
        self, full_name: str, number: int, content: str, installation_id: int
    ) -> Json: ...

    async def react_to_issue_comment(
        self, full_name: str, comment_id: int, content: str, installation_id: int
    ) -> Json: ...

    async def react_to_review_comment(
        self, full_name: str, comment_id: int, content: str, installation_id: int
    ) -> Json: ...

    async def update_issue(
        self,
        full_name: str,
        number: int,
        installation_id: int,
        *,
        state: str | None = None,
        state_reason: str | None = None,
        title: str | None = None,
        body: str | None = None,
    ) -> Json: ...

    async def create_issue(
        self,
        full_name: str,
        installation_id: int,
        *,
        title: str,
        body: str,
        labels: Sequence[str] = (),
    ) -> Json: ...

    async def recent_issues(
        self, full_name: str, installation_id: int, *, count: int = 30
    ) -> list[Json]: ...

    # checks
    async def check_runs(
        self, full_name: str, ref: str, installation_id: int
    ) -> list[CheckRunInfo]: ...

    async def find_check_run(
        self, full_name: str, ref: str, installation_id: int, *, name: str, external_id: str
    ) -> int | None: ...

    async def create_check_run(
        self, full_name: str, head_sha: str, fields: Json, installation_id: int
    ) -> Json: ...

    async def update_check_run(
        self, full_name: str, check_run_id: int, fields: Json, installation_id: int
    ) -> Json: ...

    async def commit_statuses(
        self, full_name: str, ref: str, installation_id: int
    ) -> list[CommitStatusInfo]: ...

    # the App itself, and its webhook delivery log
    async def app_info(self) -> AppInfo: ...

    def hook_deliveries(self) -> AsyncGenerator[list[HookDelivery], None]: ...

    async def redeliver(self, delivery_id: int) -> None: ...

    # pull requests
    async def find_pull_request(
        self, full_name: str, head: str, base: str, installation_id: int
    ) -> Json | None: ...

    async def create_pull_request(
        self,
        full_name: str,
        installation_id: int,
        *,
        title: str,
        head: str,
        base: str,
        body: str,
        draft: bool | None = None,
    ) -> Json: ...

    async def pull_request(self, full_name: str, number: int, installation_id: int) -> Json: ...

    async def update_pull_request(
        self, full_name: str, number: int, installation_id: int, *, title: str, body: str
    ) -> Json: ...

    async def merge_pull_request(
        self,
        full_name: str,
        number: int,
        installation_id: int,
        *,
        method: str,
        sha: str,
        commit_title: str | None = None,
        commit_message: str | None = None,
    ) -> str | None: ...

    async def review_comments(
        self, full_name: str, number: int, review_id: int, installation_id: int, *, limit: int
    ) -> list[ReviewCommentInfo]: ...

    # project boards
    async def project_items_of_issue(
        self, full_name: str, number: int, installation_id: int, *, field: str, first: int
    ) -> ProjectItems: ...

    async def set_project_item_option(
        self, project_id: str, item_id: str, field_id: str, option_id: str, installation_id: int
    ) -> bool: ...

    async def project_item(
        self, item_id: str, installation_id: int, *, field: str
    ) -> ProjectItemInfo | None: ...


class IssueTracker(Protocol):
    """A tracker tickets live in beside the code host (Linear, Jira): what both do alike.

    Moving an issue, its labels and paging its issues stay with each client, because the
    two differ in what the bot relies on: Linear picks a state of the issue's team by name
    or by type and adds labels by id per team; Jira walks the workflow's transitions
    (saying which exist when none leads there) and edits labels by name; backfill pages a
    Linear team by key and Jira by JQL. One signature for those would change what the bot
    does, so they are not part of the role.
    """

    async def aclose(self) -> None: ...

    async def account_id(self) -> str:
        """The bot's own account, as the tracker's webhooks name whoever made a change."""
        ...

    async def post_comment(self, issue: str, body: str) -> TrackerComment:
        """A new comment on `issue` (Linear: its id or identifier; Jira: its key)."""
        ...

    async def edit_comment(self, issue: str, comment_id: str, body: str) -> TrackerComment:
        """Replace a comment's body; RequestRejected(404) when it was deleted."""
        ...

    async def link_url(self, issue: str, url: str, title: str) -> None:
        """Link `url` (a pull request) from the issue, once however often it is asked."""
        ...
