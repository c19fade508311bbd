"""`GET /`: a small page saying the control plane runs, with counts and links.

Deliberately framework-free; every interpolated value goes through `html.escape`.
It shows counts only (no titles, no names), so it stays open when the API needs a token.
"""

from __future__ import annotations

import asyncio
import html
from importlib.metadata import PackageNotFoundError, version

import structlog
from sqlalchemy import ColumnElement, ScalarSelect, func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from bot.api.request import admin_token, deps_of
from bot.deps import Deps
from bot.tables.mirror import Delivery, DeliveryStatus, Installation, Repository, Ticket
from harness_store.db import Base

log = structlog.get_logger(__name__)

COUNTS_TIMEOUT_SECONDS = 2.0
LINKS = (
    ("/tickets", "tickets board"),
    ("/harnesses", "harnesses"),
    ("/skills", "skills"),
    ("/api/v1/tickets", "tickets (JSON)"),
    ("/api/v1/deliveries?status=failed", "failed deliveries (JSON)"),
    ("/api/v1/deliveries", "all deliveries (JSON)"),
    ("/healthz", "health"),
    ("/metrics", "Prometheus metrics"),
)


async def count_rows(deps: Deps) -> dict[str, int]:
    """The page's counts, in one round trip."""

    def count(model: type[Base], *where: ColumnElement[bool]) -> ScalarSelect[int]:
        return select(func.count()).select_from(model).where(*where).scalar_subquery()

    counts = {
        "installations": count(Installation, Installation.deleted.is_(False)),
        "repositories": count(Repository, Repository.active.is_(True)),
        "open tickets": count(Ticket, Ticket.state == "open"),
        "closed tickets": count(Ticket, Ticket.state == "closed"),
        "pending deliveries": count(Delivery, Delivery.status == DeliveryStatus.PENDING),
        "failed deliveries": count(Delivery, Delivery.status == DeliveryStatus.FAILED),
    }
    async with deps.engine.connect() as conn:
        row = (await conn.execute(select(*counts.values()))).one()
    return dict(zip(counts, (int(v) for v in row), strict=True))


async def home(request: Request) -> Response:
    deps = deps_of(request)
    try:
        async with asyncio.timeout(COUNTS_TIMEOUT_SECONDS):
            counts: dict[str, int] | None = await count_rows(deps)
    except (TimeoutError, OSError, SQLAlchemyError) as exc:
        log.warning("home_counts_unavailable", error=type(exc).__name__)
        counts = None
    token_required = admin_token(deps.settings) is not None
    return HTMLResponse(render(counts, token_required), status_code=200 if counts else 503)


def render(counts: dict[str, int] | None, token_required: bool) -> str:
    try:
        release = version("openase")
    except PackageNotFoundError:
        release = "unknown"
    e = html.escape
    if counts is None:
        table = "<p><strong>The database is unreachable</strong>; see /healthz.</p>"
    else:
        rows = "".join(f"<tr><th>{e(k)}</th><td>{v:d}</td></tr>" for k, v in counts.items())
        table = f"<table>{rows}</table>"
    links = "".join(f'<li><a href="{e(href)}">{e(label)}</a></li>' for href, label in LINKS)
    auth = (
        "<p>The API requires <code>Authorization: Bearer &lt;OPENASE_ADMIN_TOKEN&gt;</code>.</p>"
        if token_required
        else ""
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>OpenASE</title></head><body>"
        f"<h1>OpenASE is running</h1><p>version {e(release)}</p>"
        f"{table}<h2>Links</h2><ul>{links}</ul>{auth}</body></html>"
    )
