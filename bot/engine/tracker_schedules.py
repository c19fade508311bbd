"""Scheduled tickets of Linear teams and Jira projects: `schedules:` under a team or project
in the control-plane config (bot/config/control.py), filed as Linear or Jira issues through
the outbox (bot/effects/tracker_issues.py). Their slots are claimed exactly as a
repository's are (bot/engine/schedule_slots.py), keyed `linear:<TEAM>` / `jira:<PROJECT>`.

A schedule naming a `workflow` gets that workflow's trigger label, read from the
`.github/openase.yml` of the repository the team or project is routed to; while that file
cannot be read the schedule waits (its slot is not claimed), as a repository's does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog

from bot.config.schedules import Schedule
from bot.config.trackers import JiraRoute, TrackerRoute
from bot.effects.tracker_issues import TrackerIssueEffect, tracker_schedule_marker
from bot.effects.trackers import LANES
from bot.engine.context import Engine
from bot.engine.jira_text import to_wiki
from bot.engine.schedule_slots import Owner, Target, repo_config_of, repositories
from bot.errors import ConfigUnavailable
from bot.registry import JIRA, LINEAR

log = structlog.get_logger(__name__)

KINDS = {
    LINEAR: TrackerIssueEffect.LINEAR_CREATE_ISSUE,
    JIRA: TrackerIssueEffect.JIRA_CREATE_ISSUE,
}


def tracker_routes(engine: Engine) -> list[tuple[Owner, TrackerRoute]]:
    """Every Linear team and Jira project of the control config that has schedules."""
    control = engine.control
    routes = [(Owner(LINEAR, key), route) for key, route in control.linear.teams.items()]
    routes += [(Owner(JIRA, key), route) for key, route in control.jira.projects.items()]
    return [(owner, route) for owner, route in routes if route.schedules]


async def tracker_schedules(
    engine: Engine, *, writable: bool
) -> AsyncIterator[tuple[Target, Schedule]]:
    """Each team's and project's schedules and where they file. `writable`: as the cron
    needs them, only of trackers the bot can write to and with their trigger labels (a
    schedule whose label cannot be known yet is left out); else every one, for showing."""
    for owner, route in tracker_routes(engine):
        if writable and not engine.trackers.writable(owner.source):
            continue
        for schedule in route.schedules:
            target = (
                await tracker_target(engine, owner, route, schedule)
                if writable
                else _target(owner, route, ())
            )
            if target is not None:
                yield target, schedule


async def find_tracker_schedule(
    engine: Engine, source: str, key: str, name: str, *, labelled: bool = True
) -> tuple[Target, Schedule] | None:
    """The schedule `name` of the Linear team or Jira project `key`, and where it files
    (`labelled`: with its trigger label, as filing needs; ConfigUnavailable while that
    cannot be known)."""
    for owner, route in tracker_routes(engine):
        if owner.source != source or owner.key.casefold() != key.casefold():
            continue
        for schedule in route.schedules:
            if schedule.name != name:
                continue
            if not labelled:
                return _target(owner, route, ()), schedule
            target = await tracker_target(engine, owner, route, schedule)
            if target is None:
                raise ConfigUnavailable(
                    f"{owner.label} {name} waits: the trigger label of workflow "
                    f"{schedule.workflow!r} cannot be read from {route.repo}'s "
                    ".github/openase.yml (not installed, unreadable, invalid, or without "
                    "that workflow)"
                )
            return target, schedule
    return None


async def tracker_target(
    engine: Engine, owner: Owner, route: TrackerRoute, schedule: Schedule
) -> Target | None:
    """Where the schedule files; None while its workflow's trigger label cannot be known."""
    labels: tuple[str, ...] = ()
    if schedule.workflow is not None:
        trigger = await _trigger_label(engine, route.repo, schedule.workflow)
        if trigger is None:
            log.warning(
                "tracker_schedule_waits",
                scope=owner.scope,
                schedule=schedule.name,
                repo=route.repo,
                workflow=schedule.workflow,
            )
            return None
        labels = (trigger,)
    return _target(owner, route, labels)


def _target(owner: Owner, route: TrackerRoute, labels: tuple[str, ...]) -> Target:
    linear = owner.source == LINEAR
    return Target(
        owner=owner,
        repository=route.repo,
        kind=KINDS[owner.source],
        lane=LANES[owner.source],
        fields=_fields(owner, route),
        marker=tracker_schedule_marker,
        labels=labels,
        text=(lambda body: body) if linear else to_wiki,
    )


def _fields(owner: Owner, route: TrackerRoute) -> dict[str, str]:
    """Where the issue is filed: the Linear team, or the Jira project and its issue type."""
    if owner.source == LINEAR:
        return {"team_key": owner.key}
    issue_type = route.issue_type if isinstance(route, JiraRoute) else "Task"
    return {"project_key": owner.key, "issue_type": issue_type}


async def _trigger_label(engine: Engine, full_name: str, workflow: str) -> str | None:
    """The first trigger label of `workflow` in the repository's config (None: the
    repository is unknown, its config unreadable or without that workflow)."""
    for repo in await repositories(engine, full_name=full_name):
        config = await repo_config_of(engine, repo)
        flow = None if config is None else config.workflow(workflow)
        if flow is not None and flow.trigger_labels:
            return flow.trigger_labels[0]
    return None
