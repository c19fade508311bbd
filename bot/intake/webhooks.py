"""`POST /webhooks/github`, `/webhooks/linear`, `/webhooks/jira`: read the body, hand it to
the intake (bot/intake/deliveries.py: verify, store), answer. Nothing else
happens here (STYLE practice 1)."""

from __future__ import annotations

import time

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from bot.deps import Deps
from bot.intake.deliveries import (
    MAX_BODY_BYTES,
    Outcome,
    Rejected,
    Source,
    count_delivery,
    receive,
    refused,
)


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


async def github_webhook(request: Request) -> JSONResponse:
    """`POST /webhooks/github`."""
    return await _answer(request, "github")


async def linear_webhook(request: Request) -> JSONResponse:
    """`POST /webhooks/linear`."""
    return await _answer(request, "linear")


async def jira_webhook(request: Request) -> JSONResponse:
    """`POST /webhooks/jira` (`?token=SECRET` for setups that cannot sign)."""
    return await _answer(request, "jira")


async def _answer(request: Request, source: Source) -> JSONResponse:
    started = time.perf_counter()
    deps: Deps = request.app.state.deps
    try:
        body = await read_body(request)
    except Rejected as rejected:
        outcome = refused(source, rejected)
        count_delivery(source, request.headers, outcome, started)
    except ClientDisconnect:
        outcome = Outcome(400, {"error": "client disconnected"}, "client_disconnected")
        count_delivery(source, request.headers, outcome, started)
    else:
        outcome = await receive(
            deps, source, request.headers, body, query=request.query_params, started=started
        )
    return JSONResponse(outcome.answer, status_code=outcome.status)
