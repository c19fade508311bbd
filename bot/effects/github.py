"""The outbox's GitHub performers: status label, status comment, PRs, merges, reactions,
replies and issue updates, with check runs from bot/effects/github_checks.py (DESIGN §4-5).

Any of them may run again after a crash or a timeout whose request did reach GitHub, so
each is idempotent by design: labels are compared before they are changed; comments carry
a hidden `<!-- openase:... -->` marker and are searched for before one is posted (as
CPython's bedevere does); check runs are found again by their deterministic external id;
a PR is looked up by its head branch before one is opened; a refused merge looks whether
the PR is merged already. The outbox serialises them per installation, so two performs
never race each other into duplicates.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import aclosing
from typing import Any

from adapters.errors import RequestRejected
from bot.effects.fields import int_of, repo_of, text_of, with_marker
from bot.effects.github_checks import check_run
from bot.effects.kinds import STATUS_MARKER, EffectKind, comment_marker, pr_marker
from bot.effects.outbox import EffectContext, EffectRefused, Performer
from bot.effects.projects import set_project_status

Json = dict[str, Any]


# --- limits -----------------------------------------------------------------------------------

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


class MergeRefused(EffectRefused):
    """GitHub would not merge (not mergeable, head moved, checks or review missing)."""


# --- performers ---------------------------------------------------------------------------------


async def set_status_label(ctx: EffectContext, payload: Json) -> Json:
    """Carry exactly the wanted status label: create it if missing, add it, drop the others."""
    repo, number = repo_of(payload), int_of(payload, "number")
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
    repo, number = repo_of(payload), int_of(payload, "number")
    body = with_marker(text_of(payload, "body"), STATUS_MARKER)
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
    repo, number = repo_of(payload), int_of(payload, "number")
    marker = comment_marker(str(payload.get("marker") or ctx.key))
    body = with_marker(text_of(payload, "body"), marker)
    found = await _find_comment(ctx, repo, number, marker)
    if found is not None:
        return _comment_result(repo, number, found, created=False, what="comment")
    comment = await ctx.github.create_issue_comment(repo, number, body, ctx.installation())
    return _comment_result(repo, number, comment, created=True, what="comment")


async def open_or_update_pr(ctx: EffectContext, payload: Json) -> Json:
    """Open the work branch's PR, or bring the open one's title and body up to date."""
    repo = repo_of(payload)
    head, base, title = (
        text_of(payload, "head"),
        text_of(payload, "base"),
        text_of(payload, "title"),
    )
    body = text_of(payload, "body")
    if "ticket" in payload:
        body = with_marker(body, pr_marker(payload["ticket"]), at_end=True)
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
    repo, number = repo_of(payload), int_of(payload, "number")
    method = text_of(payload, "method")
    if method not in MERGE_METHODS:
        raise EffectRefused(f"merge method {method!r} is not one of {sorted(MERGE_METHODS)}")
    commit_title, commit_message = payload.get("commit_title"), payload.get("commit_message")
    try:
        sha = await ctx.github.merge_pull_request(
            repo,
            number,
            ctx.installation(),
            method=method,
            sha=text_of(payload, "sha"),
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
    repo = repo_of(payload)
    content = REACTIONS.get(text_of(payload, "content"))
    if content is None:
        raise EffectRefused(f"unknown reaction {payload['content']!r}")
    if "comment_id" in payload:
        react = (
            ctx.github.react_to_review_comment
            if payload.get("review_comment")
            else ctx.github.react_to_issue_comment
        )
        answer = await react(repo, int_of(payload, "comment_id"), content, ctx.installation())
    else:
        answer = await ctx.github.react_to_issue(
            repo, int_of(payload, "number"), content, ctx.installation()
        )
    return {"reaction_id": answer.get("id"), "content": content, "summary": f"reacted {content}"}


async def update_issue(ctx: EffectContext, payload: Json) -> Json:
    """Set an issue's state, title or body (setting a value twice changes nothing)."""
    repo, number = repo_of(payload), int_of(payload, "number")
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
