"""Linear webhook payloads -> normalized events.

A Linear delivery is `{action, type, data, updatedFrom, url, createdAt, organizationId,
webhookId, webhookTimestamp}`; `event` is its `type` lower-cased ("issue", "comment", ...).
Every type is accepted: those we do not use parse to no events and an ignore reason.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from adapters.base import (
    CommentCreated,
    CommentDeleted,
    CommentEdited,
    CommentInfo,
    LabelsChanged,
    NormalizedEvent,
    ParsedDelivery,
    StatusChanged,
    TicketInfo,
    TicketRemoved,
    TicketUpserted,
    TrackerLabelChanged,
)
from adapters.github.fields import Json, obj, objects, opt_obj, opt_string, string, timestamp

SOURCE = "linear"
# Workflow state types in which a Linear issue is done with (`state.type`).
_CLOSED_STATE_TYPES = ("completed", "canceled")
# A comment's payload names its issue only by id, identifier and title. The ticket built
# from that is stamped this old, so the mirror's "never older" guard keeps any fuller state
# it already has, and the issue's next own event replaces the stub entirely.
STUB_UPDATED_AT = datetime(1970, 1, 1, tzinfo=UTC)


def parse(event: str, payload: dict[str, object]) -> ParsedDelivery:
    """One Linear delivery -> its events; PayloadError names the field that is wrong."""
    handler = _HANDLERS.get(event)
    if handler is None:
        return ParsedDelivery((), ignored_reason=f"linear {event} events are not used")
    action = string(payload, "action", "payload")
    return handler(action, payload)


# --- objects ----------------------------------------------------------------------------------


def ticket_from_issue(issue: Json, url: str | None = None, path: str = "data") -> TicketInfo:
    """An Issue object (webhook `data`, or GraphQL with the same fields) -> the ticket's state."""
    state = opt_obj(issue, "state", path)
    completed_at = timestamp(issue, "completedAt", path)
    canceled_at = timestamp(issue, "canceledAt", path)
    state_type: str | None
    if state is not None:
        state_type = string(state, "type", f"{path}.state")
        closed = state_type in _CLOSED_STATE_TYPES
    else:  # not every payload embeds the state; its timestamps say the same thing
        closed = completed_at is not None or canceled_at is not None
        state_type = "completed" if completed_at else "canceled" if canceled_at else None
    assignee = opt_obj(issue, "assignee", path)
    creator = opt_obj(issue, "creator", path)
    labels = objects(issue, "labels", path)
    return TicketInfo(
        source=SOURCE,
        external_id=string(issue, "id", path),
        key=string(issue, "identifier", path),
        title=string(issue, "title", path),
        body=opt_string(issue, "description", path) or "",
        state="closed" if closed else "open",
        state_reason=state_type if closed else None,
        author_login=opt_string(creator, "name", f"{path}.creator") if creator else None,
        assignees=(string(assignee, "name", f"{path}.assignee"),) if assignee else (),
        labels=tuple(
            string(label, "name", f"{path}.labels[{i}]") for i, label in enumerate(labels)
        ),
        milestone=None,
        html_url=opt_string(issue, "url", path) or url,
        created_at=timestamp(issue, "createdAt", path),
        updated_at=timestamp(issue, "updatedAt", path),
        closed_at=completed_at or canceled_at,
        tracker=_tracker_fields(issue, state, creator, path),
    )


def _tracker_fields(issue: Json, state: Json | None, creator: Json | None, path: str) -> Json:
    """What routing (team, project, labels) and moving (team, state) the issue need."""
    team = opt_obj(issue, "team", path)
    project = opt_obj(issue, "project", path)
    return {
        "team_id": (team or {}).get("id") or opt_string(issue, "teamId", path),
        "team_key": (team or {}).get("key") or string(issue, "identifier", path).split("-")[0],
        "project": (project or {}).get("name"),
        "state_id": (state or {}).get("id") or opt_string(issue, "stateId", path),
        "state_name": (state or {}).get("name"),
        "state_type": (state or {}).get("type"),
        "label_ids": {
            str(label.get("id")): label.get("name")
            for label in objects(issue, "labels", path)
            if label.get("id")
        },
        "creator_id": (creator or {}).get("id"),
        "creator_email": (creator or {}).get("email"),
    }


def stub_ticket(issue: Json, path: str) -> TicketInfo:
    """The ticket a comment belongs to, from the little its payload says (see STUB_UPDATED_AT)."""
    return TicketInfo(
        source=SOURCE,
        external_id=string(issue, "id", path),
        key=string(issue, "identifier", path),
        title=string(issue, "title", path),
        body="",
        state="open",
        state_reason=None,
        author_login=None,
        assignees=(),
        labels=(),
        milestone=None,
        html_url=opt_string(issue, "url", path),
        created_at=None,
        updated_at=STUB_UPDATED_AT,
        closed_at=None,
        # Enough to route the ticket by its team and move it, should the comment (a `/run`)
        # be the first we hear of the issue; its own next event fills in the rest.
        tracker={
            "team_id": opt_string(issue, "teamId", path),
            "team_key": string(issue, "identifier", path).split("-")[0],
            "label_ids": {},
        },
    )


def comment_from_api(comment: Json, url: str | None = None, path: str = "data") -> CommentInfo:
    user = opt_obj(comment, "user", path)
    bot = opt_obj(comment, "botActor", path)
    if user is not None:
        author, author_type = opt_string(user, "name", f"{path}.user"), "User"
    elif bot is not None:  # integrations and apps comment as a bot actor
        author, author_type = opt_string(bot, "name", f"{path}.botActor"), "Bot"
    else:
        author, author_type = None, None
    return CommentInfo(
        source=SOURCE,
        external_id=string(comment, "id", path),
        author_login=author,
        author_type=author_type,
        body=opt_string(comment, "body", path) or "",
        html_url=opt_string(comment, "url", path) or url,
        created_at=timestamp(comment, "createdAt", path),
        updated_at=timestamp(comment, "updatedAt", path),
        author_id=(user or {}).get("id") or opt_string(comment, "userId", path),
        author_email=(user or {}).get("email"),
    )


# --- events -----------------------------------------------------------------------------------


def _event_issue(action: str, payload: Json) -> ParsedDelivery:
    data = obj(payload, "data", "payload")
    ticket = ticket_from_issue(data, opt_string(payload, "url", "payload"))
    if action == "create":
        return ParsedDelivery((TicketUpserted(ticket, "opened"),))
    if action == "update":
        return ParsedDelivery(_issue_updated(ticket, data, payload))
    if action == "remove":
        return ParsedDelivery((TicketRemoved(ticket, reason="deleted"),))
    return ParsedDelivery((), ignored_reason=f"issue action {action[:40]!r} is not used")


def _issue_updated(ticket: TicketInfo, data: Json, payload: Json) -> tuple[NormalizedEvent, ...]:
    """An update, and what `updatedFrom` says changed: the workflow state, the labels."""
    before = opt_obj(payload, "updatedFrom", "payload") or {}
    actor = opt_obj(payload, "actor", "payload") or {}
    actor_id, actor_name = actor.get("id"), actor.get("name")
    actor_type = "Bot" if str(actor.get("type", "")).casefold() in ("bot", "app") else "User"
    state_moved = "stateId" in before and before.get("stateId") != data.get("stateId")
    closed = state_moved and ticket.state == "closed"
    events: list[NormalizedEvent] = [TicketUpserted(ticket, "closed" if closed else "edited")]
    state = opt_obj(data, "state", "data")
    if state_moved and state is not None:
        events.append(
            StatusChanged(
                ticket,
                from_status=None,  # Linear names only the old state's id
                to_status=string(state, "name", "data.state"),
                actor=actor_name if isinstance(actor_name, str) else None,
                actor_id=actor_id if isinstance(actor_id, str) else None,
            )
        )
    old_ids = before.get("labelIds")
    if isinstance(old_ids, list):
        names = (ticket.tracker or {}).get("label_ids") or {}
        added = tuple(name for label_id, name in names.items() if label_id not in old_ids)
        if added:
            events.append(
                LabelsChanged(
                    ticket,
                    added=added,
                    actor=actor_name if isinstance(actor_name, str) else None,
                    actor_type=actor_type,
                    actor_id=actor_id if isinstance(actor_id, str) else None,
                )
            )
    return tuple(events)


def _event_comment(action: str, payload: Json) -> ParsedDelivery:
    data = obj(payload, "data", "payload")
    issue = opt_obj(data, "issue", "data")
    if issue is None:  # comments on project updates and documents belong to no ticket
        return ParsedDelivery((), ignored_reason="comment is not on an issue")
    ticket = stub_ticket(issue, "data.issue")
    comment = comment_from_api(data, opt_string(payload, "url", "payload"))
    if action == "create":
        return ParsedDelivery((CommentCreated(ticket, comment),))
    if action == "update":
        return ParsedDelivery((CommentEdited(ticket, comment),))
    if action == "remove":
        return ParsedDelivery((CommentDeleted(ticket, comment),))
    return ParsedDelivery((), ignored_reason=f"comment action {action[:40]!r} is not used")


def _event_issuelabel(action: str, payload: Json) -> ParsedDelivery:
    """Issues carry their labels' names as of their last event: a rename or a deletion
    reaches the tickets carrying the label through its id."""
    data = obj(payload, "data", "payload")
    label_id, name = string(data, "id", "data"), string(data, "name", "data")
    if action == "update":
        return ParsedDelivery((TrackerLabelChanged(SOURCE, label_id, name, "edited"),))
    if action == "remove":
        return ParsedDelivery((TrackerLabelChanged(SOURCE, label_id, name, "deleted"),))
    return ParsedDelivery((), ignored_reason=f"a label {action[:40]}d is on no issue yet")


_HANDLERS: dict[str, Callable[[str, Any], ParsedDelivery]] = {
    "issue": _event_issue,
    "comment": _event_comment,
    "issuelabel": _event_issuelabel,
}
