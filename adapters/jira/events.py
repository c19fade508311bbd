"""Jira webhook payloads -> normalized events (DESIGN §3.4).

Jira sends the REST API v2 shapes: `webhookEvent` names the event (`jira:issue_created`,
`jira:issue_updated`, `jira:issue_deleted`, `comment_created|updated|deleted`), `issue`
carries `key` and `fields`, `changelog.items` says what an update changed (a status move
is the item whose `field` is `status`), `user` is who did it. Timestamps look like
`2023-08-17T10:00:00.000+0000`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from adapters.base import (
    CommentCreated,
    CommentDeleted,
    CommentEdited,
    CommentInfo,
    LabelsChanged,
    NormalizedEvent,
    ParsedDelivery,
    PayloadError,
    StatusChanged,
    TicketInfo,
    TicketRemoved,
    TicketUpserted,
)

Json = dict[str, Any]
SOURCE = "jira"
# The clock of the ticket a comment's slim issue stands for (see `_comment`).
STUB_UPDATED_AT = datetime(1970, 1, 1, tzinfo=UTC)
# Jira's status categories; `done` holds every status that closes an issue.
DONE_CATEGORY = "done"


def parse(event: str, payload: Json) -> ParsedDelivery:
    """Parse one delivery; `event` is its `webhookEvent` (the header-less Jira way)."""
    if not isinstance(payload, dict):
        raise PayloadError("payload: expected an object")
    name = payload.get("webhookEvent") or event
    if name in ("jira:issue_created", "jira:issue_updated"):
        return ParsedDelivery(_issue_upserted(name, payload))
    if name == "jira:issue_deleted":
        ticket = ticket_from_issue(_obj(payload, "issue", "payload"), "payload.issue")
        return ParsedDelivery((TicketRemoved(ticket=ticket, reason="deleted"),))
    if name in ("comment_created", "comment_updated", "comment_deleted"):
        return ParsedDelivery(_comment(name, payload))
    return ParsedDelivery((), ignored_reason=f"{name} is not used")


def _issue_upserted(name: str, payload: Json) -> tuple[NormalizedEvent, ...]:
    ticket = ticket_from_issue(_obj(payload, "issue", "payload"), "payload.issue")
    user = payload.get("user")
    actor, actor_id = _display(user), _account(user)
    items = _changelog(payload)
    status_items = [item for item in items if item.get("field") == "status"]
    action = "opened" if name == "jira:issue_created" else "edited"
    if status_items and ticket.state == "closed":
        action = "closed"
    events: list[NormalizedEvent] = [TicketUpserted(ticket=ticket, action=action)]
    for index, item in enumerate(items):
        path = f"payload.changelog.items[{index}]"
        if item.get("field") == "status" and isinstance(item.get("toString"), str):
            events.append(
                StatusChanged(
                    ticket=ticket,
                    from_status=_opt_str(item, "fromString", path),
                    to_status=item["toString"],
                    actor=actor,
                    actor_id=actor_id,
                )
            )
        elif item.get("field") == "labels":
            # Jira writes a label change as the whole list before and after, space-separated.
            before = set((_opt_str(item, "fromString", path) or "").split())
            after = (_opt_str(item, "toString", path) or "").split()
            added = tuple(label for label in after if label not in before)
            removed = tuple(sorted(before - set(after)))
            if added or removed:
                events.append(
                    LabelsChanged(
                        ticket=ticket,
                        added=added,
                        removed=removed,
                        actor=actor,
                        actor_type=_account_type(user),
                        actor_id=actor_id,
                    )
                )
    return tuple(events)


def _changelog(payload: Json) -> list[Json]:
    changelog = payload.get("changelog")
    if not isinstance(changelog, dict):
        return []
    items = changelog.get("items") or []
    if not isinstance(items, list):
        raise PayloadError("payload.changelog.items: expected a list")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise PayloadError(f"payload.changelog.items[{index}]: expected an object")
    return items


def _comment(name: str, payload: Json) -> tuple[NormalizedEvent, ...]:
    # A comment's delivery carries a slim copy of its issue (no description, often no
    # labels): stamped this old, it only creates the ticket if it is new, never overwrites.
    slim = ticket_from_issue(_obj(payload, "issue", "payload"), "payload.issue")
    ticket = replace(slim, updated_at=STUB_UPDATED_AT)
    raw = _obj(payload, "comment", "payload")
    author = raw.get("author") if isinstance(raw.get("author"), dict) else None
    comment = CommentInfo(
        source=SOURCE,
        external_id=_str(raw, "id", "payload.comment"),
        author_login=_account(author),
        author_type=_account_type(author),
        body=_text(raw.get("body")),
        html_url=None,
        created_at=_time(raw, "created", "payload.comment"),
        updated_at=_time(raw, "updated", "payload.comment"),
        author_id=_account(author),
        author_email=_email(author),
    )
    if name == "comment_created":
        return (CommentCreated(ticket=ticket, comment=comment),)
    if name == "comment_updated":
        return (CommentEdited(ticket=ticket, comment=comment),)
    return (CommentDeleted(ticket=ticket, comment=comment),)


def ticket_from_issue(issue: Json, path: str) -> TicketInfo:
    """A Jira issue (REST v2 shape, as webhooks and the search API send it)."""
    fields = _obj(issue, "fields", path)
    raw_status = fields.get("status")
    status: Json = raw_status if isinstance(raw_status, dict) else {}
    raw_category = status.get("statusCategory")
    category = raw_category.get("key") if isinstance(raw_category, dict) else None
    closed = category == DONE_CATEGORY
    labels = fields.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise PayloadError(f"{path}.fields.labels: expected a list of strings")
    key = _str(issue, "key", path)
    updated = _time(fields, "updated", f"{path}.fields")
    return TicketInfo(
        source=SOURCE,
        external_id=_str(issue, "id", path),
        key=key,
        title=_opt_str(fields, "summary", f"{path}.fields") or "",
        body=_text(fields.get("description")),
        state="closed" if closed else "open",
        state_reason=(status.get("name") if closed else None),
        author_login=_account(fields.get("reporter")),
        assignees=tuple(a for a in [_account(fields.get("assignee"))] if a),
        labels=tuple(labels),
        milestone=None,
        html_url=_browse_url(issue, key),
        created_at=_time(fields, "created", f"{path}.fields"),
        updated_at=updated,
        closed_at=_time(fields, "resolutiondate", f"{path}.fields") if closed else None,
        tracker={
            "project_key": _project_key(fields, key),
            "status": status.get("name"),
            "status_category": category,
            "components": [
                c["name"]
                for c in fields.get("components") or []
                if isinstance(c, dict) and isinstance(c.get("name"), str)
            ],
            "reporter_id": _account(fields.get("reporter")),
            "reporter_email": _email(fields.get("reporter")),
        },
    )


def _project_key(fields: Json, key: str) -> str:
    project = fields.get("project")
    if isinstance(project, dict) and isinstance(project.get("key"), str):
        return str(project["key"])
    return key.rsplit("-", 1)[0]


def _browse_url(issue: Json, key: str) -> str | None:
    """`https://site/browse/KEY` from the issue's REST `self` URL."""
    self_url = issue.get("self")
    if not isinstance(self_url, str):
        return None
    parts = urlsplit(self_url)
    prefix = parts.path.split("/rest/api/")[0]
    return f"{parts.scheme}://{parts.netloc}{prefix}/browse/{key}"


def _text(value: object) -> str:
    """A description as text: a string (API v2), or the text nodes of an ADF document."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        pieces: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if node.get("type") == "text" and isinstance(node.get("text"), str):
                    pieces.append(node["text"])
                for child in node.get("content") or []:
                    walk(child)
                if node.get("type") in ("paragraph", "heading", "codeBlock", "listItem"):
                    pieces.append("\n")

        walk(value)
        return "".join(pieces).strip()
    raise PayloadError("payload.issue.fields.description: expected text or a document")


def _account(user: object) -> str | None:
    """Cloud users are known by `accountId`; Server/DC by `name`."""
    if not isinstance(user, dict):
        return None
    for key in ("accountId", "name", "key"):
        if isinstance(user.get(key), str) and user[key]:
            found: str = user[key]
            return found
    return None


def _display(user: object) -> str | None:
    if isinstance(user, dict) and isinstance(user.get("displayName"), str):
        return str(user["displayName"])
    return _account(user)


def _email(user: object) -> str | None:
    """Cloud hides it unless the person's profile shows it."""
    if isinstance(user, dict) and isinstance(user.get("emailAddress"), str):
        return str(user["emailAddress"]) or None
    return None


def _account_type(user: object) -> str:
    # Apps and Forge/Connect integrations are `accountType: app` on Cloud.
    if isinstance(user, dict) and user.get("accountType") == "app":
        return "Bot"
    return "User"


def _obj(data: Json, key: str, path: str) -> Json:
    value = data.get(key)
    if not isinstance(value, dict):
        raise PayloadError(f"{path}.{key}: expected an object")
    return value


def _str(data: Json, key: str, path: str) -> str:
    value = data.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{path}.{key}: expected a non-empty string")
    return value


def _opt_str(data: Json, key: str, path: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{path}.{key}: expected a string or null")
    return value


def _time(data: Json, key: str, path: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{path}.{key}: expected a timestamp string")
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise PayloadError(f"{path}.{key}: not a timestamp: {value[:40]!r}") from None
