"""What the harness pages and the skill pages share: which store table and URL each one
uses, how a page handler answers refusals and outages, and the path parts they parse."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic

import structlog
from markupsafe import Markup, escape
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from bot.api.harness_usage import Usage, harness_usage, skill_usage
from bot.web.pages import not_found
from harness_store import store
from harness_store.errors import InvalidName, NotFound
from harness_store.models import HarnessVersion, SkillVersion
from harness_store.names import Kind, validate_name
from harness_store.store import V

log = structlog.get_logger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
# Version numbers are Postgres integers: nine digits keep every accepted one in range.
_NUMBER = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class Shelf(Generic[V]):
    """Harnesses or skills: the store table, the URL prefix and the words a page uses."""

    kind: Kind
    model: type[V]
    base: str  # "/harnesses"
    title: str  # "Harnesses"
    noun: str  # "harness"
    usage: Callable[[AsyncSession], Awaitable[Usage]]

    def path(self, name: str, *rest: str | int) -> str:
        return "/".join([self.base, name, *map(str, rest)])

    def version_path(self, version: HarnessVersion | SkillVersion) -> str:
        return self.path(version.name, "versions", version.version)


# Either shelf, where a page does the same for both.
AnyShelf = Shelf[HarnessVersion] | Shelf[SkillVersion]

HARNESSES = Shelf("harness", HarnessVersion, "/harnesses", "Harnesses", "harness", harness_usage)
SKILLS = Shelf("skill", SkillVersion, "/skills", "Skills", "skill", skill_usage)


def name_of(request: Request, shelf: AnyShelf) -> str:
    """The name in the path; a name the store could never hold is simply not found."""
    name = str(request.path_params["name"])
    try:
        return validate_name(shelf.kind, name)
    except InvalidName:
        raise not_found(request, f"There is no {shelf.noun} with that name.") from None


def version_number(value: str | None) -> int | None:
    """A version number as written in a URL or form, or None when it is not one."""
    if value is None or not _NUMBER.fullmatch(value) or int(value) < 1:
        return None
    return int(value)


async def version_or_404(
    request: Request, session: AsyncSession, shelf: Shelf[V], name: str, number: int
) -> V:
    try:
        return await store.get_version(session, shelf.model, name, number)
    except NotFound as error:
        raise not_found(request, str(error)) from None


async def current_or_404(request: Request, session: AsyncSession, shelf: Shelf[V], name: str) -> V:
    found = await store.current(session, shelf.model, name)
    if found is None:
        raise not_found(request, f"There is no {shelf.noun} named {name!r}.")
    return found


def when(moment: datetime | None) -> Markup:
    """A timestamp as a `<time>` element, in UTC so every reader sees the same."""
    if moment is None:
        return Markup("")
    utc = moment.astimezone(UTC)
    return Markup('<time datetime="{}">{}</time>').format(
        utc.isoformat(timespec="seconds"), escape(utc.strftime("%Y-%m-%d %H:%M UTC"))
    )


def context(shelf: AnyShelf, **values: Any) -> dict[str, Any]:
    """What every harness and skill template gets."""
    return {"shelf": shelf, "when": when, **values}
