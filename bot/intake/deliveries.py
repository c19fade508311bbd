"""A delivery's way in, wherever it arrived: verify, store (STYLE practice 1); storing it
pending queues it for the control worker (bot/intake/pump.py).

`POST /webhooks/*` (bot/intake/webhooks.py) and the webhook relay (bot/intake/relay.py)
both hand a delivery's headers and body bytes to `receive`, so a relayed delivery is
checked, stored, deduplicated and counted exactly as a direct one. `receive` answers with
an `Outcome`: what a sender is told, and whether the delivery is in the store.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import orjson
import structlog
from pydantic import SecretStr

from bot.deps import Deps
from bot.intake.group_insert import GroupInsert, NewDelivery
from bot.metrics import WEBHOOK_ACK_SECONDS, WEBHOOK_DELIVERIES
from bot.registry import (
    GITHUB_SIGNATURE_HEADER,
    JIRA_DELIVERY_HEADER,
    JIRA_SIGNATURE_HEADER,
    LINEAR_DELIVERY_HEADER,
    LINEAR_EVENT_HEADER,
    LINEAR_SIGNATURE_HEADER,
    LINEAR_TIMESTAMP_FIELD,
    github_signature_valid,
    jira_signature_valid,
    jira_token_valid,
    linear_signature_valid,
    linear_timestamp_fresh,
)
from bot.tables.mirror import DeliveryStatus

log = structlog.get_logger(__name__)

Source = Literal["github", "linear", "jira"]
# Headers are looked up by lower-case name (Starlette's Headers and smee's both allow it).
Headers = Mapping[str, str]

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
UNAVAILABLE = "unavailable"  # the outcome when the store failed: the same delivery may pass later
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Outcome:
    """What became of one delivery: the HTTP answer, and `label` for the metric and logs."""

    status: int
    answer: dict[str, Any]
    label: str

    @property
    def stored(self) -> bool:
        """The delivery is in the store (new, a redelivery or a ping): safe to acknowledge."""
        return 200 <= self.status < 300

    @property
    def unavailable(self) -> bool:
        """Not stored because the store failed; offering the same delivery later may work."""
        return self.label == UNAVAILABLE


class Rejected(Exception):
    """A delivery refused with a 4xx (or 503 when unconfigured); `outcome` labels the metric."""

    def __init__(self, status: int, message: str, outcome: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.outcome = outcome


async def receive(
    deps: Deps,
    source: Source,
    headers: Headers,
    body: bytes,
    *,
    query: Mapping[str, str] | None = None,
    started: float | None = None,
) -> Outcome:
    """Verify and store one delivery (queued for the worker), and count it in the metrics.

    `query` is the URL's query (Jira's `?token=`); `started` (a `time.perf_counter()`) is
    when the delivery began to arrive, for the acknowledgement latency.
    """
    begun = time.perf_counter() if started is None else started
    structlog.contextvars.clear_contextvars()
    try:
        if len(body) > MAX_BODY_BYTES:
            raise Rejected(413, f"payload over {MAX_BODY_BYTES} bytes", "too_large")
        outcome = await _HANDLERS[source](deps, headers, body, query or {})
    except Rejected as rejected:
        outcome = refused(source, rejected)
    count_delivery(source, headers, outcome, begun)
    return outcome


def refused(source: Source, rejected: Rejected) -> Outcome:
    """The answer to a refused delivery, logged (the reason names no secret)."""
    log.info("webhook_rejected", source=source, status=rejected.status, reason=rejected.message)
    return Outcome(rejected.status, {"error": rejected.message}, rejected.outcome)


def count_delivery(source: Source, headers: Headers, outcome: Outcome, started: float) -> None:
    """Count a delivery by source, event and outcome, and time its acknowledgement."""
    event = _metric_event(source, headers)
    label = event if _EVENT_NAME.match(event) else "invalid"
    WEBHOOK_DELIVERIES.labels(source, label, outcome.label).inc()
    WEBHOOK_ACK_SECONDS.labels(source).observe(time.perf_counter() - started)


def _metric_event(source: Source, headers: Headers) -> str:
    if source == "github":
        return headers.get("x-github-event", "")
    if source == "linear":
        # The stored event is the payload's `type`, which this header mirrors.
        return headers.get(LINEAR_EVENT_HEADER, "").lower()
    return "jira"


# --- storing -----------------------------------------------------------------------------


def _strip_nul(value: Any) -> Any:
    """PostgreSQL's JSONB cannot hold U+0000; replace it rather than lose the delivery."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    return value


def _summary(payload: dict[str, Any]) -> tuple[str | None, int | None, str | None]:
    """(action, installation id, repository full name): columns for filtering and logs."""
    action = payload.get("action")
    installation = payload.get("installation")
    repository = payload.get("repository")
    inst_id = installation.get("id") if isinstance(installation, dict) else None
    repo_name = repository.get("full_name") if isinstance(repository, dict) else None
    return (
        action if isinstance(action, str) else None,
        inst_id if isinstance(inst_id, int) and not isinstance(inst_id, bool) else None,
        repo_name if isinstance(repo_name, str) else None,
    )


async def store_delivery(
    deps: Deps,
    *,
    source: str,
    delivery_id: str,
    event: str,
    payload: dict[str, Any],
    raw: str | None = None,
    status: DeliveryStatus = DeliveryStatus.PENDING,
) -> int | None:
    """Insert the delivery; its primary key, or None when this delivery id is already stored.

    `raw` is the payload's JSON text as received, when it can be stored as is. Deliveries
    arriving while others are being stored are inserted together (bot/intake/group_insert.py).
    """
    action, installation_id, repository = _summary(payload)
    text = raw if raw is not None else json.dumps(payload)
    delivery = NewDelivery(
        source, delivery_id, event, action, installation_id, repository, text, str(status)
    )
    inserts = deps.intake_inserts
    if not isinstance(inserts, GroupInsert) or inserts.pool is not deps.intake:
        inserts = deps.intake_inserts = GroupInsert(deps.intake)
    return await inserts.store(delivery)


def _require_json(headers: Headers) -> None:
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise Rejected(
            415,
            "Content-Type must be application/json (set the webhook's content type to JSON)",
            "unsupported_media_type",
        )


def _json_object(body: bytes) -> tuple[dict[str, Any], str | None]:
    """The body as a JSON object, and its text when it can be stored as received."""
    # orjson: the standard parser was a tenth of the web process's time under load. It
    # refuses what jsonb would refuse anyway (a lone UTF-16 surrogate, NaN), here at once.
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Rejected(400, f"body is not valid JSON: {exc}", "bad_request") from None
    if not isinstance(payload, dict):
        raise Rejected(400, "body must be a JSON object", "bad_request")
    if b"\\u0000" in body:
        # Stored re-encoded, so parsed again by the standard parser: orjson reads an
        # integer past 64 bits as a float, and the stored payload must keep it exact.
        return _strip_nul(json.loads(body)), None
    return payload, body.decode()


async def _store(
    deps: Deps,
    *,
    source: str,
    delivery_id: str,
    event: str,
    payload: dict[str, Any],
    raw: str | None,
    status: DeliveryStatus = DeliveryStatus.PENDING,
) -> Outcome | int:
    """Store the delivery: its key, or the outcome when there is nothing more to do
    (it could not be stored, or it is a redelivery of one already stored)."""
    try:
        pk = await store_delivery(
            deps,
            source=source,
            delivery_id=delivery_id,
            event=event,
            payload=payload,
            raw=raw,
            status=status,
        )
    except asyncpg.DataError as exc:
        # The delivery carries data PostgreSQL will never store (a repository name longer
        # than GitHub allows, past its column): refused, where "retry later" had the
        # sender (and the relay) try it forever.
        log.warning("delivery_refused", error=f"{type(exc).__name__}: {exc}")
        return Outcome(400, {"error": f"delivery cannot be stored: {exc}"}, "bad_request")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        # An outage is said once (bot/servers/outages.py), not once per refused delivery;
        # each is still counted (the "unavailable" outcome of the webhook metric).
        if deps.outages.noticed(exc) is None:
            log.error("delivery_not_stored", error=type(exc).__name__)
        else:
            log.debug("delivery_not_stored", error=type(exc).__name__)
        return Outcome(503, {"error": "delivery could not be stored; retry later"}, UNAVAILABLE)
    if pk is None:
        log.info("delivery_duplicate")
        return Outcome(200, {"status": "duplicate"}, "duplicate")
    return pk


def _accepted(pk: int) -> Outcome:
    # Stored pending is queued: Postgres tells the control worker as the insert commits
    # (bot/intake/pump.py), so no second store has to take it, nor be up. Said at debug
    # level: a line per delivery cost the web process a fifth of its time at 1,400/s; the
    # worker names each in its `deliveries_ingested` line, and the metrics count every outcome.
    log.debug("delivery_accepted", delivery_pk=pk)
    return Outcome(202, {"status": "accepted", "delivery": pk}, "accepted")


async def _store_and_accept(
    deps: Deps,
    *,
    source: str,
    delivery_id: str,
    event: str,
    payload: dict[str, Any],
    raw: str | None,
) -> Outcome:
    stored = await _store(
        deps, source=source, delivery_id=delivery_id, event=event, payload=payload, raw=raw
    )
    if isinstance(stored, Outcome):
        return stored
    return _accepted(stored)


def _configured(secret: SecretStr | None, tracker: str, variable: str) -> bytes:
    """A tracker's webhook secret; without one its webhooks are refused (503)."""
    if secret is None:
        raise Rejected(
            503, f"{tracker} webhooks are not configured (set {variable})", "unconfigured"
        )
    return secret.get_secret_value().encode()


# --- the sources --------------------------------------------------------------------------


async def _github(deps: Deps, headers: Headers, body: bytes, query: Mapping[str, str]) -> Outcome:
    _require_json(headers)
    event = headers.get("x-github-event", "")
    delivery_id = headers.get("x-github-delivery", "")
    if not event:
        raise Rejected(400, "missing X-GitHub-Event header", "bad_request")
    if not _EVENT_NAME.match(event):
        raise Rejected(400, "malformed X-GitHub-Event header", "bad_request")
    if not delivery_id:
        raise Rejected(400, "missing X-GitHub-Delivery header", "bad_request")
    if not _DELIVERY_ID.match(delivery_id):
        raise Rejected(400, "malformed X-GitHub-Delivery header", "bad_request")
    structlog.contextvars.bind_contextvars(delivery_id=delivery_id, event=event)

    secret = deps.settings.github_webhook_secret
    assert secret is not None, "serve refuses to start without a webhook secret"
    if not github_signature_valid(
        secret.get_secret_value().encode(), body, headers.get(GITHUB_SIGNATURE_HEADER)
    ):
        raise Rejected(401, "missing or invalid X-Hub-Signature-256", "bad_signature")

    payload, raw = _json_object(body)
    action, installation_id, repository = _summary(payload)
    structlog.contextvars.bind_contextvars(
        action=action, installation_id=installation_id, repository=repository
    )
    is_ping = event == "ping"
    stored = await _store(
        deps,
        source="github",
        delivery_id=delivery_id,
        event=event,
        payload=payload,
        raw=raw,
        status=DeliveryStatus.IGNORED if is_ping else DeliveryStatus.PENDING,
    )
    if isinstance(stored, Outcome):
        return stored
    if is_ping:
        log.info("ping", zen=payload.get("zen"))
        return Outcome(200, {"status": "pong", "delivery": stored}, "pong")
    return _accepted(stored)


async def _linear(deps: Deps, headers: Headers, body: bytes, query: Mapping[str, str]) -> Outcome:
    _require_json(headers)
    key = _configured(deps.settings.linear_webhook_secret, "Linear", "LINEAR_WEBHOOK_SECRET")
    if not linear_signature_valid(key, body, headers.get(LINEAR_SIGNATURE_HEADER)):
        raise Rejected(401, "missing or invalid Linear-Signature", "bad_signature")

    payload, raw = _json_object(body)
    if not linear_timestamp_fresh(payload.get(LINEAR_TIMESTAMP_FIELD)):
        raise Rejected(401, "stale or missing webhookTimestamp (replayed?)", "stale")
    delivery_id = headers.get(LINEAR_DELIVERY_HEADER, "")
    if not delivery_id:
        raise Rejected(400, "missing Linear-Delivery header", "bad_request")
    if not _UUID.match(delivery_id):
        raise Rejected(400, "malformed Linear-Delivery header", "bad_request")
    kind = payload.get("type")
    event = kind.lower() if isinstance(kind, str) else ""
    if not _EVENT_NAME.match(event):
        raise Rejected(400, "missing or malformed payload type", "bad_request")
    action, _, _ = _summary(payload)
    structlog.contextvars.bind_contextvars(delivery_id=delivery_id, event=event, action=action)

    return await _store_and_accept(
        deps, source="linear", delivery_id=delivery_id, event=event, payload=payload, raw=raw
    )


async def _jira(deps: Deps, headers: Headers, body: bytes, query: Mapping[str, str]) -> Outcome:
    _require_json(headers)
    key = _configured(deps.settings.jira_webhook_secret, "Jira", "JIRA_WEBHOOK_SECRET")
    signature = headers.get(JIRA_SIGNATURE_HEADER)
    if signature is not None:
        if not jira_signature_valid(key, body, signature):
            raise Rejected(401, "invalid X-Hub-Signature", "bad_signature")
    elif not jira_token_valid(key, query.get("token")):
        raise Rejected(
            401, "missing X-Hub-Signature (or the URL's ?token=) for this webhook", "bad_signature"
        )
    payload, raw = _json_object(body)
    name = payload.get("webhookEvent")
    event = name.replace(":", "_").lower() if isinstance(name, str) else ""
    if not _EVENT_NAME.match(event):
        raise Rejected(400, "missing or malformed webhookEvent", "bad_request")
    # Jira Cloud names each delivery; where a setup does not, the body itself does (a
    # replay of the same body is then the same delivery).
    delivery_id = headers.get(JIRA_DELIVERY_HEADER) or (
        "sha256-" + hashlib.sha256(body).hexdigest()[:64]
    )
    if not _DELIVERY_ID.match(delivery_id):
        raise Rejected(400, "malformed X-Atlassian-Webhook-Identifier header", "bad_request")
    structlog.contextvars.bind_contextvars(delivery_id=delivery_id, event=event)
    return await _store_and_accept(
        deps, source="jira", delivery_id=delivery_id, event=event, payload=payload, raw=raw
    )


_Handler = Callable[[Deps, Headers, bytes, Mapping[str, str]], Awaitable[Outcome]]
_HANDLERS: dict[Source, _Handler] = {"github": _github, "linear": _linear, "jira": _jira}
