"""Scheduled tickets: the cron's pass over every schedule (a repository's, `schedules:` in
`.github/openase.yml`; a Linear team's or Jira project's, in the control-plane config), and
what the CLI and the web page show and do. Firing each slot exactly once, however many
workers run the cron, is bot/engine/schedule_slots.py's job; a repository's schedules file
GitHub issues through the outbox (`create_issue`), a team's or project's file Linear or Jira
issues (bot/engine/tracker_schedules.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from adapters.errors import AdapterError
from bot.config.repo import RepoConfig
from bot.config.schedules import Schedule
from bot.effects.kinds import EffectKind, schedule_marker
from bot.effects.outbox import enqueue_perform
from bot.engine.context import Engine
from bot.engine.schedule_slots import (
    GITHUB,
    Owner,
    Target,
    fire_due,
    last_slot,
    paused_names,
    repo_config_of,
    repositories,
)
from bot.engine.tracker_schedules import find_tracker_schedule, tracker_schedules
from bot.errors import ConfigUnavailable
from bot.tables.mirror import Repository
from bot.tables.schedules import SlotOutcome

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ScheduleView:
    """A schedule as the CLI and the web page show it."""

    owner: Owner
    schedule: Schedule
    paused: bool
    next_at: datetime
    last_slot: datetime | None
    last_outcome: str | None
    last_issue: str | None  # `#12` on GitHub, `ENG-3` on Linear or Jira

    @property
    def repository(self) -> str:
        """Whose schedule, as people name it (`octo/api`, `Linear team ENG`)."""
        return self.owner.label


# --- the cron ------------------------------------------------------------------------------


async def schedules_tick(engine: Engine, now: datetime | None = None) -> dict[str, int]:
    """Claim each schedule's latest slot once; file what is due. Counts by outcome."""
    now = now or datetime.now(UTC)
    counts: Counter[str] = Counter()
    for repo in await repositories(engine):
        config = await repo_config_of(engine, repo)
        if config is None:
            continue
        for schedule in config.schedules:
            outcome = await fire_due(engine, github_target(repo, config, schedule), schedule, now)
            if outcome is not None:
                counts[outcome] += 1
    async for target, schedule in tracker_schedules(engine, writable=True):
        outcome = await fire_due(engine, target, schedule, now)
        if outcome is not None:
            counts[outcome] += 1
    if counts[SlotOutcome.FILED]:
        await enqueue_perform(engine.deps.redis, decision=f"schedules:{now.isoformat()}")
    return dict(counts)


def github_target(repo: Repository, config: RepoConfig, schedule: Schedule) -> Target:
    """A repository's schedule files a GitHub issue; its workflow's trigger label starts it."""
    flow = None if schedule.workflow is None else config.workflow(schedule.workflow)
    trigger = (flow.trigger_labels[0],) if flow is not None and flow.trigger_labels else ()
    return Target(
        owner=Owner(GITHUB, repo.full_name, repo.id),
        repository=repo.full_name,
        kind=EffectKind.CREATE_ISSUE,
        lane=repo.installation_id,
        fields={"repo": repo.full_name},
        marker=schedule_marker,
        labels=trigger,
    )


# --- what the CLI and the web page show ------------------------------------------------------


async def schedule_views(
    engine: Engine, *, full_name: str | None = None, now: datetime | None = None
) -> list[ScheduleView]:
    """Every schedule (or one repository's, or a `linear:KEY`/`jira:KEY` team's or
    project's), with its next run and last slot."""
    now = now or datetime.now(UTC)
    found: list[tuple[Target, Schedule]] = []
    tracker = full_name is not None and ":" in full_name
    if not tracker:
        for repo in await repositories(engine, full_name=full_name):
            config = await repo_config_of(engine, repo)
            if config is not None:
                found += [(github_target(repo, config, s), s) for s in config.schedules]
    if full_name is None or tracker:
        found += [
            pair
            async for pair in tracker_schedules(engine, writable=False)
            if full_name is None or pair[0].owner.scope == _tracker_scope(full_name)
        ]
    views = []
    async with engine.deps.sessions() as session:
        paused: dict[str, set[str]] = {}
        for target, schedule in found:
            owner = target.owner
            if owner.scope not in paused:
                paused[owner.scope] = await paused_names(session, owner)
            last = await last_slot(session, owner, schedule.name)
            views.append(
                ScheduleView(
                    owner=owner,
                    schedule=schedule,
                    paused=schedule.name in paused[owner.scope],
                    next_at=schedule.next_slot(now),
                    last_slot=None if last is None else last[0],
                    last_outcome=None if last is None else last[1],
                    last_issue=None if last is None else last[2],
                )
            )
    return views


async def config_problems(
    engine: Engine, *, full_name: str | None = None
) -> list[tuple[str, tuple[str, ...]]]:
    """The repositories (or the one) whose `.github/openase.yml` has problems, so none of
    their schedules runs: each with its problems as the ticket comment lists them."""
    if full_name is not None and ":" in full_name:
        return []
    found = []
    for repo in await repositories(engine, full_name=full_name):
        try:
            result = await engine.config_of(repo)
        except (AdapterError, ConfigUnavailable, LookupError):
            continue  # unreadable now: nothing to say about its content
        if result.config is None:
            found.append((repo.full_name, tuple(str(problem) for problem in result.problems)))
    return found


async def find_schedule(
    engine: Engine, where: str, name: str, *, labelled: bool = True
) -> tuple[Target, Schedule] | None:
    """The schedule `name` of the repository `where` (OWNER/NAME), or of the Linear team or
    Jira project `linear:KEY` / `jira:KEY`, and where it files; None when there is none.
    A team's or project's, `labelled` (to file it): ConfigUnavailable while its trigger
    label cannot be known."""
    source, _, key = where.partition(":")
    if key:
        return await find_tracker_schedule(engine, source.lower(), key, name, labelled=labelled)
    for repo in await repositories(engine, full_name=where):
        config = await repo_config_of(engine, repo)
        if config is None:
            continue
        for schedule in config.schedules:
            if schedule.name == name:
                return github_target(repo, config, schedule), schedule
    return None


# --- steps -----------------------------------------------------------------------------------


def _tracker_scope(where: str) -> str:
    source, _, key = where.partition(":")
    return Owner(source.lower(), key).scope
