"""`POST /webhooks/linear` and the Linear adapter: verification, replay protection,
storage, parsing of each event type, and ingest into the mirror."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from adapters.base import (
    CommentCreated,
    CommentDeleted,
    CommentEdited,
    CommentInfo,
    LabelsChanged,
    PayloadError,
    StatusChanged,
    TicketInfo,
    TicketRemoved,
    TicketUpserted,
    TrackerLabelChanged,
)
from adapters.linear.events import STUB_UPDATED_AT, parse
from adapters.linear.verify import sign, signature_valid, timestamp_fresh
from bot.deps import Deps
from bot.tables.mirror import Comment, Delivery, Ticket
from tests.conftest import AppWith
from tests.support.deliveries import queued_deliveries
from tests.support.helpers import FIXTURES

SECRET = "linear-test-secret-not-real"
DELIVERY = "0b8f7d2e-6c1a-4e5b-9a3d-2f4e6a8c0b1d"
IngestAll = Callable[[], Awaitable[list[str]]]


def fixture(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / "linear" / f"{name}.json").read_text())
    return payload


def fresh(name: str, **overrides: Any) -> bytes:
    """The fixture's body as Linear would send it now."""
    payload = fixture(name) | {"webhookTimestamp": int(time.time() * 1000)} | overrides
    return json.dumps(payload).encode()


def headers(body: bytes, **overrides: str | None) -> dict[str, str]:
    values: dict[str, str | None] = {
        "Content-Type": "application/json; charset=utf-8",
        "Linear-Delivery": DELIVERY,
        "Linear-Event": json.loads(body).get("type", "Issue"),
        "Linear-Signature": sign(SECRET.encode(), body),
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


@pytest.fixture
async def linear(app_with: AppWith) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose settings have a Linear signing secret."""
    async with app_with(linear_webhook_secret=SecretStr(SECRET)) as http:
        yield http


async def _deliveries(deps: Deps) -> list[Delivery]:
    async with deps.sessions() as s:
        return list((await s.execute(select(Delivery).order_by(Delivery.id))).scalars())


async def _queued_jobs(deps: Deps) -> int:
    return len(await queued_deliveries(deps))


# --- verify ---------------------------------------------------------------------------------


def test_signature_is_the_hex_hmac_of_the_body() -> None:
    body = b'{"a": 1}'
    # hmac.new(b"k", body, hashlib.sha256).hexdigest(), computed apart from the code under test
    assert sign(b"k", body) == "3af007ed82fd250c41e3ccf714fac4068641ac6ed7b90910c62345f0f9137b0e"
    assert signature_valid(b"k", body, sign(b"k", body))
    assert signature_valid(b"k", body, " " + sign(b"k", body).upper() + "\n")
    assert not signature_valid(b"k", body, sign(b"other", body))
    assert not signature_valid(b"k", body, sign(b"k", body + b" "))
    assert not signature_valid(b"k", body, None)
    assert not signature_valid(b"k", body, "")
    assert not signature_valid(b"k", body, "sha256=" + sign(b"k", body))


def test_timestamp_must_be_within_a_minute() -> None:
    now = 1_763_630_102_512
    assert timestamp_fresh(now, now_ms=now)
    assert timestamp_fresh(now - 60_000, now_ms=now)
    assert timestamp_fresh(now + 5_000, now_ms=now)
    assert not timestamp_fresh(now - 60_001, now_ms=now)
    assert not timestamp_fresh(now + 60_001, now_ms=now)
    assert not timestamp_fresh(None, now_ms=now)
    assert not timestamp_fresh(str(now), now_ms=now)
    assert not timestamp_fresh(True, now_ms=now)


# --- the endpoint ---------------------------------------------------------------------------


async def test_a_signed_fresh_delivery_is_stored_and_queued(
    linear: httpx.AsyncClient, deps: Deps
) -> None:
    body = fresh("issue_create")
    response = await linear.post("/webhooks/linear", content=body, headers=headers(body))
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    [row] = await _deliveries(deps)
    assert (row.source, row.delivery_id, row.event, row.action) == (
        "linear",
        DELIVERY,
        "issue",
        "create",
    )
    assert row.status == "pending"
    assert row.payload == json.loads(body)
    assert await _queued_jobs(deps) == 1


@pytest.mark.parametrize(
    ("overrides", "status", "message"),
    [
        ({"Linear-Signature": None}, 401, "Linear-Signature"),
        ({"Linear-Signature": "0" * 64}, 401, "Linear-Signature"),
        ({"Linear-Signature": sign(b"another-secret", fresh("issue_create"))}, 401, "Signature"),
        ({"Linear-Delivery": None}, 400, "missing Linear-Delivery"),
        ({"Linear-Delivery": "../../etc/passwd"}, 400, "malformed Linear-Delivery"),
        ({"Content-Type": "text/plain"}, 415, "Content-Type"),
    ],
)
async def test_bad_requests_are_refused_and_nothing_is_stored(
    linear: httpx.AsyncClient,
    deps: Deps,
    overrides: dict[str, str | None],
    status: int,
    message: str,
) -> None:
    body = fresh("issue_create")
    response = await linear.post(
        "/webhooks/linear", content=body, headers=headers(body, **overrides)
    )
    assert response.status_code == status
    assert message in response.json()["error"]
    assert await _deliveries(deps) == []
    assert await _queued_jobs(deps) == 0


async def test_a_body_changed_after_signing_is_refused(
    linear: httpx.AsyncClient, deps: Deps
) -> None:
    body = fresh("issue_create")
    tampered = body.replace(b"Login form", b"Logout form")
    assert tampered != body
    response = await linear.post("/webhooks/linear", content=tampered, headers=headers(body))
    assert response.status_code == 401
    assert await _deliveries(deps) == []


@pytest.mark.parametrize(
    "timestamp",
    [
        None,
        "now",
        1763630102512,
        # Ten minutes ahead; the id stays fixed so parallel test processes collect alike.
        pytest.param(int(time.time() * 1000) + 10 * 60_000, id="ten-minutes-ahead"),
    ],
)
async def test_stale_or_missing_timestamps_are_refused(
    linear: httpx.AsyncClient, deps: Deps, timestamp: object
) -> None:
    """A captured delivery replayed later still carries a valid signature of its body; its
    timestamp, which the signature covers, is what refuses it after a minute."""
    body = fresh("issue_create", webhookTimestamp=timestamp)
    response = await linear.post("/webhooks/linear", content=body, headers=headers(body))
    assert response.status_code == 401
    assert "stale" in response.json()["error"]
    assert await _deliveries(deps) == []


async def test_a_redelivery_is_acknowledged_but_stored_once(
    linear: httpx.AsyncClient, deps: Deps
) -> None:
    body = fresh("issue_create")
    first = await linear.post("/webhooks/linear", content=body, headers=headers(body))
    again = await linear.post("/webhooks/linear", content=body, headers=headers(body))
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate"}
    assert len(await _deliveries(deps)) == 1
    assert await _queued_jobs(deps) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
async def test_malformed_json_is_refused(
    linear: httpx.AsyncClient, deps: Deps, body: bytes, message: str
) -> None:
    response = await linear.post(
        "/webhooks/linear",
        content=body,
        headers=headers(b"{}") | {"Linear-Signature": sign(SECRET.encode(), body)},
    )
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert await _deliveries(deps) == []


@pytest.mark.parametrize("kind", [None, 42, "Issue; DROP"])
async def test_a_payload_without_a_usable_type_is_refused(
    linear: httpx.AsyncClient, deps: Deps, kind: object
) -> None:
    body = fresh("issue_create", type=kind)
    response = await linear.post(
        "/webhooks/linear", content=body, headers=headers(body, **{"Linear-Event": "Issue"})
    )
    assert response.status_code == 400
    assert "type" in response.json()["error"]
    assert await _deliveries(deps) == []


async def test_without_a_secret_linear_webhooks_are_unavailable(
    client: httpx.AsyncClient, deps: Deps
) -> None:
    assert deps.settings.linear_webhook_secret is None
    body = fresh("issue_create")
    response = await client.post("/webhooks/linear", content=body, headers=headers(body))
    assert response.status_code == 503
    assert "LINEAR_WEBHOOK_SECRET" in response.json()["error"]
    assert await _deliveries(deps) == []


# --- parsing --------------------------------------------------------------------------------

ISSUE_ID = "3e2d1c0b-a987-4654-b321-0fedcba98765"
ISSUE_URL = "https://linear.app/acme/issue/ENG-123/login-form-rejects-valid-emails"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_issue_create_is_the_ticket_open() -> None:
    parsed = parse("issue", fixture("issue_create"))
    assert parsed.ignored_reason is None
    [event] = parsed.events
    assert isinstance(event, TicketUpserted)
    tracker = dict(event.ticket.tracker or {})
    assert tracker["team_key"] == "ENG"
    assert tracker["state_type"] is not None
    assert "openase" in tracker["label_ids"].values()
    assert parsed.events == (
        TicketUpserted(
            TicketInfo(
                source="linear",
                external_id=ISSUE_ID,
                key="ENG-123",
                title="Login form rejects valid emails",
                body="Emails with a `+` are rejected by the login form.\n\n"
                "Steps: enter `ada+test@example.com`.",
                state="open",
                state_reason=None,
                author_login=None,
                assignees=("Ada Lovelace",),
                labels=("Bug", "openase"),
                milestone=None,
                html_url=ISSUE_URL,
                created_at=_at("2026-11-20T09:15:02.311"),
                updated_at=_at("2026-11-20T09:15:02.311"),
                closed_at=None,
                repo=None,
                number=None,
                tracker=tracker,
            ),
            action="opened",
        ),
    )


def test_issue_update_to_a_completed_state_closes_the_ticket() -> None:
    event, moved = parse("issue", fixture("issue_update")).events
    assert isinstance(event, TicketUpserted)
    assert event.action == "closed"
    assert isinstance(moved, StatusChanged)
    assert (moved.to_status, moved.actor) == ("Done", "Ada Lovelace")
    assert moved.actor_id == "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    ticket = event.ticket
    assert (ticket.state, ticket.state_reason) == ("closed", "completed")
    assert ticket.updated_at == _at("2026-11-21T16:40:11.905")
    assert ticket.closed_at == _at("2026-11-21T16:40:11.905")
    assert ticket.key == "ENG-123"


def test_an_update_adding_a_label_says_which_and_who() -> None:
    payload = fixture("issue_update")
    payload["updatedFrom"] = {
        "updatedAt": "2026-11-20T09:15:02.311Z",
        "labelIds": ["9e8d7c6b-5a4f-4e3d-9c2b-1a0f9e8d7c6b"],
    }
    payload["data"]["completedAt"] = None
    payload["data"]["state"] = {"id": "s1", "name": "Todo", "type": "unstarted"}
    upserted, labelled = parse("issue", payload).events
    assert isinstance(upserted, TicketUpserted)
    assert upserted.action == "edited"
    assert isinstance(labelled, LabelsChanged)
    assert labelled.added == ("openase",)
    assert (labelled.actor_id, labelled.actor_type) == (
        "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "User",
    )


def test_a_canceled_issue_is_closed_and_without_a_state_its_timestamps_decide() -> None:
    payload = fixture("issue_update")
    payload["data"]["state"] |= {"type": "canceled"}
    event, _ = parse("issue", payload).events
    assert isinstance(event, TicketUpserted)
    assert (event.ticket.state, event.ticket.state_reason) == ("closed", "canceled")
    del payload["data"]["state"]
    [event] = parse("issue", payload).events
    assert isinstance(event, TicketUpserted)
    assert (event.ticket.state, event.ticket.state_reason) == ("closed", "completed")
    payload = fixture("issue_create")
    del payload["data"]["state"]
    [event] = parse("issue", payload).events
    assert isinstance(event, TicketUpserted)
    assert event.ticket.state == "open"


def test_issue_remove_is_a_deletion() -> None:
    [event] = parse("issue", fixture("issue_remove")).events
    assert isinstance(event, TicketRemoved)
    assert event.reason == "deleted"
    assert event.moved_to is None
    assert (event.ticket.external_id, event.ticket.key) == (ISSUE_ID, "ENG-123")


COMMENT = CommentInfo(
    source="linear",
    external_id="c4d5e6f7-a8b9-4c0d-9e1f-2a3b4c5d6e7f",
    author_login="Ada Lovelace",
    author_type="User",
    body="Reproduced on staging; the regex in `validate_email` drops `+`.",
    html_url=ISSUE_URL + "#comment-c4d5e6f7",
    created_at=_at("2026-11-20T10:02:37.004"),
    updated_at=_at("2026-11-20T10:02:37.004"),
    author_id="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    author_email="ada@example.com",
)
COMMENT_TICKET = TicketInfo(
    source="linear",
    external_id=ISSUE_ID,
    key="ENG-123",
    title="Login form rejects valid emails",
    body="",
    state="open",
    state_reason=None,
    author_login=None,
    assignees=(),
    labels=(),
    milestone=None,
    html_url=ISSUE_URL,
    created_at=None,
    updated_at=STUB_UPDATED_AT,
    closed_at=None,
    tracker={
        "team_id": "5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f",
        "team_key": "ENG",
        "label_ids": {},
    },
)


def test_comment_create_update_remove() -> None:
    assert parse("comment", fixture("comment_create")).events == (
        CommentCreated(COMMENT_TICKET, COMMENT),
    )
    [edited] = parse("comment", fixture("comment_update")).events
    assert isinstance(edited, CommentEdited)
    assert edited.ticket == COMMENT_TICKET
    assert edited.comment.body.endswith("drops `+` and `%`.")
    assert edited.comment.updated_at == _at("2026-11-20T10:05:12.450")
    [deleted] = parse("comment", fixture("comment_remove")).events
    assert isinstance(deleted, CommentDeleted)
    assert deleted.comment.external_id == COMMENT.external_id


def test_a_bot_comment_and_a_comment_on_no_issue() -> None:
    payload = fixture("comment_create")
    payload["data"] |= {"user": None, "userId": None, "botActor": {"name": "GitHub"}}
    [event] = parse("comment", payload).events
    assert isinstance(event, CommentCreated)
    assert (event.comment.author_login, event.comment.author_type) == ("GitHub", "Bot")
    payload["data"] |= {"issue": None, "issueId": None, "projectUpdateId": "x"}
    parsed = parse("comment", payload)
    assert parsed.events == ()
    assert parsed.ignored_reason == "comment is not on an issue"


def test_unused_types_and_actions_are_ignored_with_a_reason() -> None:
    labels = parse("issuelabel", fixture("issuelabel_create"))
    assert labels.events == ()
    assert labels.ignored_reason is not None
    assert "label" in labels.ignored_reason
    renamed = fixture("issuelabel_create") | {"action": "update"}
    renamed["data"] = renamed["data"] | {"name": "agent"}
    assert parse("issuelabel", renamed).events == (
        TrackerLabelChanged("linear", "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0", "agent", "edited"),
    )
    project = parse("project", {"action": "create", "type": "Project", "data": {}})
    assert project.events == ()
    assert project.ignored_reason == "linear project events are not used"
    restore = parse("issue", fixture("issue_create") | {"action": "restore"})
    assert restore.events == ()
    assert restore.ignored_reason is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.pop("action"), "payload.action"),
        (lambda p: p.pop("data"), "payload.data"),
        (lambda p: p["data"].pop("identifier"), "data.identifier"),
        (lambda p: p["data"].update(title=7), "data.title"),
        (lambda p: p["data"]["state"].pop("type"), "data.state.type"),
        (lambda p: p["data"].update(labels=[{"id": "x"}]), "data.labels[0].name"),
        (lambda p: p["data"].update(updatedAt="yesterday"), "data.updatedAt"),
    ],
)
def test_malformed_issue_payloads_name_the_field(
    change: Callable[[dict[str, Any]], object], message: str
) -> None:
    payload = fixture("issue_update")
    change(payload)
    with pytest.raises(PayloadError, match=re.escape(message)):
        parse("issue", payload)


def test_a_malformed_comment_payload_names_the_field() -> None:
    payload = fixture("comment_create")
    del payload["data"]["issue"]["identifier"]
    with pytest.raises(PayloadError, match=re.escape("data.issue.identifier")):
        parse("comment", payload)


# --- end to end -----------------------------------------------------------------------------


async def _post(linear: httpx.AsyncClient, name: str, delivery: str) -> None:
    body = fresh(name)
    response = await linear.post(
        "/webhooks/linear", content=body, headers=headers(body, **{"Linear-Delivery": delivery})
    )
    assert response.status_code == 202, response.text


async def _post_payload(linear: httpx.AsyncClient, payload: dict[str, Any], delivery: str) -> None:
    body = json.dumps(payload | {"webhookTimestamp": int(time.time() * 1000)}).encode()
    response = await linear.post(
        "/webhooks/linear", content=body, headers=headers(body, **{"Linear-Delivery": delivery})
    )
    assert response.status_code == 202, response.text


async def test_issue_and_comment_deliveries_reach_the_mirror(
    linear: httpx.AsyncClient, deps: Deps, ingest_all: IngestAll
) -> None:
    # The comment arrives first: its stub ticket must not hide the issue's own state after.
    await _post(linear, "comment_create", "11111111-1111-4111-8111-111111111111")
    await _post(linear, "issue_create", "22222222-2222-4222-8222-222222222222")
    await _post(linear, "comment_update", "33333333-3333-4333-8333-333333333333")
    assert await ingest_all() == ["done", "done", "done"]

    async with deps.sessions() as s:
        [ticket] = (await s.execute(select(Ticket))).scalars()
        [comment] = (await s.execute(select(Comment))).scalars()
        ticket_count = (await s.execute(select(func.count()).select_from(Ticket))).scalar_one()
    assert ticket_count == 1
    assert (ticket.source, ticket.external_id, ticket.key) == ("linear", ISSUE_ID, "ENG-123")
    assert ticket.repository_id is None
    assert ticket.number is None
    assert ticket.state == "open"
    assert ticket.labels == ["Bug", "openase"]
    assert ticket.body.startswith("Emails with a `+`")
    assert ticket.external_updated_at == _at("2026-11-20T09:15:02.311")
    # The comment stubs carry no tracker fields: the issue's team, state and labels stay.
    assert ticket.tracker is not None
    assert ticket.tracker["team_key"] == "ENG", ticket.tracker
    assert (comment.source, comment.ticket_id) == ("linear", ticket.id)
    assert comment.body.endswith("drops `+` and `%`.")
    assert comment.author_login == "Ada Lovelace"

    await _post(linear, "issue_update", "44444444-4444-4444-8444-444444444444")
    await _post(linear, "comment_remove", "55555555-5555-4555-8555-555555555555")
    await _post(linear, "issuelabel_create", "66666666-6666-4666-8666-666666666666")
    assert await ingest_all() == ["done", "done", "ignored"]
    async with deps.sessions() as s:
        ticket = (await s.execute(select(Ticket))).scalar_one()
        comment = (await s.execute(select(Comment))).scalar_one()
        statuses = [d.status for d in (await s.execute(select(Delivery))).scalars()]
    assert (ticket.state, ticket.state_reason) == ("closed", "completed")
    assert comment.deleted is True
    assert sorted(statuses) == ["done"] * 5 + ["ignored"]
    assert "openase" in ticket.labels

    # A rename in Linear's settings reaches the ticket by the label's id; a removal drops it.
    renamed = fixture("issuelabel_create") | {"action": "update"}
    renamed["data"] = renamed["data"] | {"name": "agent"}
    await _post_payload(linear, renamed, "77777777-7777-4777-8777-777777777777")
    removed = fixture("issuelabel_create") | {"action": "remove"}
    removed["data"] = renamed["data"]
    assert await ingest_all() == ["done"]
    async with deps.sessions() as s:
        ticket = (await s.execute(select(Ticket))).scalar_one()
    assert "agent" in ticket.labels
    assert "openase" not in ticket.labels
    assert "agent" in (ticket.tracker or {})["label_ids"].values()
    await _post_payload(linear, removed, "88888888-8888-4888-8888-888888888888")
    assert await ingest_all() == ["done"]
    async with deps.sessions() as s:
        ticket = (await s.execute(select(Ticket))).scalar_one()
    assert "agent" not in ticket.labels
    assert "Bug" in ticket.labels
