"""The outbox's performer that opens an issue (a scheduled ticket, bot/engine/schedules.py).

Opening an issue is not idempotent on GitHub's side, so the body carries a hidden marker
and a retry (after a crash or a timeout whose request did reach GitHub) first looks for it
among the repository's newest issues the App opened, as the comment performers do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.effects.fields import repo_of, text_of, with_marker
from bot.effects.kinds import EffectKind
from bot.effects.outbox import EffectContext, EffectRefused, Performer

Json = dict[str, Any]

RECENT_ISSUES = 50  # how far back a retry looks for the issue an earlier try opened


async def create_issue(ctx: EffectContext, payload: Json) -> Json:
    """Open the issue once: a retry finds the one an earlier try opened by its marker."""
    repo = repo_of(payload)
    marker = text_of(payload, "marker")
    body = with_marker(str(payload.get("body") or ""), marker, at_end=True)
    labels = payload.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
        raise EffectRefused("payload field 'labels' must be a list of label names")
    if ctx.attempt > 1:
        recent = await ctx.github.recent_issues(repo, ctx.installation(), count=RECENT_ISSUES)
        for issue in recent:
            if marker in (issue.get("body") or "") and _ours(issue, ctx.github.app_id):
                return _result(issue, created=False)
    issue = await ctx.github.create_issue(
        repo, ctx.installation(), title=text_of(payload, "title"), body=body, labels=labels
    )
    return _result(issue, created=True)


def _ours(issue: Json, app_id: int) -> bool:
    app = issue.get("performed_via_github_app")
    if isinstance(app, dict):
        return app.get("id") == app_id
    return (issue.get("user") or {}).get("type") == "Bot"


def _result(issue: Json, *, created: bool) -> Json:
    return {
        "number": issue["number"],
        "html_url": issue.get("html_url"),
        "created": created,
        "summary": f"issue #{issue['number']} {'opened' if created else 'found'}",
    }


PERFORMERS: Mapping[str, Performer] = {EffectKind.CREATE_ISSUE: create_issue}
