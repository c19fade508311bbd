"""Outbox performers that file a Linear or Jira issue (a team's or project's scheduled
ticket, bot/engine/tracker_schedules.py), each at most once however often it is retried.

Linear takes the new issue's id from us (IssueCreateInput.id, UUID v4 format): the id is
derived from the effect's key, so a retry after a lost answer asks for the issue by that id
before creating it, and Linear refuses a second issue with the same id anyway. Jira has no
such key: the description ends with the slot's marker, and a retry first reads the
project's issues changed since the effect was decided for one the API user reported with
that marker, as bot/effects/issues.py does for GitHub.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.errors import RequestRejected
from bot.effects.outbox import EffectContext, EffectRefused, Performer
from bot.effects.trackers import clients_of, required_text
from bot.registry import JiraClient

Json = dict[str, Any]


class TrackerIssueEffect(enum.StrEnum):
    LINEAR_CREATE_ISSUE = "linear_create_issue"
    JIRA_CREATE_ISSUE = "jira_create_issue"


JIRA_PAGES = 5  # pages of recently changed issues a retry reads for its marker
LOOK_BACK = timedelta(days=7)  # at most this far (JQL counts whole minutes from now)


def tracker_schedule_marker(schedule: str, slot: str) -> str:
    """The text that names the ticket one schedule's slot filed (visible on Jira: its
    wiki markup has no hidden comments)."""
    return f"openase:schedule {schedule} slot={slot}"


def linear_issue_id(effect_key: str) -> str:
    """The id the effect's issue gets: the same on every retry, in UUID v4 format."""
    digest = hashlib.sha256(effect_key.encode()).digest()[:16]
    return str(uuid.UUID(bytes=digest, version=4))


def _labels(payload: Json) -> list[str]:
    labels = payload.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
        raise EffectRefused("payload field 'labels' must be a list of label names")
    return list(dict.fromkeys(labels))


async def linear_create_issue(ctx: EffectContext, payload: Json) -> Json:
    """File the issue once: its id is the effect's, so a retry finds what an earlier try made."""
    linear = clients_of(ctx).linear_client()
    issue_id = linear_issue_id(ctx.key)
    if ctx.attempt > 1:
        found = await _linear_issue(ctx, issue_id)
        if found is not None:
            return _linear_result(found, created=False)
    team = await linear.team_by_key(required_text(payload, "team_key"))
    label_ids = [(await linear.ensure_label(team.id, name)).id for name in _labels(payload)]
    try:
        issue = await linear.create_issue(
            issue_id,
            team.id,
            required_text(payload, "title"),
            str(payload.get("body") or ""),
            label_ids,
        )
    except RequestRejected:
        # An earlier try's request may have got there after all: then the id is taken.
        found = await _linear_issue(ctx, issue_id)
        if found is None:
            raise
        return _linear_result(found, created=False)
    return _linear_result(issue, created=True)


async def _linear_issue(ctx: EffectContext, issue_id: str) -> Json | None:
    try:
        return await clients_of(ctx).linear_client().issue(issue_id)
    except RequestRejected as exc:
        if exc.status == 404:
            return None
        raise


def _linear_result(issue: Json, *, created: bool) -> Json:
    key = str(issue["identifier"])
    return {
        "id": str(issue["id"]),
        "key": key,
        "url": issue.get("url"),
        "created": created,
        "summary": f"{key} {'filed' if created else 'found'}",
    }


async def jira_create_issue(ctx: EffectContext, payload: Json) -> Json:
    """File the issue once: a retry first looks for the one an earlier try filed."""
    jira = clients_of(ctx).jira_client()
    project, marker = required_text(payload, "project_key"), required_text(payload, "marker")
    if ctx.attempt > 1:
        found = await _jira_filed(jira, project, marker, _since(payload))
        if found is not None:
            return _jira_result(found, jira.browse_url(found), created=False)
    body = str(payload.get("body") or "")
    description = f"{body}\n\n_{marker}_" if body else f"_{marker}_"
    issue = await jira.create_issue(
        project,
        required_text(payload, "title"),
        description,
        _labels(payload),
        # Effects stored before issue types were configurable file a Task, as they would have.
        issue_type=str(payload.get("issue_type") or "Task"),
    )
    return _jira_result(issue["key"], issue["url"], created=True, issue_id=issue["id"])


def _since(payload: Json) -> datetime:
    now = datetime.now(UTC)
    try:
        since = datetime.fromisoformat(str(payload.get("since")))
    except ValueError:
        return now - LOOK_BACK
    return max(since - timedelta(minutes=1), now - LOOK_BACK)


async def _jira_filed(jira: JiraClient, project: str, marker: str, since: datetime) -> str | None:
    """The key of the project's issue changed since `since` that the API user reported with
    `marker` in its description, if any."""
    me = await jira.myself_id()
    token: str | None = None
    for _ in range(JIRA_PAGES):
        page = await jira.changed_since(project, since, token=token)
        for issue in page.issues:
            fields = issue.get("fields") or {}
            reporter = fields.get("reporter") or {}
            ours = me in (reporter.get("accountId"), reporter.get("name"), reporter.get("key"))
            if ours and marker in str(fields.get("description") or ""):
                return str(issue["key"])
        token = page.next_token
        if token is None:
            break
    return None


def _jira_result(key: str, url: str, *, created: bool, issue_id: str | None = None) -> Json:
    return {
        "id": issue_id,
        "key": key,
        "url": url,
        "created": created,
        "summary": f"{key} {'filed' if created else 'found'}",
    }


PERFORMERS: Mapping[str, Performer] = {
    TrackerIssueEffect.LINEAR_CREATE_ISSUE: linear_create_issue,
    TrackerIssueEffect.JIRA_CREATE_ISSUE: jira_create_issue,
}
