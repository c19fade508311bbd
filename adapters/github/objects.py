"""GitHub's objects -> tracker-neutral records. Webhook payloads and REST answers carry the
same objects (an issue, a pull request, a repository), so the webhook parsers in events.py
and the client's list endpoints both read them here.
"""

from __future__ import annotations

import re

from adapters.base import (
    CommentInfo,
    InstallationInfo,
    IssueRef,
    PayloadError,
    PullRequestChanged,
    PullRequestInfo,
    RepoInfo,
    TicketInfo,
)
from adapters.github.fields import (
    Json,
    array,
    boolean,
    integer,
    login,
    names,
    obj,
    opt_obj,
    opt_string,
    string,
    timestamp,
)

SOURCE = "github"

# GitHub's closing keywords: "fixes #12", "Closes: acme/api#3", "resolves https://host/o/r/issues/4".
_CLOSING = re.compile(
    r"(?<![\w/])(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+"
    r"(?:(?P<repo>[\w.-]+/[\w.-]+)#|https?://[^\s/]+/(?P<url_repo>[\w.-]+/[\w.-]+)/issues/|#)"
    r"(?P<number>\d+)\b",
    re.IGNORECASE,
)
# The runner's work branch for a GitHub ticket: openase/<issue number>[-<slug>].
WORK_BRANCH = re.compile(r"^openase/(?P<number>\d+)(?:-[\w.-]*)?$")


def repo_from_api(repo: Json, path: str = "repository") -> RepoInfo:
    """A repository object (webhook or REST) -> RepoInfo."""
    return RepoInfo(
        id=integer(repo, "id", path),
        full_name=string(repo, "full_name", path),
        private=boolean(repo, "private", path),
        default_branch=opt_string(repo, "default_branch", path),
        clone_url=opt_string(repo, "clone_url", path),
        html_url=opt_string(repo, "html_url", path),
    )


def ticket_from_issue(issue: Json, repo: RepoInfo, path: str = "issue") -> TicketInfo:
    """An issue object (webhook or REST) -> the ticket's full state."""
    number = integer(issue, "number", path)
    state = opt_string(issue, "state", path)
    if state is None:
        # Some pinned/unpinned payloads carry `state: null`; closed_at says the same thing.
        state = "closed" if issue.get("closed_at") else "open"
    if state not in ("open", "closed"):
        raise PayloadError(f"{path}.state: expected open or closed, got {state[:20]!r}")
    milestone = opt_obj(issue, "milestone", path)
    labels = array(issue, "labels", path)
    return TicketInfo(
        source=SOURCE,
        external_id=str(integer(issue, "id", path)),
        key=f"{repo.full_name}#{number}",
        number=number,
        repo=repo,
        title=string(issue, "title", path),
        body=opt_string(issue, "body", path) or "",
        state="open" if state == "open" else "closed",
        state_reason=opt_string(issue, "state_reason", path),
        author_login=login(issue, "user", path),
        assignees=names(array(issue, "assignees", path), f"{path}.assignees", "login"),
        labels=names(labels, f"{path}.labels"),
        label_ids=tuple(
            integer(label, "id", f"{path}.labels[{i}]") for i, label in enumerate(labels)
        ),
        milestone=opt_string(milestone, "title", f"{path}.milestone") if milestone else None,
        html_url=opt_string(issue, "html_url", path),
        created_at=timestamp(issue, "created_at", path),
        updated_at=timestamp(issue, "updated_at", path),
        closed_at=timestamp(issue, "closed_at", path),
    )


def comment_from_api(comment: Json, path: str = "comment") -> CommentInfo:
    user = opt_obj(comment, "user", path)
    return CommentInfo(
        source=SOURCE,
        external_id=str(integer(comment, "id", path)),
        author_login=opt_string(user, "login", f"{path}.user") if user else None,
        author_type=opt_string(user, "type", f"{path}.user") if user else None,
        body=opt_string(comment, "body", path) or "",
        html_url=opt_string(comment, "html_url", path),
        created_at=timestamp(comment, "created_at", path),
        updated_at=timestamp(comment, "updated_at", path),
    )


def pull_request_from_api(pr: Json, repo: RepoInfo, path: str = "pull_request") -> PullRequestInfo:
    """A pull request object (webhook or REST) -> PullRequestInfo."""
    state = string(pr, "state", path)
    if state not in ("open", "closed"):
        raise PayloadError(f"{path}.state: expected open or closed, got {state[:20]!r}")
    head = obj(pr, "head", path)
    base = obj(pr, "base", path)
    merged_at = timestamp(pr, "merged_at", path)
    return PullRequestInfo(
        id=integer(pr, "id", path),
        number=integer(pr, "number", path),
        repo=repo,
        title=string(pr, "title", path),
        body=opt_string(pr, "body", path) or "",
        state="open" if state == "open" else "closed",
        # REST list endpoints omit `merged`; `merged_at` says the same.
        merged=boolean(pr, "merged", path) or merged_at is not None,
        draft=boolean(pr, "draft", path),
        author_login=login(pr, "user", path),
        head_ref=opt_string(head, "ref", f"{path}.head"),
        head_sha=opt_string(head, "sha", f"{path}.head"),
        base_ref=opt_string(base, "ref", f"{path}.base"),
        labels=names(array(pr, "labels", path), f"{path}.labels"),
        html_url=opt_string(pr, "html_url", path),
        merged_at=merged_at,
        closed_at=timestamp(pr, "closed_at", path),
        updated_at=timestamp(pr, "updated_at", path),
    )


def installation_from_api(inst: Json, path: str = "installation") -> InstallationInfo:
    account = obj(inst, "account", path)
    return InstallationInfo(
        id=integer(inst, "id", path),
        account_login=string(account, "login", f"{path}.account"),
        account_type=opt_string(account, "type", f"{path}.account") or "User",
        repository_selection=opt_string(inst, "repository_selection", path),
        suspended=inst.get("suspended_at") is not None,
        updated_at=timestamp(inst, "updated_at", path),
    )


def closing_refs(body: str, default_repo: str) -> tuple[IssueRef, ...]:
    """Issues a PR body closes, by GitHub's closing keywords; `#12` means `default_repo`."""
    refs: dict[tuple[str, int], IssueRef] = {}
    for match in _CLOSING.finditer(body or ""):
        full_name = match.group("repo") or match.group("url_repo") or default_repo
        ref = IssueRef(full_name=full_name, number=int(match.group("number")))
        refs[(full_name.lower(), ref.number)] = ref
    return tuple(refs.values())


def pull_request_changed(action: str, pr: PullRequestInfo) -> PullRequestChanged:
    """The event for a PR's current state, with the issues its body closes and its branch names."""
    branch = WORK_BRANCH.match(pr.head_ref or "")
    return PullRequestChanged(
        action=action,
        pull_request=pr,
        closing_refs=closing_refs(pr.body, pr.repo.full_name),
        branch_ref=IssueRef(pr.repo.full_name, int(branch.group("number"))) if branch else None,
    )


def short_repo(data: Json, path: str) -> RepoInfo:
    """The abridged repository objects of installation payloads (no URLs, no branch)."""
    return RepoInfo(
        id=integer(data, "id", path),
        full_name=string(data, "full_name", path),
        private=boolean(data, "private", path),
    )
