"""The outbox's GitHub performers: status label, status comment, check runs, PRs, merges,
reactions, replies and issue updates (DESIGN §4-5).

Any of them may run again after a crash or a timeout whose request did reach GitHub, so
each is idempotent by design: labels are compared before they are changed; comments carry
a hidden `<!-- openase:... -->` marker and are searched for before one is posted (as
CPython's bedevere does); check runs are found again by their deterministic external id;
a PR is looked up by its head branch before one is opened; a refused merge looks whether
the PR is merged already. The outbox serialises them per installation, so two performs
never race each other into duplicates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any

from adapters.errors import RequestRejected
from bot.effects.annotations import MAX_ANNOTATIONS
from bot.effects.kinds import STATUS_MARKER, EffectKind, comment_marker, pr_marker
from bot.effects.outbox import EffectContext, EffectRefused, Performer
from bot.effects.projects import set_project_status

Json = dict[str, Any]


# --- limits -----------------------------------------------------------------------------------

MAX_TEXT = 65535  # GitHub's limit for a check run's summary and text
ANNOTATIONS_PER_REQUEST = 50  # GitHub's limit per create/update request
RETRY_ACTION: Json = {
    "label": "Retry",  # at most 20 characters
    "identifier": "retry",  # at most 20; comes back in check_run.requested_action
    "description": "Run this ticket's gates again",  # at most 40
}
MERGE_METHODS = frozenset({"merge", "squash", "rebase"})
REACTIONS: Mapping[str, str] = {
    **{name: name for name in ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket")},
    "eyes": "eyes",
    "👍": "+1",
    "👎": "-1",
    "😄": "laugh",
    "😕": "confused",
    "❤️": "heart",
    "🎉": "hooray",
    "🚀": "rocket",
    "👀": "eyes",
}
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class MergeRefused(EffectRefused):
    """GitHub would not merge (not mergeable, head moved, checks or review missing)."""


# --- performers ---------------------------------------------------------------------------------


async def set_status_label(ctx: EffectContext, payload: Json) -> Json:
    """Carry exactly the wanted status label: create it if missing, add it, drop the others."""
    repo, number = _repo(payload), _int(payload, "number")
    add = payload.get("add")
    if add is not None and not isinstance(add, str):
        raise EffectRefused("payload field 'add' must be a label name or null")
    remove = [name for name in payload.get("remove") or [] if isinstance(name, str)]
    current = await ctx.github.issue_label_names(repo, number, ctx.installation())
    carried = {name.casefold(): name for name in current}
    created = added = False
    if add is not None and add.casefold() not in carried:
        created = await _ensure_repo_label(ctx, repo, add, payload)
        await ctx.github.add_issue_labels(repo, number, [add], ctx.installation())
        added = True
    removed = []
    for name in remove:
        present = carried.get(name.casefold())
        if present is None or (add is not None and present.casefold() == add.casefold()):
            continue
        try:
            await ctx.github.remove_issue_label(repo, number, present, ctx.installation())
        except RequestRejected as exc:
            if exc.status != 404:  # already gone: what we wanted
                raise
        removed.append(present)
    return {
        "label": add,
        "added": added,
        "created": created,
        "removed": removed,
        "summary": f"status label {add}" if add else "status labels removed",
    }


async def _ensure_repo_label(ctx: EffectContext, repo: str, name: str, payload: Json) -> bool:
    """Create the label with our colour unless the repository has it; whether we did."""
    if await ctx.github.has_repo_label(repo, name, ctx.installation()):
        return False
    color, description = payload.get("color"), payload.get("description")
    try:
        await ctx.github.create_repo_label(
            repo,
            name,
            ctx.installation(),
            color=color.lstrip("#") if isinstance(color, str) else None,
            # 100 characters is GitHub's limit.
            description=description[:100] if isinstance(description, str) else None,
        )
    except RequestRejected as exc:
        if exc.status != 422:  # already_exists: someone made it meanwhile
            raise
        return False
    return True


async def upsert_status_comment(ctx: EffectContext, payload: Json) -> Json:
    """Edit the ticket's one status comment in place, posting it the first time."""
    repo, number = _repo(payload), _int(payload, "number")
    body = _with_marker(_str(payload, "body"), STATUS_MARKER)
    known = _comment_id(ctx.previous, repo, number)
    if known is not None:
        try:
            comment = await ctx.github.update_issue_comment(repo, known, body, ctx.installation())
            return _comment_result(repo, number, comment, created=False, what="status comment")
        except RequestRejected as exc:
            if exc.status != 404:
                raise
            # Deleted by a human: find another or post anew.
    found = await _find_comment(ctx, repo, number, STATUS_MARKER)
    if found is not None:
        comment = found
        if found.get("body") != body:
            comment = await ctx.github.update_issue_comment(
                repo, found["id"], body, ctx.installation()
            )
        return _comment_result(repo, number, comment, created=False, what="status comment")
    comment = await ctx.github.create_issue_comment(repo, number, body, ctx.installation())
    return _comment_result(repo, number, comment, created=True, what="status comment")


async def post_comment(ctx: EffectContext, payload: Json) -> Json:
    """Post a reply once: a retry finds the one an earlier try posted by its marker."""
    repo, number = _repo(payload), _int(payload, "number")
    marker = comment_marker(str(payload.get("marker") or ctx.key))
    body = _with_marker(_str(payload, "body"), marker)
    found = await _find_comment(ctx, repo, number, marker)
    if found is not None:
        return _comment_result(repo, number, found, created=False, what="comment")
    comment = await ctx.github.create_issue_comment(repo, number, body, ctx.installation())
    return _comment_result(repo, number, comment, created=True, what="comment")


async def check_run(ctx: EffectContext, payload: Json) -> Json:
    """Create or update the check run with this external id on this head sha."""
    repo = _repo(payload)
    head_sha, name = _str(payload, "head_sha"), _str(payload, "name")
    external_id = _str(payload, "external_id")
    annotations = [_annotation(a) for a in payload.get("annotations") or []][:MAX_ANNOTATIONS]
    output: Json = {
        "title": _str(payload, "title")[:255],
        "summary": _head(_str(payload, "summary"), MAX_TEXT),
    }
    if isinstance(payload.get("text"), str) and payload["text"]:
        output["text"] = _tail(payload["text"], MAX_TEXT)
    # GitHub appends annotations on every update, so sending a batch twice would show it
    # twice: progress is saved after each request, and a retry resumes after it.
    progress = _same_run(ctx.progress, head_sha, external_id)
    if progress is None:
        known = _same_run(ctx.previous, head_sha, external_id)
        run_id = (
            int(known["check_run_id"])
            if known
            else await ctx.github.find_check_run(
                repo, head_sha, ctx.installation(), name=name, external_id=external_id
            )
        )
        body = _check_run_body(payload, output, annotations[:ANNOTATIONS_PER_REQUEST])
        if run_id is None:
            answer = await ctx.github.create_check_run(repo, head_sha, body, ctx.installation())
        else:
            answer = await ctx.github.update_check_run(repo, run_id, body, ctx.installation())
        progress = {
            "check_run_id": int(answer["id"]),
            "html_url": answer.get("html_url"),
            "head_sha": head_sha,
            "external_id": external_id,
            "annotations_sent": min(len(annotations), ANNOTATIONS_PER_REQUEST),
            "created": run_id is None,
        }
        if annotations:
            await ctx.checkpoint(progress)
    sent = int(progress["annotations_sent"])
    while sent < len(annotations):
        batch = annotations[sent : sent + ANNOTATIONS_PER_REQUEST]
        await ctx.github.update_check_run(
            repo,
            int(progress["check_run_id"]),
            {"output": {**output, "annotations": batch}},
            ctx.installation(),
        )
        sent += len(batch)
        progress = {**progress, "annotations_sent": sent}
        await ctx.checkpoint(progress)
    state = payload.get("conclusion") or payload.get("status")
    return {**progress, "summary": f"check run {name}: {state}"}


async def open_or_update_pr(ctx: EffectContext, payload: Json) -> Json:
    """Open the work branch's PR, or bring the open one's title and body up to date."""
    repo = _repo(payload)
    head, base, title = _str(payload, "head"), _str(payload, "base"), _str(payload, "title")
    body = _str(payload, "body")
    if "ticket" in payload:
        body = _with_marker(body, pr_marker(payload["ticket"]), at_end=True)
    existing = await ctx.github.find_pull_request(repo, head, base, ctx.installation())
    if existing is None:
        draft = payload.get("draft")
        try:
            pull = await ctx.github.create_pull_request(
                repo,
                ctx.installation(),
                title=title,
                head=head,
                base=base,
                body=body,
                draft=draft if isinstance(draft, bool) else None,
            )
            return _pull_result(pull, created=True)
        except RequestRejected as exc:
            if exc.status != 422:
                raise
            # "A pull request already exists" (opened meanwhile) is fine; anything else
            # (no commits between the branches, no such branch) the engine must hear.
            existing = await ctx.github.find_pull_request(repo, head, base, ctx.installation())
            if existing is None:
                raise EffectRefused(str(exc), {"opened": False, "reason": str(exc)}) from exc
    if existing.get("title") == title and existing.get("body") == body:
        return _pull_result(existing, created=False)
    pull = await ctx.github.update_pull_request(
        repo, existing["number"], ctx.installation(), title=title, body=body
    )
    return _pull_result(pull, created=False)


async def merge_pr(ctx: EffectContext, payload: Json) -> Json:
    """Merge at the gated head sha; a refusal raises MergeRefused with the reason."""
    repo, number = _repo(payload), _int(payload, "number")
    method = _str(payload, "method")
    if method not in MERGE_METHODS:
        raise EffectRefused(f"merge method {method!r} is not one of {sorted(MERGE_METHODS)}")
    commit_title, commit_message = payload.get("commit_title"), payload.get("commit_message")
    try:
        sha = await ctx.github.merge_pull_request(
            repo,
            number,
            ctx.installation(),
            method=method,
            sha=_str(payload, "sha"),
            commit_title=commit_title if isinstance(commit_title, str) else None,
            commit_message=commit_message if isinstance(commit_message, str) else None,
        )
    except RequestRejected as exc:
        if exc.status not in (405, 409, 422):
            raise
        # A retry of a merge that went through is refused too: look before saying no.
        pull = await ctx.github.pull_request(repo, number, ctx.installation())
        if pull.get("merged"):
            return _merged(number, pull.get("merge_commit_sha"), already=True)
        reason = _refusal(exc.status, str(exc))
        result = {
            "merged": False,
            "status": exc.status,
            "reason": reason,
            "mergeable_state": pull.get("mergeable_state"),
            "head_sha": (pull.get("head") or {}).get("sha"),
        }
        raise MergeRefused(f"PR #{number} was not merged: {reason}", result) from exc
    return _merged(number, sha, already=False)


async def add_reaction(ctx: EffectContext, payload: Json) -> Json:
    """React to a comment or an issue (GitHub answers an existing reaction with 200)."""
    repo = _repo(payload)
    content = REACTIONS.get(_str(payload, "content"))
    if content is None:
        raise EffectRefused(f"unknown reaction {payload['content']!r}")
    if "comment_id" in payload:
        react = (
            ctx.github.react_to_review_comment
            if payload.get("review_comment")
            else ctx.github.react_to_issue_comment
        )
        answer = await react(repo, _int(payload, "comment_id"), content, ctx.installation())
    else:
        answer = await ctx.github.react_to_issue(
            repo, _int(payload, "number"), content, ctx.installation()
        )
    return {"reaction_id": answer.get("id"), "content": content, "summary": f"reacted {content}"}


async def update_issue(ctx: EffectContext, payload: Json) -> Json:
    """Set an issue's state, title or body (setting a value twice changes nothing)."""
    repo, number = _repo(payload), _int(payload, "number")
    fields = ("state", "state_reason", "title", "body")
    request = {key: payload[key] for key in fields if isinstance(payload.get(key), str)}
    if not request:
        raise EffectRefused("update_issue names nothing to change")
    answer = await ctx.github.update_issue(repo, number, ctx.installation(), **request)
    return {"state": answer.get("state"), "summary": f"issue #{number} updated"}


PERFORMERS: Mapping[str, Performer] = {
    EffectKind.STATUS_LABEL: set_status_label,
    EffectKind.STATUS_COMMENT: upsert_status_comment,
    EffectKind.CHECK_RUN: check_run,
    EffectKind.PULL_REQUEST: open_or_update_pr,
    EffectKind.MERGE: merge_pr,
    EffectKind.REACTION: add_reaction,
    EffectKind.COMMENT: post_comment,
    EffectKind.ISSUE: update_issue,
    EffectKind.PROJECT_STATUS: set_project_status,
}


# --- requests -----------------------------------------------------------------------------------


async def _find_comment(ctx: EffectContext, repo: str, number: int, marker: str) -> Json | None:
    """The App's own comment carrying `marker` (a human's copy of it is not ours to edit)."""
    comments = ctx.github.issue_comments(repo, number, ctx.installation())
    async with aclosing(comments):
        async for comment in comments:
            if marker in (comment.get("body") or "") and _ours(comment, ctx.github.app_id):
                found: Json = comment
                return found
    return None


def _ours(comment: Json, app_id: int) -> bool:
    app = comment.get("performed_via_github_app")
    if isinstance(app, dict):
        return app.get("id") == app_id
    # GitHub Enterprise Server before 3.x leaves the field out; the author is our bot.
    return (comment.get("user") or {}).get("type") == "Bot"


# --- shapes ------------------------------------------------------------------------------------


def _check_run_body(payload: Json, output: Json, annotations: list[Json]) -> Json:
    status = _str(payload, "status")
    conclusion = payload.get("conclusion")
    if status == "completed" and not conclusion:
        raise EffectRefused("a completed check run needs a conclusion")
    body: Json = {
        "name": _str(payload, "name"),
        "external_id": _str(payload, "external_id"),
        "status": "completed" if conclusion else status,
        "output": {**output, "annotations": annotations} if annotations else output,
    }
    if isinstance(payload.get("details_url"), str):
        body["details_url"] = payload["details_url"]
    now = _iso_now()
    if status == "in_progress" or isinstance(payload.get("started_at"), str):
        body["started_at"] = payload.get("started_at") or now
    if conclusion:
        body["conclusion"] = conclusion
        body["completed_at"] = payload.get("completed_at") or now
    actions = payload.get("actions")
    if actions is None and conclusion == "failure":
        actions = [RETRY_ACTION]
    if actions:
        body["actions"] = [_action(action) for action in actions[:3]]  # GitHub allows three
    return body


def _annotation(raw: Json) -> Json:
    annotation: Json = {
        "path": str(raw["path"]),
        "start_line": int(raw["start_line"]),
        "end_line": int(raw.get("end_line") or raw["start_line"]),
        "annotation_level": raw.get("annotation_level", "failure"),
        "message": _head(str(raw.get("message") or ""), 4000) or "(no message)",
    }
    # Columns only on a single line, per GitHub.
    if annotation["start_line"] == annotation["end_line"]:
        for key in ("start_column", "end_column"):
            if isinstance(raw.get(key), int):
                annotation[key] = raw[key]
    if isinstance(raw.get("title"), str):
        annotation["title"] = raw["title"][:255]
    return annotation


def _action(raw: Json) -> Json:
    return {
        "label": str(raw["label"])[:20],
        "identifier": str(raw["identifier"])[:20],
        "description": str(raw.get("description") or raw["label"])[:40],
    }


def _same_run(result: Json | None, head_sha: str, external_id: str) -> Json | None:
    if not result or not isinstance(result.get("check_run_id"), int):
        return None
    if result.get("head_sha") != head_sha or result.get("external_id") != external_id:
        return None
    return result


def _comment_id(result: Json | None, repo: str, number: int) -> int | None:
    if not result or result.get("repo") != repo or result.get("number") != number:
        return None
    found = result.get("comment_id")
    return found if isinstance(found, int) else None


def _comment_result(repo: str, number: int, comment: Json, *, created: bool, what: str) -> Json:
    return {
        "repo": repo,
        "number": number,
        "comment_id": comment["id"],
        "html_url": comment.get("html_url"),
        "created": created,
        "summary": f"{what} {'posted' if created else 'updated'} on #{number}",
    }


def _pull_result(pull: Json, *, created: bool) -> Json:
    return {
        "number": pull["number"],
        "html_url": pull.get("html_url"),
        "head_sha": (pull.get("head") or {}).get("sha"),
        "created": created,
        "summary": f"PR #{pull['number']} {'opened' if created else 'updated'}",
    }


def _merged(number: int, sha: Any, *, already: bool) -> Json:
    return {"merged": True, "sha": sha, "already": already, "summary": f"PR #{number} merged"}


def _refusal(status: int, message: str) -> str:
    if status == 409:
        return f"the head branch moved since the gates passed ({message})"
    if status == 405:
        return (
            f"GitHub says it is not mergeable: conflicts, or required reviews or checks ({message})"
        )
    return message


def _with_marker(body: str, marker: str, *, at_end: bool = False) -> str:
    if marker in body:
        return body
    return f"{body}\n\n{marker}" if at_end else f"{marker}\n{body}"


def _head(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20] + "\n… (truncated)"


def _tail(text: str, limit: int) -> str:
    """The end of an output: where the failure usually is."""
    return text if len(text) <= limit else "… (truncated)\n" + text[-(limit - 20) :]


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _repo(payload: Json) -> str:
    repo = _str(payload, "repo")
    if not _REPO.match(repo):
        raise EffectRefused(f"payload field 'repo' is not OWNER/NAME: {repo!r}")
    return repo


def _str(payload: Json, key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str):
        raise EffectRefused(f"payload field {key!r} must be a string")
    return value


def _int(payload: Json, key: str) -> int:
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise EffectRefused(f"payload field {key!r} must be an integer")
    return value
