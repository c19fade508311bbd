"""Webhook intake: verify, store, enqueue, answer (STYLE practice 1). Nothing else happens here."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from redis.exceptions import RedisError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from bot.deps import Deps
from bot.jobs import INGEST_JOB
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

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


class Rejected(Exception):
    """A delivery we answer with a 4xx; `outcome` labels the metric."""

    def __init__(self, status: int, message: str, outcome: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.outcome = outcome


def ingest_job_id(source: str, pk: int) -> str:
    return f"ingest:{source}:{pk}"


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refusing (413) anything over `limit` before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Rejected(400, "malformed Content-Length header", "bad_request")
        if int(declared) > limit:
            raise Rejected(413, f"payload over {limit} bytes", "too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, f"payload over {limit} bytes", "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _require_json(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise Rejected(
            415,
            "Content-Type must be application/json (set the webhook's content type to JSON)",
            "unsupported_media_type",
        )


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


# The payload goes to Postgres as the text GitHub sent: no re-encoding in Python.
_INSERT_DELIVERY = """
INSERT INTO deliveries
    (source, delivery_id, event, action, installation_id, repository, payload, status, attempts)
VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, 0)
ON CONFLICT (source, delivery_id) DO NOTHING
RETURNING id
"""


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

    `raw` is the payload's JSON text as received, when it can be stored as is.
    """
    action, installation_id, repository = _summary(payload)
    text = raw if raw is not None else json.dumps(payload)
    async with deps.intake.acquire() as conn:
        pk: int | None = await conn.fetchval(
            _INSERT_DELIVERY,
            source,
            delivery_id,
            event,
            action,
            installation_id,
            repository,
            text,
            str(status),
        )
    return pk


async def enqueue_ingest(deps: Deps, source: str, pk: int) -> bool:
    """Hand the delivery to the control worker; False if Redis would not take it.

    A stored delivery that missed the queue is not lost: the worker's sweep enqueues
    pending deliveries it finds in Postgres.
    """
    try:
        await deps.redis.enqueue_job(INGEST_JOB, pk, _job_id=ingest_job_id(source, pk))
    except (RedisError, OSError) as exc:
        log.warning("enqueue_failed", delivery_pk=pk, error=type(exc).__name__)
        return False
    return True


Handler = Callable[[Request, Deps], Awaitable[tuple[JSONResponse, str]]]


async def _answer(request: Request, source: str, event: str, handler: Handler) -> JSONResponse:
    """Run a source's handler: a `Rejected` becomes its 4xx, every delivery is counted."""
    started = time.perf_counter()
    deps: Deps = request.app.state.deps
    outcome = "error"
    structlog.contextvars.clear_contextvars()
    try:
        response, outcome = await handler(request, deps)
        return response
    except Rejected as rejected:
        outcome = rejected.outcome
        log.info("webhook_rejected", source=source, status=rejected.status, reason=rejected.message)
        return JSONResponse({"error": rejected.message}, status_code=rejected.status)
    except ClientDisconnect:
        outcome = "client_disconnected"
        return JSONResponse({"error": "client disconnected"}, status_code=400)
    finally:
        label = event if _EVENT_NAME.match(event) else "invalid"
        WEBHOOK_DELIVERIES.labels(source, label, outcome).inc()
        WEBHOOK_ACK_SECONDS.labels(source).observe(time.perf_counter() - started)


def _json_object(body: bytes) -> tuple[dict[str, Any], str | None]:
    """The body as a JSON object, and its text when it can be stored as received."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected(400, f"body is not valid JSON: {exc}", "bad_request") from None
    if not isinstance(payload, dict):
        raise Rejected(400, "body must be a JSON object", "bad_request")
    if b"\\u0000" in body:
        return _strip_nul(payload), None
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
) -> tuple[JSONResponse, str] | int:
    """Store the delivery: its key, or the answer when there is nothing more to do
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
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        log.error("delivery_not_stored", error=type(exc).__name__)
        return (
            JSONResponse({"error": "delivery could not be stored; retry later"}, status_code=503),
            "unavailable",
        )
    if pk is None:
        log.info("delivery_duplicate")
        return JSONResponse({"status": "duplicate"}, status_code=200), "duplicate"
    return pk


async def _accepted(deps: Deps, source: str, pk: int) -> tuple[JSONResponse, str]:
    queued = await enqueue_ingest(deps, source, pk)
    log.info("delivery_accepted", delivery_pk=pk, queued=queued)
    return JSONResponse({"status": "accepted", "delivery": pk}, status_code=202), "accepted"


# --- GitHub -------------------------------------------------------------------------------


async def github_webhook(request: Request) -> JSONResponse:
    """`POST /webhooks/github`."""
    event = request.headers.get("x-github-event", "")

    async def handle(request: Request, deps: Deps) -> tuple[JSONResponse, str]:
        return await _github_webhook(request, deps, event)

    return await _answer(request, "github", event, handle)


async def _github_webhook(request: Request, deps: Deps, event: str) -> tuple[JSONResponse, str]:
    body = await read_body(request)
    _require_json(request)
    delivery_id = request.headers.get("x-github-delivery", "")
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
        secret.get_secret_value().encode(), body, request.headers.get(GITHUB_SIGNATURE_HEADER)
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
    if not isinstance(stored, int):
        return stored
    if is_ping:
        log.info("ping", zen=payload.get("zen"))
        return JSONResponse({"status": "pong", "delivery": stored}, status_code=200), "pong"
    return await _accepted(deps, "github", stored)


# --- Linear -------------------------------------------------------------------------------


async def linear_webhook(request: Request) -> JSONResponse:
    """`POST /webhooks/linear`."""
    # The metric's event label; the stored event is the payload's `type`, which it mirrors.
    event = request.headers.get(LINEAR_EVENT_HEADER, "").lower()
    return await _answer(request, "linear", event, _linear_webhook)


async def _linear_webhook(request: Request, deps: Deps) -> tuple[JSONResponse, str]:
    body = await read_body(request)
    _require_json(request)
    secret = deps.settings.linear_webhook_secret
    if secret is None:
        raise Rejected(
            503, "Linear webhooks are not configured (set LINEAR_WEBHOOK_SECRET)", "unconfigured"
        )
    if not linear_signature_valid(
        secret.get_secret_value().encode(), body, request.headers.get(LINEAR_SIGNATURE_HEADER)
    ):
        raise Rejected(401, "missing or invalid Linear-Signature", "bad_signature")

    payload, raw = _json_object(body)
    if not linear_timestamp_fresh(payload.get(LINEAR_TIMESTAMP_FIELD)):
        raise Rejected(401, "stale or missing webhookTimestamp (replayed?)", "stale")
    delivery_id = request.headers.get(LINEAR_DELIVERY_HEADER, "")
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

    stored = await _store(
        deps, source="linear", delivery_id=delivery_id, event=event, payload=payload, raw=raw
    )
    if not isinstance(stored, int):
        return stored
    return await _accepted(deps, "linear", stored)


async def jira_webhook(request: Request) -> JSONResponse:
    """`POST /webhooks/jira` (`?token=SECRET` for setups that cannot sign)."""
    return await _answer(request, "jira", "jira", _jira_webhook)


async def _jira_webhook(request: Request, deps: Deps) -> tuple[JSONResponse, str]:
    body = await read_body(request)
    _require_json(request)
    secret = deps.settings.jira_webhook_secret
    if secret is None:
        raise Rejected(
            503, "Jira webhooks are not configured (set JIRA_WEBHOOK_SECRET)", "unconfigured"
        )
    key = secret.get_secret_value().encode()
    signature = request.headers.get(JIRA_SIGNATURE_HEADER)
    if signature is not None:
        if not jira_signature_valid(key, body, signature):
            raise Rejected(401, "invalid X-Hub-Signature", "bad_signature")
    elif not jira_token_valid(key, request.query_params.get("token")):
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
    delivery_id = request.headers.get(JIRA_DELIVERY_HEADER) or (
        "sha256-" + hashlib.sha256(body).hexdigest()[:64]
    )
    if not _DELIVERY_ID.match(delivery_id):
        raise Rejected(400, "malformed X-Atlassian-Webhook-Identifier header", "bad_request")
    structlog.contextvars.bind_contextvars(delivery_id=delivery_id, event=event)
    stored = await _store(
        deps, source="jira", delivery_id=delivery_id, event=event, payload=payload, raw=raw
    )
    if not isinstance(stored, int):
        return stored
    return await _accepted(deps, "jira", stored)
