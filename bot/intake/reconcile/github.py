"""Reconciling GitHub: every active repository with tickets in the mirror, its issues and
then its pull requests updated since the repository's mark.

The lists are asked with the ETags of their pages (table `http_cache`), and `since` only
moves when something changed: a repository where nothing happened costs two 304s, which
GitHub does not count against the rate limit. The mark moves after a pass that read both
lists to the end, to the newest update they showed; a pass cut short (the page bound, a
rate limit, an error) leaves it, and the next one asks the same URLs again, its pages
applied already coming back as free 304s.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import structlog
from sqlalchemy import exists, func, select

from adapters.base import CodeHost, PayloadError, PullRequestChanged, RepoInfo, TicketUpserted
from adapters.errors import AdapterError, RateLimited
from bot.deps import Deps
from bot.intake.backfill import PostgresEtagStore
from bot.intake.reconcile.changes import apply_change, updated_at
from bot.intake.reconcile.marks import OVERLAP, advance, mark_name, starting_point
from bot.intake.reconcile.report import SourceReport
from bot.registry import Page
from bot.tables.mirror import Installation, PullRequest, Repository, Ticket

log = structlog.get_logger(__name__)

SOURCE = "github"
# Fresh (not 304) pages one repository may cost a pass, per list: 1,000 issues or PRs.
MAX_PAGES = 10
EPOCH = datetime.fromtimestamp(0, UTC)
C = TypeVar("C", TicketUpserted, PullRequestChanged)


@dataclass(frozen=True)
class _Repo:
    info: RepoInfo
    installation_id: int


async def reconcile_github(
    deps: Deps, github: CodeHost, now: datetime, *, max_pages: int = MAX_PAGES
) -> SourceReport:
    """One pass over every repository the App can still reach that has tickets."""
    report = SourceReport()
    limited: set[int] = set()  # installations out of rate limit: their repositories wait
    for repo in await _repositories(deps):
        if repo.installation_id in limited:
            report.cut_short.append(repo.info.full_name)
            continue
        structlog.contextvars.bind_contextvars(
            repository=repo.info.full_name, installation_id=repo.installation_id
        )
        try:
            if not await _repository(deps, github, repo, now, max_pages, report):
                report.cut_short.append(repo.info.full_name)
        except RateLimited as exc:
            limited.add(repo.installation_id)
            report.cut_short.append(repo.info.full_name)
            log.warning(
                "reconcile_rate_limited",
                installation_id=repo.installation_id,
                retry_after=exc.retry_at.isoformat(),
            )
        except (AdapterError, PayloadError) as exc:
            # Uninstalled, no longer accessible, renamed away, GitHub failing: this one waits.
            report.cut_short.append(repo.info.full_name)
            log.warning(
                "reconcile_repository_skipped", repository=repo.info.full_name, error=str(exc)
            )
        finally:
            structlog.contextvars.unbind_contextvars("repository", "installation_id")
    return report


async def _repository(
    deps: Deps, github: CodeHost, repo: _Repo, now: datetime, max_pages: int, report: SourceReport
) -> bool:
    """Read the repository's changes back; False when the pass was cut short."""
    name = mark_name(SOURCE, repo.info.id)

    async def newest_known() -> datetime | None:
        return await _newest_known(deps, repo.info.id)

    known = await starting_point(deps, name, newest_known, now)
    since = known - OVERLAP
    etags = PostgresEtagStore(deps.sessions)
    newest = known
    # Issues before pull requests: a PR's closing references link to tickets mirrored.
    issues = github.issues_changed_since(repo.info, repo.installation_id, since, etags)
    read = await _read(deps, issues, repo.installation_id, max_pages, report)
    if read is None:
        return False
    newest = max(newest, read)
    pulls = github.pull_requests_changed_since(repo.info, repo.installation_id, since, etags)
    read = await _read(deps, pulls, repo.installation_id, max_pages, report)
    if read is None:
        return False
    newest = max(newest, read)
    # Unchanged when nothing changed: the next pass asks the same URLs, and gets 304s.
    await advance(deps, name, newest)
    report.scopes += 1
    return True


async def _read(
    deps: Deps,
    pages: AsyncGenerator[Page[C], None],
    installation_id: int,
    max_pages: int,
    report: SourceReport,
) -> datetime | None:
    """Apply a list's changes; the newest update its fresh pages showed (the epoch when they
    showed none), or None when the page bound cut the list short."""
    newest = EPOCH
    fresh = 0
    # aclosing: an error closes the pager at once, so the page it was on keeps no ETag.
    async with aclosing(pages):
        async for page in pages:
            report.pages += 1
            if page.not_modified:
                report.unchanged += 1
                continue
            for change in page.items:
                newest = max(newest, updated_at(change) or EPOCH)
                report.changes += await apply_change(deps, change, installation_id)
            fresh += 1
            if fresh >= max_pages and page.next_url is not None:
                return None
    return newest


async def _repositories(deps: Deps) -> list[_Repo]:
    """Active repositories of live installations with GitHub tickets in the mirror."""
    has_tickets = exists().where(Ticket.repository_id == Repository.id, Ticket.source == SOURCE)
    async with deps.sessions() as session:
        rows = await session.execute(
            select(Repository)
            .join(Installation, Installation.id == Repository.installation_id)
            .where(
                Repository.active.is_(True),
                Installation.deleted.is_(False),
                Installation.suspended.is_(False),
                has_tickets,
            )
            .order_by(Repository.id)
        )
        return [
            _Repo(
                info=RepoInfo(
                    id=row.id,
                    full_name=row.full_name,
                    private=row.private,
                    default_branch=row.default_branch,
                    clone_url=row.clone_url,
                    html_url=row.html_url,
                ),
                installation_id=int(row.installation_id or 0),
            )
            for row in rows.scalars()
        ]


async def _newest_known(deps: Deps, repo_id: int) -> datetime | None:
    """The newest change the mirror holds of the repository's issues and pull requests."""
    async with deps.sessions() as session:
        tickets = await session.scalar(
            select(func.max(Ticket.external_updated_at)).where(
                Ticket.repository_id == repo_id, Ticket.source == SOURCE
            )
        )
        pulls = await session.scalar(
            select(func.max(PullRequest.external_updated_at)).where(
                PullRequest.repository_id == repo_id
            )
        )
    known = [moment for moment in (tickets, pulls) if moment is not None]
    return max(known) if known else None
