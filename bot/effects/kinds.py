"""The kinds of effect the engine writes to the outbox for GitHub, the payload each carries,
and the hidden markers that let a performer find its own comments and PRs again (as
CPython's bedevere does). The performers live in bot/effects/github.py."""

from __future__ import annotations

import enum
import re
from typing import Any, NotRequired, TypedDict

Json = dict[str, Any]


class EffectKind(enum.StrEnum):
    STATUS_LABEL = "set_status_label"
    STATUS_COMMENT = "upsert_status_comment"
    CHECK_RUN = "check_run"
    PULL_REQUEST = "open_or_update_pr"
    MERGE = "merge_pr"
    REACTION = "add_reaction"
    COMMENT = "post_comment"
    ISSUE = "update_issue"
    PROJECT_STATUS = "set_project_status"  # bot/effects/projects.py: the card's Status column
    CREATE_ISSUE = "create_issue"  # bot/effects/issues.py: a scheduled ticket


# --- payloads (what the engine writes to the outbox) ---------------------------------------


class StatusLabelPayload(TypedDict):
    repo: str  # OWNER/NAME
    number: int
    add: str | None  # the status label to carry; created in the repo if missing
    remove: list[str]  # the other status labels, removed where present
    color: NotRequired[str]  # hex without '#', for a label we create
    description: NotRequired[str]


class StatusCommentPayload(TypedDict):
    repo: str
    number: int
    body: str  # Markdown; STATUS_MARKER is added when absent


class CheckRunPayload(TypedDict):
    repo: str
    head_sha: str
    name: str  # "openase/<hook>" or "openase"
    external_id: str  # deterministic, e.g. f"{run_id}:{hook}"
    status: str  # queued | in_progress | completed
    conclusion: NotRequired[str]  # success | failure | neutral | cancelled | timed_out | ...
    title: str
    summary: str
    text: NotRequired[str]  # the output tail; its last 65535 characters are kept
    annotations: NotRequired[list[Json]]  # see annotations_from_output; sent 50 a request
    actions: NotRequired[list[Json]]  # default for a failure: [RETRY_ACTION]
    details_url: NotRequired[str]  # the live run page
    started_at: NotRequired[str]  # ISO 8601; now, when in_progress and absent
    completed_at: NotRequired[str]  # ISO 8601; now, when completed and absent


class PullRequestPayload(TypedDict):
    repo: str
    head: str  # the work branch (or OWNER:BRANCH for a fork)
    base: str
    title: str
    body: str  # with "Closes #N", summary, harness version, cost
    ticket: NotRequired[int]  # adds pr_marker(ticket) to the body when absent
    draft: NotRequired[bool]


class MergePayload(TypedDict):
    repo: str
    number: int
    method: str  # merge | squash | rebase
    sha: str  # the head the gates passed on; GitHub refuses (409) if it moved
    commit_title: NotRequired[str]
    commit_message: NotRequired[str]


class ReactionPayload(TypedDict):
    repo: str
    content: str  # +1 -1 laugh confused heart hooray rocket eyes (or the emoji)
    comment_id: NotRequired[int]  # an issue or PR conversation comment
    review_comment: NotRequired[bool]  # comment_id is a PR review (diff) comment
    number: NotRequired[int]  # else: the issue itself


class CommentPayload(TypedDict):
    repo: str
    number: int
    body: str
    marker: NotRequired[str]  # names the reply; default: the effect's key


class IssueUpdatePayload(TypedDict):
    repo: str
    number: int
    state: NotRequired[str]  # open | closed
    state_reason: NotRequired[str]  # completed | not_planned | reopened
    title: NotRequired[str]
    body: NotRequired[str]


class CreateIssuePayload(TypedDict):
    repo: str
    title: str
    body: str  # `marker` is added when absent, so a retry finds the issue it opened
    labels: list[str]
    marker: str  # schedule_marker(...)


# --- markers ------------------------------------------------------------------------------------

STATUS_MARKER = "<!-- openase:status -->"
_MARKER_TEXT = re.compile(r"[^A-Za-z0-9:_./#=+-]")


def pr_marker(ticket: int | str) -> str:
    """The hidden marker of the PR made for a ticket."""
    return f"<!-- openase:pr ticket={_marker_text(str(ticket))} -->"


def comment_marker(name: str) -> str:
    """The hidden marker of one reply, so a retry finds it instead of posting it again."""
    return f"<!-- openase:comment {_marker_text(name)} -->"


def schedule_marker(schedule: str, slot: str) -> str:
    """The hidden marker of the issue one schedule's slot filed."""
    return f"<!-- openase:schedule {_marker_text(schedule)} slot={_marker_text(slot)} -->"


def _marker_text(text: str) -> str:
    # "--" would end the HTML comment early; anything unusual is replaced.
    return _MARKER_TEXT.sub("_", text).replace("--", "-_")
