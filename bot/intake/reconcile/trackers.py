"""Reconciling Linear teams and Jira projects (those the control config routes): their
issues updated since each one's mark, least recently updated first — Linear filtering on
`updatedAt`, Jira with `updated >=` in JQL.

Neither answers conditional requests, so progress is kept page by page instead: the mark
moves to the newest update of each page applied, and a pass cut short (the page bound, a
rate limit) leaves nothing to read twice but the overlap. A rate limit holds for the whole
tracker (one API key, one account), so it ends that tracker's pass.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func, select

from adapters.base import TicketInfo, TicketUpserted
from adapters.errors import AdapterError, RateLimited
from bot.deps import Deps
from bot.intake.reconcile.changes import READ_BACK, apply_change
from bot.intake.reconcile.marks import OVERLAP, advance, mark_name, starting_point
from bot.intake.reconcile.report import SourceReport
from bot.registry import JIRA, LINEAR, JiraClient, LinearClient
from bot.registry import jira_ticket_from_issue as jira_ticket
from bot.registry import linear_ticket_from_issue as linear_ticket
from bot.tables.mirror import Ticket

log = structlog.get_logger(__name__)

PAGE_SIZE = 50  # Linear's default page; 50 issues with their labels stay within its limits
MAX_PAGES = 20  # pages with changes a pass applies of a team or project: 1,000 issues

# One page: webhook-shaped issues and the token of the next page (None on the last).
PageReader = Callable[[str | None], Awaitable[tuple[list[dict[str, Any]], str | None]]]


@dataclass(frozen=True)
class Paging:
    """How much of a tracker one pass reads: pages of `size` issues, `pages` per scope."""

    size: int = PAGE_SIZE
    pages: int = MAX_PAGES


async def reconcile_linear(
    deps: Deps,
    linear: LinearClient,
    teams: Sequence[str],
    now: datetime,
    paging: Paging = Paging(),
) -> SourceReport:
    """One pass over the Linear teams `teams` (their keys)."""

    def reader(team: str, since: datetime) -> PageReader:
        async def read(cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
            page = await linear.issues_changed_since(team, since, before=cursor, last=paging.size)
            return page.issues, page.next_cursor

        return read

    return await _reconcile(deps, LINEAR, teams, "team_key", reader, linear_ticket, now, paging)


async def reconcile_jira(
    deps: Deps,
    jira: JiraClient,
    projects: Sequence[str],
    now: datetime,
    paging: Paging = Paging(),
) -> SourceReport:
    """One pass over the Jira projects `projects` (their keys)."""

    def reader(project: str, since: datetime) -> PageReader:
        async def read(token: str | None) -> tuple[list[dict[str, Any]], str | None]:
            page = await jira.changed_since(project, since, token=token, limit=paging.size, now=now)
            return page.issues, page.next_token

        return read

    def ticket(issue: dict[str, Any], path: str) -> TicketInfo:
        return jira_ticket(issue, path)

    return await _reconcile(deps, JIRA, projects, "project_key", reader, ticket, now, paging)


async def _reconcile(
    deps: Deps,
    source: str,
    scopes: Sequence[str],
    scope_field: str,
    reader: Callable[[str, datetime], PageReader],
    ticket_of: Callable[[dict[str, Any], str], TicketInfo],
    now: datetime,
    paging: Paging,
) -> SourceReport:
    report = SourceReport()
    for index, scope in enumerate(scopes):
        structlog.contextvars.bind_contextvars(source=source, scope=scope)
        try:
            name = mark_name(source, scope)

            async def newest_known(scope: str = scope) -> datetime | None:
                return await _newest_known(deps, source, scope_field, scope)

            known = await starting_point(deps, name, newest_known, now)
            read = reader(scope, known - OVERLAP)
            if await _scope(deps, name, read, ticket_of, paging.pages, report):
                report.scopes += 1
            else:
                report.cut_short.append(scope)
        except RateLimited as exc:
            report.cut_short.extend(scopes[index:])
            log.warning(
                "reconcile_rate_limited", source=source, retry_after=exc.retry_at.isoformat()
            )
            break
        except (AdapterError, ValueError) as exc:
            # A project key the site does not know, a bad answer: the others go on.
            report.cut_short.append(scope)
            log.warning("reconcile_scope_skipped", source=source, scope=scope, error=str(exc))
        finally:
            structlog.contextvars.unbind_contextvars("source", "scope")
    return report


async def _scope(
    deps: Deps,
    name: str,
    read: PageReader,
    ticket_of: Callable[[dict[str, Any], str], TicketInfo],
    max_pages: int,
    report: SourceReport,
) -> bool:
    """Apply the scope's changes page by page; False when the page bound cut it short.
    Only pages that changed something count against it: a mass edit stamped within the
    overlap would otherwise fill every pass with what the last one read."""
    token: str | None = None
    budget = max_pages
    while True:
        issues, token = await read(token)
        report.pages += 1
        newest: datetime | None = None
        changed = 0
        for i, issue in enumerate(issues):
            ticket = ticket_of(issue, f"issues[{i}]")
            changed += await apply_change(deps, TicketUpserted(ticket, READ_BACK), None)
            if ticket.updated_at is not None and (newest is None or ticket.updated_at > newest):
                newest = ticket.updated_at
        report.changes += changed
        if newest is not None:
            # Everything older is read: the pages come least recently updated first.
            await advance(deps, name, newest)
        budget -= changed > 0
        if token is None:
            return True
        if budget <= 0:
            return False


async def _newest_known(deps: Deps, source: str, scope_field: str, scope: str) -> datetime | None:
    """The newest change the mirror holds of a team's or project's tickets."""
    async with deps.sessions() as session:
        newest: datetime | None = await session.scalar(
            select(func.max(Ticket.external_updated_at)).where(
                Ticket.source == source, Ticket.tracker[scope_field].astext == scope
            )
        )
        return newest
