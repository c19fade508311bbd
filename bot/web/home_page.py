"""`GET /`: the home page. Until the deployment has everything it needs it shows the
checklist `openase doctor` prints (bot/api/checklist.py), each item with its fix; then the
counts of what the mirror holds, and links. Counts only, no titles or names, so the counts
stay open when reads need a sign-in; the checklist (runner names, paths) is for readers.

The checklist asks GitHub (the App, its delivery log): it is kept for CHECKLIST_SECONDS per
app, so a page that is reloaded does not spend the App's rate limit.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import structlog
from sqlalchemy import ColumnElement, ScalarSelect, func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from bot.api.checklist import Check, blocked, checklist
from bot.api.request import admin_token, deps_of
from bot.deps import Deps
from bot.tables.mirror import Delivery, DeliveryStatus, Installation, Repository, Ticket
from bot.web.pages import html_endpoint, page, reads_public, settings_of
from bot.web.session import current
from harness_store.db import Base

log = structlog.get_logger(__name__)

COUNTS_TIMEOUT_SECONDS = 2.0
CHECKLIST_SECONDS = 30.0
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


@dataclass(frozen=True)
class _Kept:
    at: float
    checks: list[Check]


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


async def _home(request: Request) -> Response:
    deps = deps_of(request)
    settings = settings_of(request)
    try:
        async with asyncio.timeout(COUNTS_TIMEOUT_SECONDS):
            counts: dict[str, int] | None = await count_rows(deps)
    except (TimeoutError, OSError, SQLAlchemyError) as exc:
        log.warning("home_counts_unavailable", error=type(exc).__name__)
        counts = None
    may_read = reads_public(settings) or current(request, settings) is not None
    checks = await _checklist(request, deps) if may_read else None
    context = {
        "title": "OpenASE",
        "release": _release(),
        "counts": counts,
        "checks": checks,
        "ready": checks is not None and all(check.ok for check in checks),
        "blocked": checks is not None and blocked(checks),
        "links": LINKS,
        "token_required": admin_token(settings) is not None,
    }
    return page(request, "home.html", context, 200 if counts is not None else 503)


home = html_endpoint(_home)


async def _checklist(request: Request, deps: Deps) -> list[Check]:
    """The checklist, asked again at most every CHECKLIST_SECONDS for this app."""
    kept: _Kept | None = getattr(request.app.state, "home_checklist", None)
    if kept is not None and time.monotonic() - kept.at < CHECKLIST_SECONDS:
        return kept.checks
    checks = await checklist(deps.settings, deps)
    request.app.state.home_checklist = _Kept(time.monotonic(), checks)
    return checks


def _release() -> str:
    try:
        return version("openase")
    except PackageNotFoundError:
        return "unknown"
