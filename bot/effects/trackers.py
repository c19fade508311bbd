"""Outbox performers for Linear and Jira tickets: move the issue, keep its status label and
its one status comment, reply, react, link the pull request.

Each is idempotent like the GitHub ones: moving to the state an issue is in changes
nothing, the status comment is edited in place (its id is the previous revision's result),
a link is keyed by its URL. A Jira issue that has no transition to the wanted status gets
one comment saying which transitions there are, and the effect is done: retrying cannot
create a transition.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from adapters.errors import RequestRejected
from bot.effects.outbox import EffectContext, EffectRefused, Performer
from bot.registry import JIRA, LINEAR, NoTransition, TrackerClients

Json = dict[str, Any]

# Outbox lanes of the trackers' effects (their `installation_id`): writes to one tracker run
# one at a time like a GitHub installation's, and a rate-limited tracker does not hold up
# the other one.
LINEAR_LANE = -1
JIRA_LANE = -2
LANES = {LINEAR: LINEAR_LANE, JIRA: JIRA_LANE}


class TrackerEffect(enum.StrEnum):
    LINEAR_STATE = "linear_state"
    LINEAR_LABELS = "linear_labels"
    LINEAR_STATUS_COMMENT = "linear_status_comment"
    LINEAR_COMMENT = "linear_comment"
    LINEAR_REACTION = "linear_reaction"
    LINEAR_LINK = "linear_link"
    JIRA_STATE = "jira_state"
    JIRA_LABELS = "jira_labels"
    JIRA_STATUS_COMMENT = "jira_status_comment"
    JIRA_COMMENT = "jira_comment"
    JIRA_LINK = "jira_link"


# GitHub's reaction names (what the commands use) as Linear's emoji names.
LINEAR_EMOJI = {"eyes": "eyes", "rocket": "rocket", "confused": "confused", "-1": "-1"}


def clients_of(ctx: EffectContext) -> TrackerClients:
    if not isinstance(ctx.trackers, TrackerClients):
        raise EffectRefused(f"effect {ctx.key} needs the tracker clients")
    return ctx.trackers


def required_text(payload: Json, key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise EffectRefused(f"payload field {key!r} must be a non-empty string")
    return value


def _names(payload: Json) -> list[str]:
    names = payload.get("names") or []
    return [name for name in names if isinstance(name, str) and name]


# --- Linear ------------------------------------------------------------------------------------


async def linear_state(ctx: EffectContext, payload: Json) -> Json:
    """Move the issue to the first of `names` its team has, else the first state of `type`."""
    linear = clients_of(ctx).linear_client()
    issue_id, team_id = required_text(payload, "issue_id"), required_text(payload, "team_id")
    states = await linear.team_states(team_id)
    by_name = {state.name.casefold(): state for state in states}
    target = next((by_name[n.casefold()] for n in _names(payload) if n.casefold() in by_name), None)
    wanted_type = payload.get("type")
    if target is None and isinstance(wanted_type, str):
        target = next((state for state in states if state.type == wanted_type), None)
    if target is None:
        return {"moved": False, "summary": f"team has no state for {payload.get('state')}"}
    await linear.move_issue(issue_id, target.id)
    return {"moved": True, "state": target.name, "summary": f"moved to {target.name}"}


async def linear_labels(ctx: EffectContext, payload: Json) -> Json:
    """Carry the status label `add` and none of `remove`."""
    linear = clients_of(ctx).linear_client()
    issue_id, team_id = required_text(payload, "issue_id"), required_text(payload, "team_id")
    issue = await linear.issue(issue_id)
    carried = {str(label["name"]).casefold(): str(label["id"]) for label in issue["labels"]}
    add = payload.get("add")
    added = False
    if isinstance(add, str) and add.casefold() not in carried:
        label = await linear.ensure_label(team_id, add, _color(payload))
        await linear.add_label(issue_id, label.id)
        added = True
    removed = []
    for name in payload.get("remove") or []:
        label_id = carried.get(str(name).casefold())
        if label_id is not None and str(name).casefold() != str(add or "").casefold():
            await linear.remove_label(issue_id, label_id)
            removed.append(name)
    return {"added": add if added else None, "removed": removed, "summary": f"label {add}"}


def _color(payload: Json) -> str | None:
    color = payload.get("color")
    return f"#{color}" if isinstance(color, str) and color else None


async def linear_status_comment(ctx: EffectContext, payload: Json) -> Json:
    """Edit the status comment in place; post it the first time (or when deleted)."""
    linear = clients_of(ctx).linear_client()
    body = required_text(payload, "body")
    known = (ctx.previous or {}).get("comment_id")
    if isinstance(known, str):
        try:
            comment = await linear.update_comment(known, body)
            return {"comment_id": comment["id"], "url": comment.get("url"), "created": False}
        except RequestRejected as exc:
            if exc.status != 404:
                raise
    comment = await linear.create_comment(required_text(payload, "issue_id"), body)
    return {"comment_id": comment["id"], "url": comment.get("url"), "created": True}


async def linear_comment(ctx: EffectContext, payload: Json) -> Json:
    comment = (
        await clients_of(ctx)
        .linear_client()
        .create_comment(required_text(payload, "issue_id"), required_text(payload, "body"))
    )
    return {"comment_id": comment["id"], "url": comment.get("url"), "summary": "commented"}


async def linear_reaction(ctx: EffectContext, payload: Json) -> Json:
    emoji = LINEAR_EMOJI.get(required_text(payload, "content"))
    if emoji is None:
        raise EffectRefused(f"unknown reaction {payload['content']!r}")
    reaction = (
        await clients_of(ctx).linear_client().react(required_text(payload, "comment_id"), emoji)
    )
    return {"reaction_id": reaction, "summary": f"reacted {emoji}"}


async def linear_link(ctx: EffectContext, payload: Json) -> Json:
    url = required_text(payload, "url")
    await (
        clients_of(ctx)
        .linear_client()
        .attach_url(required_text(payload, "issue_id"), url, required_text(payload, "title"))
    )
    return {"url": url, "summary": "pull request linked"}


# --- Jira --------------------------------------------------------------------------------------


async def jira_state(ctx: EffectContext, payload: Json) -> Json:
    """Apply the transition to the first of `names` the issue can reach; say so if none."""
    jira = clients_of(ctx).jira_client()
    key = required_text(payload, "key")
    names = _names(payload)
    refused: NoTransition | None = None
    for name in names:
        try:
            moved = await jira.move(key, name)
        except NoTransition as exc:
            refused = refused or exc
            continue
        return {"moved": not moved.already, "status": moved.status, "summary": f"→ {name}"}
    if refused is None:
        return {"moved": False, "summary": "no status configured"}
    wanted = " or ".join(names)
    available = ", ".join(refused.available) or "none"
    await jira.add_comment(
        key,
        f"OpenASE could not move {key} to {wanted} ({payload.get('state')}): Jira offers no "
        f"such transition from {refused.current}. Available: {available}. Add the transition "
        "to the workflow, or name an available status under jira.states in the "
        "control-plane config.",
    )
    return {"moved": False, "summary": str(refused), "available": refused.available}


async def jira_labels(ctx: EffectContext, payload: Json) -> Json:
    add = payload.get("add")
    remove = [str(name) for name in payload.get("remove") or [] if name != add]
    await (
        clients_of(ctx)
        .jira_client()
        .set_labels(
            required_text(payload, "key"), add=[add] if isinstance(add, str) else [], remove=remove
        )
    )
    return {"added": add, "removed": remove, "summary": f"label {add}"}


async def jira_status_comment(ctx: EffectContext, payload: Json) -> Json:
    jira = clients_of(ctx).jira_client()
    key, body = required_text(payload, "key"), required_text(payload, "body")
    known = (ctx.previous or {}).get("comment_id")
    if isinstance(known, str):
        try:
            comment = await jira.update_comment(key, known, body)
            return {"comment_id": str(comment["id"]), "url": comment.get("url"), "created": False}
        except RequestRejected as exc:
            if exc.status != 404:
                raise
    comment = await jira.add_comment(key, body)
    return {"comment_id": str(comment["id"]), "url": comment.get("url"), "created": True}


async def jira_comment(ctx: EffectContext, payload: Json) -> Json:
    comment = (
        await clients_of(ctx)
        .jira_client()
        .add_comment(required_text(payload, "key"), required_text(payload, "body"))
    )
    return {"comment_id": str(comment["id"]), "url": comment.get("url"), "summary": "commented"}


async def jira_link(ctx: EffectContext, payload: Json) -> Json:
    url = required_text(payload, "url")
    await (
        clients_of(ctx)
        .jira_client()
        .add_remote_link(required_text(payload, "key"), url, required_text(payload, "title"))
    )
    return {"url": url, "summary": "pull request linked"}


PERFORMERS: Mapping[str, Performer] = {
    TrackerEffect.LINEAR_STATE: linear_state,
    TrackerEffect.LINEAR_LABELS: linear_labels,
    TrackerEffect.LINEAR_STATUS_COMMENT: linear_status_comment,
    TrackerEffect.LINEAR_COMMENT: linear_comment,
    TrackerEffect.LINEAR_REACTION: linear_reaction,
    TrackerEffect.LINEAR_LINK: linear_link,
    TrackerEffect.JIRA_STATE: jira_state,
    TrackerEffect.JIRA_LABELS: jira_labels,
    TrackerEffect.JIRA_STATUS_COMMENT: jira_status_comment,
    TrackerEffect.JIRA_COMMENT: jira_comment,
    TrackerEffect.JIRA_LINK: jira_link,
}
