"""The JSON API, health and metrics: every route of the web process but webhooks and pages.

Routes:
    GET /api/v1/tickets             ?repo=OWNER/NAME &state= &label= (repeatable) &source=
                                    &limit= &cursor=         (bot/api/tickets.py)
    GET /api/v1/tickets/{id}        labels, comments, linked PRs, deliveries that touched it
    GET /api/v1/deliveries          ?status= &event= &source= &ticket= &limit= &cursor=
    GET /api/v1/deliveries/{id}     with the payload         (bot/api/deliveries.py)
    GET /api/v1/tickets/{id}/activity  ?limit= &cursor=, oldest first (bot/api/activity.py)
    GET /api/v1/runs/{id}           run, result, first events ?events_limit=
    GET /api/v1/runs/{id}/events    ?after=SEQ &limit=; SSE with Accept: text/event-stream
                                                             (bot/api/runs.py)
    GET /api/v1/harnesses           names, current versions, who uses them
    GET /api/v1/harnesses/{name}    the current version; .../versions, .../versions/{n},
                                    .../diff?from=A&to=B
    POST /api/v1/harnesses/{name}/versions, POST .../rollback   (admin token required)
    The same under /api/v1/skills                            (bot/api/harnesses.py)
    GET /healthz, GET /metrics                               (bot/api/health.py)

Authentication: when OPENASE_ADMIN_TOKEN is set, every `/api/v1/` request must carry
`Authorization: Bearer <token>` (compared in constant time); otherwise it gets 401 with
`WWW-Authenticate: Bearer`. When it is unset the API is open to anyone who can reach the
port, which is why the server binds 127.0.0.1 unless told otherwise: set a token before
binding a public address. Writes (the harness store's POSTs) are refused with 403 while no
token is set: reads may be open, changing what agents are told may not. `/healthz`,
`/metrics` and the home page stay open either way (probes and Prometheus do not carry
tokens, and they show no ticket content).

Listings are paged with keysets: `limit` (default 50, at most 200) and the opaque
`next_cursor` of the previous page, null on the last one. Every malformed parameter,
unknown parameter included, is a 400 whose `error` names it.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.api.activity import ticket_activity
from bot.api.deliveries import get_delivery, list_deliveries
from bot.api.harnesses import store_routes
from bot.api.health import healthz, metrics_endpoint
from bot.api.request import admin_token
from bot.api.runs import get_run, run_events
from bot.api.tickets import get_ticket, list_tickets
from bot.deps import Deps


def routes() -> list[BaseRoute]:
    """Health, metrics and the JSON API (the pages, the home page among them, are bot/web's)."""
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Mount(
            "/api/v1",
            routes=[
                Route("/tickets", list_tickets, methods=["GET"]),
                Route("/tickets/{id}", get_ticket, methods=["GET"]),
                Route("/tickets/{id}/activity", ticket_activity, methods=["GET"]),
                Route("/runs/{id}", get_run, methods=["GET"]),
                Route("/runs/{id}/events", run_events, methods=["GET"]),
                Route("/deliveries", list_deliveries, methods=["GET"]),
                Route("/deliveries/{id}", get_delivery, methods=["GET"]),
                *store_routes(),
            ],
            # On the mount, not per route: an unknown /api/v1 path is refused before it
            # reveals which paths exist.
            middleware=[Middleware(RequireAdminToken)],
        ),
    ]


class RequireAdminToken:
    """ASGI middleware: the bearer-token check described in the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Settings come from the app's Deps, so one process can serve apps with and
        # without a token (tests do).
        deps: Deps = scope["app"].state.deps
        expected = admin_token(deps.settings)
        if expected is None:
            await self.app(scope, receive, send)
            return
        scheme, _, given = Headers(scope=scope).get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            response = _unauthorized("missing bearer token", 'Bearer realm="openase"')
        elif not hmac.compare_digest(given.strip().encode(), expected.encode()):
            response = _unauthorized(
                "invalid bearer token", 'Bearer realm="openase", error="invalid_token"'
            )
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


def _unauthorized(message: str, challenge: str) -> JSONResponse:
    return JSONResponse(
        {"error": f"Authorization: {message}"},
        status_code=401,
        headers={"WWW-Authenticate": challenge},
    )
