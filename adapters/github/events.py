"""GitHub webhook payloads (and REST objects of the same shape) -> normalized events.

One `_event_<name>` function per event type, as in Zuul's GitHub driver. Every event type
GitHub sends is accepted: those we do not use parse to no events and an ignore reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from adapters.base import (
    CheckRunRequested,
    ChecksCompleted,
    CommentCreated,
    CommentDeleted,
    CommentEdited,
    InstallationChanged,
    LabelChanged,
    LabelsChanged,
    NormalizedEvent,
    ParsedDelivery,
    PayloadError,
    ProjectItemChanged,
    PullRequestChanged,
    PullRequestReviewed,
    RepoInfo,
    RepositoriesChanged,
    RepositoryChanged,
    ReviewCommented,
    TicketRemoved,
    TicketUpserted,
)
from adapters.github.fields import (
    Json,
    array,
    integer,
    login,
    obj,
    objects,
    opt_integer,
    opt_obj,
    opt_string,
    string,
    timestamp,
    user_type,
)
from adapters.github.objects import (
    comment_from_api,
    installation_from_api,
    pull_request_changed,
    pull_request_from_api,
    repo_from_api,
    short_repo,
    ticket_from_issue,
)

# --- events ----------------------------------------------------------------------------------

Events = tuple[NormalizedEvent, ...]


def _event_installation(action: str, payload: Json) -> Events:
    known = ("created", "deleted", "suspend", "unsuspend", "new_permissions_accepted")
    if action not in known:
        return ()
    inst = installation_from_api(obj(payload, "installation", "payload"))
    repos: tuple[RepoInfo, ...] | None = None
    if "repositories" in payload:
        items = array(payload, "repositories", "payload")
        repos = tuple(short_repo(r, f"payload.repositories[{i}]") for i, r in enumerate(items))
    return (InstallationChanged(action=action, installation=inst, repositories=repos),)  # type: ignore[arg-type]  # narrowed by `known`


def _event_installation_repositories(action: str, payload: Json) -> Events:
    inst = installation_from_api(obj(payload, "installation", "payload"))

    def repos(key: str) -> tuple[RepoInfo, ...]:
        items = array(payload, key, "payload")
        return tuple(short_repo(r, f"payload.{key}[{i}]") for i, r in enumerate(items))

    return (
        RepositoriesChanged(
            installation=inst,
            added=repos("repositories_added"),
            removed=repos("repositories_removed"),
        ),
    )


def _event_repository(action: str, payload: Json) -> Events:
    inst = opt_obj(payload, "installation", "payload")
    return (
        RepositoryChanged(
            action=action,
            repo=repo_from_api(obj(payload, "repository", "payload"), "payload.repository"),
            installation_id=integer(inst, "id", "payload.installation") if inst else None,
            deleted=action == "deleted",
        ),
    )


def _event_issues(action: str, payload: Json) -> Events:
    repo = repo_from_api(obj(payload, "repository", "payload"), "payload.repository")
    ticket = ticket_from_issue(obj(payload, "issue", "payload"), repo, "payload.issue")
    if action == "deleted":
        return (TicketRemoved(ticket=ticket, reason="deleted"),)
    if action == "transferred":
        changes = obj(payload, "changes", "payload")
        new_repo = repo_from_api(
            obj(changes, "new_repository", "payload.changes"), "payload.changes.new_repository"
        )
        moved_to = ticket_from_issue(
            obj(changes, "new_issue", "payload.changes"), new_repo, "payload.changes.new_issue"
        )
        return (TicketRemoved(ticket=ticket, reason="transferred", moved_to=moved_to),)
    events: list[NormalizedEvent] = [TicketUpserted(ticket=ticket, action=action)]
    if action in ("labeled", "unlabeled"):
        label = opt_obj(payload, "label", "payload")
        # A label deleted in the same breath arrives as null; the issue's labels still say all.
        if label is not None:
            name = string(label, "name", "payload.label")
            events.append(
                LabelsChanged(
                    ticket=ticket,
                    added=(name,) if action == "labeled" else (),
                    removed=(name,) if action == "unlabeled" else (),
                    actor=login(payload, "sender", "payload"),
                    actor_type=user_type(payload, "sender", "payload"),
                )
            )
    return tuple(events)


def _event_issue_comment(action: str, payload: Json) -> Events:
    issue = obj(payload, "issue", "payload")
    if issue.get("pull_request") is not None:
        # A comment in a PR's conversation: the mirror keeps tickets' threads only.
        return ()
    repo = repo_from_api(obj(payload, "repository", "payload"), "payload.repository")
    ticket = ticket_from_issue(issue, repo, "payload.issue")
    comment = comment_from_api(obj(payload, "comment", "payload"), "payload.comment")
    kinds: dict[str, Callable[..., NormalizedEvent]] = {
        "created": CommentCreated,
        "edited": CommentEdited,
        "deleted": CommentDeleted,
    }
    if action not in kinds:
        return ()
    return (kinds[action](ticket, comment),)


def _event_pull_request(action: str, payload: Json) -> Events:
    repo = repo_from_api(obj(payload, "repository", "payload"), "payload.repository")
    pr = pull_request_from_api(
        obj(payload, "pull_request", "payload"), repo, "payload.pull_request"
    )
    return (pull_request_changed(action, pr),)


def _event_label(action: str, payload: Json) -> Events:
    if action not in ("created", "edited", "deleted"):
        return ()
    repo = repo_from_api(obj(payload, "repository", "payload"), "payload.repository")
    label = obj(payload, "label", "payload")
    old_name = None
    changes = opt_obj(payload, "changes", "payload")
    if changes:
        renamed = opt_obj(changes, "name", "payload.changes")
        old_name = opt_string(renamed, "from", "payload.changes.name") if renamed else None
    verb: Literal["created", "edited", "deleted"] = action  # type: ignore[assignment]  # checked above
    return (
        LabelChanged(
            action=verb,
            repo=repo,
            label_id=integer(label, "id", "payload.label"),
            name=string(label, "name", "payload.label"),
            color=opt_string(label, "color", "payload.label"),
            description=opt_string(label, "description", "payload.label"),
            old_name=old_name,
        ),
    )


# --- reviews, checks and project items: the workflow engine's input ------------------------

Choice = TypeVar("Choice", bound=str)
_REVIEW_ACTIONS: tuple[Literal["submitted", "edited", "dismissed"], ...] = (
    "submitted",
    "edited",
    "dismissed",
)
_REVIEW_STATES: tuple[Literal["approved", "changes_requested", "commented", "dismissed"], ...] = (
    "approved",
    "changes_requested",
    "commented",
    "dismissed",
)
_REQUEST_ACTIONS: tuple[Literal["requested_action", "rerequested"], ...] = (
    "requested_action",
    "rerequested",
)
_ITEM_ACTIONS: tuple[Literal["created", "edited"], ...] = ("created", "edited")
_CONTENT_TYPES: tuple[Literal["Issue", "PullRequest", "DraftIssue"], ...] = (
    "Issue",
    "PullRequest",
    "DraftIssue",
)


def _choice(value: str, allowed: tuple[Choice, ...], path: str) -> Choice:
    for option in allowed:
        if value == option:
            return option
    raise PayloadError(f"{path}: expected one of {', '.join(allowed)}, got {value[:40]!r}")


def _pull_request_in(payload: Json) -> PullRequestChanged:
    """The PR a review payload carries, with its references, as a pull_request event has it."""
    repo = repo_from_api(obj(payload, "repository", "payload"), "payload.repository")
    pr = pull_request_from_api(
        obj(payload, "pull_request", "payload"), repo, "payload.pull_request"
    )
    return pull_request_changed("", pr)


def _event_pull_request_review(action: str, payload: Json) -> Events:
    if action not in _REVIEW_ACTIONS:
        return ()
    changed = _pull_request_in(payload)
    review = obj(payload, "review", "payload")
    path = "payload.review"
    # Webhooks send the state in lower case, the REST API in upper case.
    state = string(review, "state", path).lower()
    return (
        PullRequestReviewed(
            action=_choice(action, _REVIEW_ACTIONS, "payload.action"),
            pull_request=changed.pull_request,
            review_id=integer(review, "id", path),
            state=_choice(state, _REVIEW_STATES, f"{path}.state"),
            body=opt_string(review, "body", path) or "",
            author_login=login(review, "user", path),
            author_type=user_type(review, "user", path),
            commit_id=opt_string(review, "commit_id", path),
            submitted_at=timestamp(review, "submitted_at", path),
            closing_refs=changed.closing_refs,
            branch_ref=changed.branch_ref,
        ),
    )


def _event_pull_request_review_comment(action: str, payload: Json) -> Events:
    if action != "created":  # edits and deletions of diff comments ask nothing new of anyone
        return ()
    changed = _pull_request_in(payload)
    raw = obj(payload, "comment", "payload")
    path = "payload.comment"
    return (
        ReviewCommented(
            pull_request=changed.pull_request,
            comment=comment_from_api(raw, path),
            path=opt_string(raw, "path", path),
            line=opt_integer(raw, "line", path),
            review_id=opt_integer(raw, "pull_request_review_id", path),
            closing_refs=changed.closing_refs,
            branch_ref=changed.branch_ref,
        ),
    )


def _app_id(check: Json, path: str) -> int | None:
    """The App that owns a check run or suite (null in the payload: unknown)."""
    app = opt_obj(check, "app", path)
    if app is None:
        suite = opt_obj(check, "check_suite", path)  # a check run's suite names it too
        app = opt_obj(suite, "app", f"{path}.check_suite") if suite else None
        path = f"{path}.check_suite"
    return integer(app, "id", f"{path}.app") if app else None


def _pull_numbers(check: Json, repo: RepoInfo, path: str) -> tuple[int, ...]:
    """The PRs into `repo` a check belongs to. A check on a fork's commit may list the
    upstream's PRs too, whose numbers mean other PRs here: those are left out."""
    numbers = []
    for index, pr in enumerate(objects(check, "pull_requests", path)):
        where = f"{path}.pull_requests[{index}]"
        base = opt_obj(pr, "base", where)
        base_repo = opt_obj(base, "repo", f"{where}.base") if base else None
        if base_repo is not None and integer(base_repo, "id", f"{where}.base.repo") != repo.id:
            continue
        numbers.append(integer(pr, "number", where))
    return tuple(numbers)


def _event_check_run(action: str, payload: Json) -> Events:
    if action not in ("completed", *_REQUEST_ACTIONS):
        return ()  # `created`: a check started, nothing to do until it ends
    repo = repo_from_api(obj(payload, "repository", "payload"), "payload.repository")
    run = obj(payload, "check_run", "payload")
    path = "payload.check_run"
    head_sha = string(run, "head_sha", path)
    name = string(run, "name", path)
    pull_numbers = _pull_numbers(run, repo, path)
    if action == "completed":
        return (
            ChecksCompleted(
                repo=repo,
                head_sha=head_sha,
                app_id=_app_id(run, path),
                name=name,
                conclusion=opt_string(run, "conclusion", path),
                pull_numbers=pull_numbers,
            ),
        )
    requested = opt_obj(payload, "requested_action", "payload")
    return (
        CheckRunRequested(
            action=_choice(action, _REQUEST_ACTIONS, "payload.action"),
            repo=repo,
            head_sha=head_sha,
            app_id=_app_id(run, path),
            check_run_id=integer(run, "id", path),
            name=name,
            external_id=opt_string(run, "external_id", path),
            identifier=(
                opt_string(requested, "identifier", "payload.requested_action")
                if requested
                else None
            ),
            actor_login=login(payload, "sender", "payload"),
            pull_numbers=pull_numbers,
        ),
    )


def _event_check_suite(action: str, payload: Json) -> Events:
    if action not in ("completed", "rerequested"):
        return ()  # `requested`: GitHub asks an App to create its runs; we run none on pushes
    repo = repo_from_api(obj(payload, "repository", "payload"), "payload.repository")
    suite = obj(payload, "check_suite", "payload")
    path = "payload.check_suite"
    head_sha = string(suite, "head_sha", path)
    app_id = _app_id(suite, path)
    pull_numbers = _pull_numbers(suite, repo, path)
    if action == "completed":
        return (
            ChecksCompleted(
                repo=repo,
                head_sha=head_sha,
                app_id=app_id,
                name=None,
                conclusion=opt_string(suite, "conclusion", path),
                pull_numbers=pull_numbers,
            ),
        )
    return (
        CheckRunRequested(
            action="rerequested",
            repo=repo,
            head_sha=head_sha,
            app_id=app_id,
            check_run_id=None,
            name=None,
            external_id=None,
            identifier=None,
            actor_login=login(payload, "sender", "payload"),
            pull_numbers=pull_numbers,
        ),
    )


def _field_value_name(data: Json, key: str, path: str) -> str | None:
    """A project field's value as people see it: an option's name, an iteration's title, or
    the text, date or number itself."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict):
        for label in ("name", "title"):
            if label in value:
                return string(value, label, f"{path}.{key}")
        raise PayloadError(f"{path}.{key}: expected an option's name or an iteration's title")
    raise PayloadError(
        f"{path}.{key}: expected text, a number, an option or an iteration, "
        f"got {type(value).__name__}"
    )


def _event_projects_v2_item(action: str, payload: Json) -> Events:
    if action not in _ITEM_ACTIONS:
        return ()  # archived, restored, converted, reordered, deleted: no field moved
    item = obj(payload, "projects_v2_item", "payload")
    path = "payload.projects_v2_item"
    changes = opt_obj(payload, "changes", "payload")
    value = opt_obj(changes, "field_value", "payload.changes") if changes else None
    where = "payload.changes.field_value"
    organization = opt_obj(payload, "organization", "payload")
    return (
        ProjectItemChanged(
            action=_choice(action, _ITEM_ACTIONS, "payload.action"),
            item_node_id=string(item, "node_id", path),
            project_node_id=string(item, "project_node_id", path),
            content_node_id=string(item, "content_node_id", path),
            content_type=_choice(
                string(item, "content_type", path), _CONTENT_TYPES, f"{path}.content_type"
            ),
            field_node_id=opt_string(value, "field_node_id", where) if value else None,
            field_type=opt_string(value, "field_type", where) if value else None,
            from_value=_field_value_name(value, "from", where) if value else None,
            to_value=_field_value_name(value, "to", where) if value else None,
            actor_login=login(payload, "sender", "payload"),
            actor_type=user_type(payload, "sender", "payload"),
            organization_login=(
                opt_string(organization, "login", "payload.organization") if organization else None
            ),
            field_name=opt_string(value, "field_name", where) if value else None,
        ),
    )


_HANDLERS: dict[str, Callable[[str, Json], Events]] = {
    "installation": _event_installation,
    "installation_repositories": _event_installation_repositories,
    "repository": _event_repository,
    "issues": _event_issues,
    "issue_comment": _event_issue_comment,
    "pull_request": _event_pull_request,
    "label": _event_label,
    "pull_request_review": _event_pull_request_review,
    "pull_request_review_comment": _event_pull_request_review_comment,
    "check_run": _event_check_run,
    "check_suite": _event_check_suite,
    "projects_v2_item": _event_projects_v2_item,
}


def parse(event: str, payload: dict[str, Any]) -> ParsedDelivery:
    """Turn one delivery into normalized events; raises PayloadError naming the bad field."""
    handler = _HANDLERS.get(event)
    if handler is None:
        return ParsedDelivery(events=(), ignored_reason=f"event {event!r} is not used")
    action = payload.get("action")
    if action is not None and not isinstance(action, str):
        raise PayloadError("payload.action: expected a string")
    events = handler(action or "", payload)
    if not events:
        return ParsedDelivery(events=(), ignored_reason=f"{event}.{action} is not used")
    return ParsedDelivery(events=events)
