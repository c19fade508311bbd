"""`schedules:` in a repository's `.github/openase.yml`: tickets filed on a cron.

Each schedule names a 5-field cron expression (croniter reads it; we never parse cron by
hand) in an IANA time zone, title and body templates rendered in the harness store's
sandboxed Jinja, the labels the new issue carries (the trigger label starts the agent) and
whether a slot is skipped while the schedule's previous ticket is still open. Slot times
are computed here; firing them exactly once is bot/engine/schedules.py's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from jinja2 import TemplateSyntaxError
from pydantic import AfterValidator, Field

from bot.config.workflow import LabelName, WorkflowName, _Model, named
from harness_store.budget import DEFAULT_LIMITS, rendering
from harness_store.sandbox import sandbox

MAX_SCHEDULES = 50
CRON_FIELDS = 5


def _cron(value: str) -> str:
    fields = value.split()
    if len(fields) != CRON_FIELDS:
        raise ValueError(
            f"{value!r} is not a 5-field cron expression (minute hour day-of-month month "
            f"day-of-week, e.g. '0 9 * * 1'); it has {len(fields)} field(s)"
        )
    if not croniter.is_valid(value):
        raise ValueError(
            f"{value!r} is not a valid cron expression (minute hour day-of-month month "
            "day-of-week, e.g. '0 9 * * 1')"
        )
    return " ".join(fields)


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not an IANA time zone (e.g. 'UTC', 'Europe/Berlin')"
        ) from None
    return value


def _template(value: str) -> str:
    try:
        sandbox().parse(value)
    except TemplateSyntaxError as error:
        raise ValueError(
            f"is not a valid template: {error.message} (line {error.lineno})"
        ) from None
    return value


class Schedule(_Model):
    """One recurring ticket."""

    name: Annotated[str, named("schedule")]
    cron: Annotated[str, AfterValidator(_cron)]
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"
    title: Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_template)]
    body: Annotated[str, Field(max_length=60_000), AfterValidator(_template)] = ""
    labels: tuple[LabelName, ...] = ()
    workflow: WorkflowName | None = None
    skip_if_open: bool = True

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def latest_slot(self, now: datetime) -> datetime:
        """The latest slot at or before `now` (UTC)."""
        local = now.astimezone(self.zone)
        found: datetime = croniter(self.cron, local).get_prev(datetime)
        if croniter.match(self.cron, local.replace(second=0, microsecond=0)):
            found = local.replace(second=0, microsecond=0)
        return found.astimezone(UTC)

    def next_slot(self, now: datetime) -> datetime:
        """The first slot after `now` (UTC)."""
        found: datetime = croniter(self.cron, now.astimezone(self.zone)).get_next(datetime)
        return found.astimezone(UTC)


@dataclass(frozen=True)
class Filed:
    """The issue one slot files."""

    title: str
    body: str


def render_issue(schedule: Schedule, *, repository: str, slot: datetime) -> Filed:
    """The slot's title and body; a template that fails raises (RenderError and kin)."""
    local = slot.astimezone(schedule.zone)
    variables = {
        "schedule": schedule.name,
        "repository": repository,
        "date": local.date().isoformat(),
        "time": local.strftime("%H:%M"),
        "slot": local.isoformat(),
        "timezone": schedule.timezone,
    }
    env = sandbox()
    with rendering(DEFAULT_LIMITS, {}):
        title = env.from_string(schedule.title).render(variables)
        body = env.from_string(schedule.body).render(variables) if schedule.body else ""
    return Filed(" ".join(title.split())[:256] or schedule.name, body)


def duplicate_names(schedules: Sequence[Schedule]) -> list[tuple[int, str]]:
    """(index, name) of each schedule whose name an earlier one already has."""
    seen: set[str] = set()
    found = []
    for index, schedule in enumerate(schedules):
        if schedule.name in seen:
            found.append((index, schedule.name))
        seen.add(schedule.name)
    return found
