"""The Starlette application: webhooks, the web page, the JSON API, health and metrics.

The lifespan builds the shared clients once and stores them on `app.state.deps`
(nothing is created at import time).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from bot.api import routes as api
from bot.deps import Deps, build_deps
from bot.intake.webhooks import github_webhook, jira_webhook, linear_webhook
from bot.settings import Settings
from bot.web.routes import web_routes


def routes() -> list[BaseRoute]:
    return [
        Route("/webhooks/github", github_webhook, methods=["POST"]),
        Route("/webhooks/linear", linear_webhook, methods=["POST"]),
        Route("/webhooks/jira", jira_webhook, methods=["POST"]),
        *api.routes(),
        *web_routes(),
    ]


def create_app(
    settings: Settings,
    *,
    database_url: str,
    redis_url: str,
    deps: Deps | None = None,
) -> Starlette:
    """An app that connects to the given Postgres and Redis when it starts.

    With `deps`, the app uses those clients (shared with an in-process worker, or a test)
    and leaves closing them to their owner.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if deps is not None:
            yield
            return
        own = await build_deps(settings, database_url=database_url, redis_url=redis_url)
        app.state.deps = own
        # Everything imported and built so far lives as long as the process: moved out of
        # the collector's sight, a full collection (which a page of a few hundred rows sets
        # off) no longer walks ~150k objects (`make bench-web`: board p90 150 -> ~40 ms).
        gc.freeze()
        try:
            yield
        finally:
            await own.close()

    app = Starlette(routes=routes(), lifespan=lifespan)
    if deps is not None:
        app.state.deps = deps
    return app
