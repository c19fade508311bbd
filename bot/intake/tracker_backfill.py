"""Backfill of Linear teams and Jira projects into the mirror (`openase sync linear:ENG`,
`openase sync jira:PROJ`): every issue, page by page, each page in its own transaction.

Linear pages with its cursor, Jira with the search API's token; what the mirror already
holds newer (a webhook that overtook the backfill) is kept, as with GitHub's backfill.
A rate-limited answer stops the run with the time to try again; pages already applied stay.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from adapters.base import TicketUpserted
from bot.config.control import ControlConfig
from bot.deps import Deps
from bot.errors import ConfigError
from bot.intake import mirror
from bot.registry import JIRA, LINEAR, TrackerClients
from bot.registry import jira_ticket_from_issue as jira_ticket
from bot.registry import linear_ticket_from_issue as linear_ticket
from harness_store.db import transaction

log = structlog.get_logger(__name__)

PAGE_SIZE = 50


@dataclass
class TrackerSyncReport:
    source: str
    scope: str
    issues: int = 0
    pages: int = 0


async def sync_tracker(
    deps: Deps, clients: TrackerClients, control: ControlConfig, source: str, scope: str
) -> TrackerSyncReport:
    """Mirror every issue of a Linear team or Jira project named by its key."""
    if not scope or any(char in scope for char in "\"'\\ \n"):
        raise ConfigError(f"{source}: {scope!r} is not a team or project key")
    if source == LINEAR:
        return await _sync_linear(deps, clients, scope)
    if source == JIRA:
        return await _sync_jira(deps, clients, control, scope)
    raise ConfigError(f"unknown tracker {source!r}: expected linear or jira")


async def _sync_linear(deps: Deps, clients: TrackerClients, team: str) -> TrackerSyncReport:
    linear = clients.linear_client()
    report = TrackerSyncReport(LINEAR, team)
    cursor: str | None = None
    while True:
        page = await linear.issues_page(team, after=cursor, first=PAGE_SIZE)
        events = [
            TicketUpserted(linear_ticket(issue, path=f"issues[{i}]"), "backfill")
            for i, issue in enumerate(page.issues)
        ]
        await _apply(deps, events)
        report.pages += 1
        report.issues += len(events)
        log.info("tracker_backfill_page", source=LINEAR, scope=team, issues=len(events))
        if page.next_cursor is None or not page.issues:
            return report
        cursor = page.next_cursor


async def _sync_jira(
    deps: Deps, clients: TrackerClients, control: ControlConfig, project: str
) -> TrackerSyncReport:
    jira = clients.jira_client()
    report = TrackerSyncReport(JIRA, project)
    jql = f'project = "{project}"'
    if control.jira.backfill_jql:
        jql += f" AND ({control.jira.backfill_jql})"
    token: str | None = None
    while True:
        page = await jira.search(jql + " ORDER BY updated DESC", token=token, limit=PAGE_SIZE)
        events = [
            TicketUpserted(jira_ticket(issue, f"issues[{i}]"), "backfill")
            for i, issue in enumerate(page.issues)
        ]
        await _apply(deps, events)
        report.pages += 1
        report.issues += len(events)
        log.info("tracker_backfill_page", source=JIRA, scope=project, issues=len(events))
        if page.next_token is None or not page.issues:
            return report
        token = page.next_token


async def _apply(deps: Deps, events: list[TicketUpserted]) -> None:
    if not events:
        return
    async with transaction(deps.sessions) as session:
        await mirror.apply(session, events)
