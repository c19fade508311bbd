"""Drift reconciled (DESIGN §6b): a cron reads back what changed while webhooks were missed.

Webhooks get lost (the bot was down, a delivery failed past the delivery log's three days,
Linear and Jira keep no log at all). So every OPENASE_RECONCILE_MINUTES a pass reads, for
each GitHub repository with tickets, each Linear team and each Jira project the control
config routes, the issues (and pull requests) updated since that scope's mark, and applies
each one newer than the mirror as its webhooks would have been: through the mirror's
never-older upserts and the engine's reaction, in one transaction (changes.py). An issue
closed while the bot was down cancels its run; a PR merged by hand finishes its ticket.
What the mirror already knows is read and left alone: no reaction, no side effect.

github.py reads GitHub with conditional requests (a quiet repository costs two free
304s); trackers.py reads Linear and Jira page by page from the least recently updated;
marks.py keeps how far each scope is read. A rate limit ends that source's pass (on GitHub:
that installation's) and keeps its mark; a page bound keeps one pass short; a repository
GitHub no longer lets us read is skipped with a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from adapters.base import CodeHost
from bot.config.control import ControlConfig, load_control_config
from bot.deps import Deps
from bot.errors import ConfigError
from bot.intake.reconcile.github import reconcile_github
from bot.intake.reconcile.report import SourceReport
from bot.intake.reconcile.trackers import reconcile_jira, reconcile_linear
from bot.jobs import RECONCILE_CRON
from bot.registry import JIRA, LINEAR, TrackerClients
from bot.worker_metrics import record_reconciled

__all__ = ["Reconciled", "SourceReport", "pass_minutes", "reconcile", "reconcile_cron"]

log = structlog.get_logger(__name__)


@dataclass
class Reconciled:
    """What one pass did, by source (github, linear, jira); a source not read is absent."""

    sources: dict[str, SourceReport] = field(default_factory=dict)

    @property
    def changes(self) -> dict[str, int]:
        return {source: report.changes for source, report in self.sources.items()}


async def reconcile(
    deps: Deps,
    *,
    github: CodeHost | None,
    trackers: TrackerClients,
    control: ControlConfig,
    now: datetime | None = None,
) -> Reconciled:
    """One pass over every source that is configured (see the module docstring)."""
    started = now or datetime.now(UTC)
    done = Reconciled()
    if github is not None:
        done.sources["github"] = await reconcile_github(deps, github, started)
    teams = sorted(control.linear.teams)
    if trackers.linear is not None and teams:
        done.sources[LINEAR] = await reconcile_linear(deps, trackers.linear, teams, started)
    projects = sorted(control.jira.projects)
    if trackers.jira is not None and projects:
        done.sources[JIRA] = await reconcile_jira(deps, trackers.jira, projects, started)
    return done


async def reconcile_cron(ctx: dict[str, Any]) -> dict[str, int]:
    """The arq cron: one pass with the worker's Deps; what it changed, by source. Nothing
    without a GitHub App, Linear or Jira configured."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job=RECONCILE_CRON)
    deps: Deps = ctx["deps"]
    try:
        github: CodeHost | None = deps.github_app()
    except ConfigError:
        github = None
    if github is not None and deps.workflow is None:
        # The worker's engine is not handed to ingest yet: what is read back now would be
        # mirrored and never decided on. The next pass reads it.
        log.info("reconcile_waits_for_the_engine")
        return {}
    try:
        control = load_control_config(deps.settings.config)
    except ConfigError as exc:  # the engine said so at start; GitHub is read all the same
        log.warning("reconcile_without_control_config", error=str(exc))
        control = load_control_config(None)
    done = await reconcile(deps, github=github, trackers=deps.trackers(), control=control)
    await record_reconciled(deps.redis, done.changes)
    for source, report in done.sources.items():
        if report.changes or report.cut_short:
            log.info(
                "reconciled",
                source=source,
                changes=report.changes,
                scopes=report.scopes,
                pages=report.pages,
                unchanged_pages=report.unchanged,
                cut_short=report.cut_short[:20],
            )
    return done.changes


def pass_minutes(every: int) -> set[int]:
    """The minutes of the hour a pass starts at, for a pass every `every` (1-60) minutes
    (one that does not divide 60 starts over at each full hour)."""
    if not 1 <= every <= 60:
        raise ValueError(f"a reconcile interval is 1 to 60 minutes, not {every}")
    return set(range(0, 60, every))
