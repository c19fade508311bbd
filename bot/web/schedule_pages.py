"""`/schedules`: every scheduled ticket (bot/engine/schedules.py) with its next run and last
slot. `POST /schedules/{owner}/{repo}/{name}` (a repository's) or `POST /schedules/
{linear|jira}:{KEY}/{name}` (a Linear team's or Jira project's), admin only and CSRF
checked, pauses, resumes or runs one now; the pause is kept in PostgreSQL and every worker
honours it.

A repository's schedules are what its `.github/openase.yml` says at its default branch's
head, read with the GitHub App as the worker reads them (cached per commit); a team's or
project's are the control-plane config's.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from adapters.errors import AdapterError
from bot.api.request import deps_of
from bot.config.control import load_control_config
from bot.config.loader import ConfigCache
from bot.engine.context import Engine
from bot.engine.schedule_slots import GITHUB, run_now, set_paused
from bot.engine.schedules import ScheduleView, config_problems, find_schedule, schedule_views
from bot.errors import ConfigError, ConfigUnavailable
from bot.web.pages import admin_action, bad_request, html_endpoint, is_admin, not_found, page
from harness_store.db import transaction

log = structlog.get_logger(__name__)

ACTIONS = ("pause", "resume", "run")
_CONFIGS = ConfigCache()  # the web process's, shared by its requests


def _engine(request: Request) -> Engine:
    deps = deps_of(request)
    return Engine(
        deps=deps,
        github=deps.github_app(),
        control=load_control_config(deps.settings.config),
        configs=_CONFIGS,
    )


def url_of(view: ScheduleView) -> str:
    owner = view.owner
    where = owner.key if owner.source == GITHUB else f"{owner.source}:{owner.key}"
    return f"/schedules/{where}/{view.schedule.name}"


@html_endpoint
async def schedules_page(request: Request) -> Response:
    problem = None
    views: list[ScheduleView] = []
    broken: list[tuple[str, tuple[str, ...]]] = []
    try:
        engine = _engine(request)
        views = await schedule_views(engine, now=datetime.now(UTC))
        broken = await config_problems(engine)
    except ConfigError as exc:
        problem = f"Schedules cannot be read: {exc}"
    except AdapterError as exc:
        problem = f"GitHub does not answer: {exc}"
    context = {
        "title": "Schedules",
        "schedules": [(view, url_of(view)) for view in views],
        "problem": problem,
        "broken": broken,
        "admin": is_admin(request),
    }
    return page(request, "schedules.html", context)


@html_endpoint
async def control_schedule(request: Request) -> Response:
    """Pause, resume or run now: only the admin, with the form's CSRF token."""
    user, action, _ = await admin_action(request, ACTIONS, "pause, resume or run a schedule")
    params = request.path_params
    where = params["scope"] if "scope" in params else f"{params['owner']}/{params['repo']}"
    name = params["name"]
    try:
        engine = _engine(request)
    except ConfigError as exc:
        raise bad_request(request, f"Schedules cannot be read: {exc}") from exc
    try:
        found = await find_schedule(engine, where, name, labelled=action == "run")
    except ConfigUnavailable as exc:
        raise bad_request(request, f"{exc}.") from exc
    if found is None:
        raise not_found(request, f"{where} has no schedule {name!r}.")
    target, schedule = found
    if action == "run":
        outcome = await run_now(engine, target, schedule, by=user.label)
    else:
        async with transaction(deps_of(request).sessions) as session:
            await set_paused(session, target.owner, name, paused=action == "pause", by=user.label)
        outcome = action
    log.info(
        "schedule_control",
        scope=target.owner.scope,
        schedule=name,
        action=action,
        by=user.label,
        outcome=outcome,
    )
    return RedirectResponse("/schedules", status_code=303)
