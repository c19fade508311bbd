"""`GET /healthz` and `GET /metrics`: for load balancers and Prometheus, never behind a token.

Health answers with the name of what failed and the kind of failure only: exception
messages can carry hosts, and URLs can carry passwords.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot import metrics
from bot.api import run_metrics
from bot.api.request import deps_of
from bot.deps import Deps
from bot.servers.outages import Store

log = structlog.get_logger(__name__)

# Short enough for a load balancer's probe (often 5 s) to get our answer, not its own timeout.
HEALTH_TIMEOUT_SECONDS = 2.0


async def healthz(request: Request) -> Response:
    """ "ok" when Postgres and Redis both answer; "degraded" when one does not, with how long
    it has been away. 503 only while Postgres is: without it no webhook can be stored, while
    without Redis they are (and wait in Postgres). The process itself recovers when the
    store is back: point a load balancer's readiness here, not a restart policy."""
    deps = deps_of(request)
    checks = await check_health(deps)
    healthy = all(result == "ok" for result in checks.values())
    body: dict[str, object] = {"status": "ok" if healthy else "degraded", "checks": checks}
    away = deps.outages.away()
    if away:
        body["away_seconds"] = {store: round(seconds, 1) for store, seconds in away.items()}
    return JSONResponse(
        body,
        status_code=503 if checks["postgres"] != "ok" else 200,
        headers={"Cache-Control": "no-store"},
    )


async def check_health(deps: Deps, *, time_limit: float = HEALTH_TIMEOUT_SECONDS) -> dict[str, str]:
    """Each store's state: "ok", "timeout after Ns" or "error: <exception class>"."""
    postgres, redis = await asyncio.gather(
        _check(deps, "postgres", _ping_postgres(deps), time_limit),
        _check(deps, "redis", _ping_redis(deps), time_limit),
    )
    return {"postgres": postgres, "redis": redis}


async def _ping_postgres(deps: Deps) -> None:
    async with deps.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _ping_redis(deps: Deps) -> None:
    await deps.redis.ping()


async def _check(deps: Deps, name: Store, probe: Awaitable[object], time_limit: float) -> str:
    # A store that is away is said once, by the outage (and watched until back); a probe
    # every few seconds must not log a line each.
    try:
        async with asyncio.timeout(time_limit):
            await probe
    except TimeoutError:
        deps.outages.went_away(name, "TimeoutError")
        return f"timeout after {time_limit:g}s"
    except Exception as exc:  # any failure is an answer here, not a crash
        if deps.outages.noticed(exc) is None:
            log.warning("health_check_failed", check=name, error=type(exc).__name__)
        return f"error: {type(exc).__name__}"
    return "ok"


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text exposition; answers even when Redis or Postgres does not."""
    body = await metrics.scrape(deps_of(request), sources=run_metrics.SOURCES)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
