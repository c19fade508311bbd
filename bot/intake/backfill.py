"""Backfill: page a repository's open issues and PRs into the mirror (issue #2, item 7).

Pages go through the same normalized events and `mirror.apply` as webhooks, one
transaction per page. The mirror never moves a row backwards, so a backfill racing newer
webhooks is harmless. ETags per page URL (table `http_cache`) make a repeated sync cost
almost nothing: GitHub answers 304 for unchanged pages and does not count them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import structlog
from arq import Retry
from sqlalchemy import func as sql
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.base import (
    CodeHost,
    InstallationChanged,
    NormalizedEvent,
    PayloadError,
    RepositoryChanged,
)
from adapters.errors import AdapterError, RateLimited, TransientError
from bot.deps import Deps
from bot.errors import ConfigError, OpenaseError
from bot.intake import mirror
from bot.jobs import BACKFILL_JOB
from bot.registry import CachedPage, Page
from bot.tables.mirror import HttpCacheEntry, Installation, Repository
from harness_store.db import transaction

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=NormalizedEvent)

# Rate-limit retries of one job can wait an hour each; a job should outlive several.
BACKFILL_MAX_TRIES = 12
TRANSIENT_BACKOFF_MAX = 300.0
# `openase sync` waits this long for a rate limit to reset, printing why, before giving up.
SYNC_MAX_WAIT = timedelta(minutes=15)
SYNC_TRANSIENT_RETRIES = 3


class SyncFailed(OpenaseError):
    """`openase sync` could not complete; the message says why and what to do."""


@dataclass
class SyncReport:
    """What one backfill did. `pages_fetched` counts every page asked for, 304s included."""

    repository: str
    issues: int = 0
    pull_requests: int = 0
    pages_fetched: int = 0
    pages_unchanged: int = 0


class PostgresEtagStore:
    """The adapters' `EtagStore` over the `http_cache` table, one short transaction each."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, url: str) -> CachedPage | None:
        async with self._sessions() as session:
            row = await session.get(HttpCacheEntry, url)
            return None if row is None else CachedPage(etag=row.etag, next_url=row.next_url)

    async def put(self, url: str, page: CachedPage) -> None:
        values = {"key": url, "etag": page.etag, "next_url": page.next_url}
        statement = insert(HttpCacheEntry).values(values)
        async with transaction(self._sessions) as session:
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=[HttpCacheEntry.key],
                    set_={
                        "etag": statement.excluded.etag,
                        "next_url": statement.excluded.next_url,
                        "fetched_at": sql.now(),
                    },
                )
            )


async def backfill_repository(
    deps: Deps, repo: int | str, *, github: CodeHost | None = None, use_etags: bool = True
) -> SyncReport:
    """Mirror the open issues and PRs of `repo` (a mirrored repository id, or OWNER/REPO)."""
    github = github or deps.github_app()
    full_name, installation_id = await _locate(deps, github, repo)
    info = await github.repository(full_name, installation_id)
    structlog.contextvars.bind_contextvars(
        repository=info.full_name, installation_id=installation_id
    )
    event = RepositoryChanged(action="backfill", repo=info, installation_id=installation_id)
    await _apply(deps, [event], installation_id)
    report = SyncReport(repository=info.full_name)
    etags = PostgresEtagStore(deps.sessions) if use_etags else None
    # Issues before PRs: a PR's closing references link to tickets already mirrored.
    issues = github.open_issues(info, installation_id, etags)
    report.issues = await _apply_pages(deps, issues, installation_id, report)
    pulls = github.open_pull_requests(info, installation_id, etags)
    report.pull_requests = await _apply_pages(deps, pulls, installation_id, report)
    log.info("backfill_done", **vars(report))
    return report


async def _locate(deps: Deps, github: CodeHost, repo: int | str) -> tuple[str, int]:
    """The repository's name and installation: from the mirror, else asked as the App."""
    async with deps.sessions() as session:
        where = (
            Repository.id == repo
            if isinstance(repo, int)
            else sql.lower(Repository.full_name) == repo.lower()
        )
        row = (
            await session.execute(
                select(Repository.full_name, Repository.installation_id, Installation.deleted)
                .outerjoin(Installation, Installation.id == Repository.installation_id)
                .where(where)
                .order_by(Repository.active.desc())
                .limit(1)
            )
        ).first()
    if row is None and isinstance(repo, int):
        raise LookupError(f"repository {repo} is not in the mirror; sync it by OWNER/REPO")
    full_name = row.full_name if row is not None else str(repo)
    if row is not None and row.installation_id is not None and not row.deleted:
        return full_name, int(row.installation_id)
    installation = await github.repo_installation(full_name)
    # Record the installation (with its account) before rows refer to it.
    event = InstallationChanged(action="created", installation=installation)
    await _apply(deps, [event], installation.id)
    return full_name, installation.id


async def _apply_pages(
    deps: Deps, pages: AsyncGenerator[Page[E], None], installation_id: int, report: SyncReport
) -> int:
    """Apply each page in its own transaction; returns how many items were applied."""
    applied = 0
    # aclosing: a failed page closes the pager at once, so it never stores that page's ETag.
    async with aclosing(pages):
        async for page in pages:
            report.pages_fetched += 1
            report.pages_unchanged += int(page.not_modified)
            log.debug(
                "backfill_page", url=page.url, items=len(page.items), unchanged=page.not_modified
            )
            await _apply(deps, page.items, installation_id)
            applied += len(page.items)
    return applied


async def _apply(deps: Deps, events: Sequence[NormalizedEvent], installation_id: int) -> None:
    if not events:
        return
    async with transaction(deps.sessions) as session:
        await mirror.apply(session, events, installation_id=installation_id)


# --- the arq job ---------------------------------------------------------------------------


async def backfill_job(ctx: dict[str, Any], repo_id: int) -> str:
    """arq job `backfill_repository`: retried at the rate-limit reset or with backoff (a
    finished one frees its job id `backfill:<repo id>`, so the next installation event or
    sync can enqueue it again)."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(repository_id=repo_id, job=BACKFILL_JOB)
    try:
        report = await backfill_repository(ctx["deps"], repo_id)
    except RateLimited as exc:
        # One second past the reset, so the retry does not arrive a moment too early.
        defer = exc.seconds_left() + 1.0
        log.warning("backfill_rate_limited", retry_in_seconds=round(defer), error=str(exc))
        raise Retry(defer=defer) from exc
    except (TransientError, SQLAlchemyError, OSError) as exc:
        defer = min(TRANSIENT_BACKOFF_MAX, 5.0 * 2 ** (int(ctx.get("job_try", 1)) - 1))
        log.warning("backfill_retry", retry_in_seconds=defer, error=str(exc))
        raise Retry(defer=defer) from exc
    except (AdapterError, PayloadError, LookupError, ConfigError) as exc:
        # Retrying cannot fix these (no access, repository gone, bad payload, no App key).
        log.error("backfill_failed", error=str(exc))
        return f"failed: {exc}"
    return (
        f"{report.repository}: {report.issues} issues, {report.pull_requests} PRs, "
        f"{report.pages_unchanged}/{report.pages_fetched} pages unchanged"
    )


# --- `openase sync OWNER/REPO` --------------------------------------------------------------


async def sync_repository(
    deps: Deps,
    full_name: str,
    *,
    max_wait: timedelta = SYNC_MAX_WAIT,
    say: Callable[[str], None] = print,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    use_etags: bool = True,
) -> SyncReport:
    """Backfill one repository now, waiting politely (up to `max_wait`) on rate limits."""
    github = deps.github_app()
    transient_failures = 0
    while True:
        try:
            return await backfill_repository(deps, full_name, github=github, use_etags=use_etags)
        except RateLimited as exc:
            wait = exc.seconds_left() + 1.0
            if wait > max_wait.total_seconds():
                raise SyncFailed(
                    f"{exc}. That is more than {max_wait} away; run `openase sync {full_name}` "
                    "again later (pages synced so far are kept)."
                ) from exc
            say(f"openase: {exc}; waiting {wait:.0f}s, then continuing")
            await sleep(wait)
        except TransientError as exc:
            transient_failures += 1
            if transient_failures > SYNC_TRANSIENT_RETRIES:
                raise SyncFailed(f"{exc} (gave up after {SYNC_TRANSIENT_RETRIES} retries)") from exc
            wait = 2.0**transient_failures
            say(f"openase: {exc}; retrying in {wait:.0f}s")
            await sleep(wait)
        except (AdapterError, PayloadError, ValueError) as exc:
            raise SyncFailed(f"cannot sync {full_name}: {exc}") from exc
