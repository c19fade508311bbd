"""Jira webhook payloads parsed into normalized events, and their signatures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.base import (
    CommentCreated,
    PayloadError,
    StatusChanged,
    TicketRemoved,
    TicketUpserted,
)
from adapters.jira.events import parse
from adapters.jira.verify import sign, signature_valid, token_valid
from tests.support.helpers import FIXTURES as SHARED_FIXTURES

FIXTURES = SHARED_FIXTURES / "jira"


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def test_a_created_issue_is_an_open_ticket() -> None:
    parsed = parse("", example("issue_created.json"))
    (event,) = parsed.events
    assert isinstance(event, TicketUpserted)
    assert event.action == "opened"
    ticket = event.ticket
    assert (ticket.source, ticket.external_id, ticket.key) == ("jira", "10007", "PROJ-7")
    assert ticket.title == "Add a PASS file"
    assert ticket.body == "The gate wants a PASS file at the root."
    assert ticket.state == "open"
    assert ticket.labels == ("openase",)
    assert ticket.author_login == "5b10a2844c20165700ede21g"
    assert ticket.html_url == "https://acme.atlassian.net/browse/PROJ-7"
    assert ticket.updated_at == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    assert ticket.repo is None
    assert ticket.number is None


def test_a_status_move_is_read_from_the_changelog() -> None:
    upserted, moved = parse("", example("issue_updated.json")).events
    assert isinstance(upserted, TicketUpserted)
    assert isinstance(moved, StatusChanged)
    assert (moved.from_status, moved.to_status) == ("To Do", "In Progress")
    assert (moved.actor, moved.actor_id) == ("Alice Lee", "5b10a2844c20165700ede21g")
    assert moved.ticket.key == "PROJ-7"


def test_a_done_status_closes_the_ticket() -> None:
    upserted, moved = parse("", example("issue_done.json")).events
    assert isinstance(upserted, TicketUpserted)
    assert upserted.ticket.state == "closed"
    assert upserted.ticket.state_reason == "Done"
    assert upserted.ticket.closed_at == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    assert isinstance(moved, StatusChanged)
    assert moved.to_status == "Done"


def test_a_deleted_issue_is_removed() -> None:
    (event,) = parse("", example("issue_deleted.json")).events
    assert isinstance(event, TicketRemoved)
    assert event.reason == "deleted"


def test_a_comment_carries_its_issue_and_author() -> None:
    (event,) = parse("", example("comment_created.json")).events
    assert isinstance(event, CommentCreated)
    assert event.comment.external_id == "10100"
    assert event.comment.body == "/run"
    assert event.comment.author_login == "5b10a2844c20165700ede21g"
    assert event.comment.author_type == "User"
    assert event.ticket.key == "PROJ-7"


def test_a_document_description_becomes_text() -> None:
    (event,) = parse("", example("issue_adf.json")).events
    assert isinstance(event, TicketUpserted)
    assert event.ticket.body == "First line.\nSecond line."


def test_other_events_are_ignored_with_a_reason() -> None:
    parsed = parse("", {"webhookEvent": "worklog_created"})
    assert parsed.events == ()
    assert parsed.ignored_reason == "worklog_created is not used"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.pop("issue"), "payload.issue: expected an object"),
        (lambda p: p["issue"].pop("key"), "payload.issue.key: expected a non-empty string"),
        (lambda p: p["issue"]["fields"].update(labels="x"), "payload.issue.fields.labels"),
        (
            lambda p: p["issue"]["fields"].update(updated="yesterday"),
            "payload.issue.fields.updated",
        ),
    ],
)
def test_malformed_payloads_name_the_field(change: Any, message: str) -> None:
    payload = example("issue_created.json")
    change(payload)
    with pytest.raises(PayloadError, match=message.replace(".", r"\.")):
        parse("", payload)


def test_signatures_and_url_tokens() -> None:
    body = b'{"webhookEvent": "jira:issue_created"}'
    header = sign(b"s3cret", body)
    assert header.startswith("sha256=")
    assert signature_valid(b"s3cret", body, header)
    assert signature_valid(b"s3cret", body, header.upper().replace("SHA256=", "sha256="))
    assert not signature_valid(b"other", body, header)
    assert not signature_valid(b"s3cret", body + b" ", header)
    assert not signature_valid(b"s3cret", body, None)
    assert not signature_valid(b"s3cret", body, "sha1=" + header[7:])
    assert token_valid(b"s3cret", "s3cret")
    assert not token_valid(b"s3cret", "s3cre")
    assert not token_valid(b"s3cret", None)
