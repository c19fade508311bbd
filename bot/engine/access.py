"""Who may use a slash command (DESIGN §5): anyone for the ones that only read (`/status`,
`/help`); for the ones that spend or merge, users with write access to the repository, or
the users and team members the command lists under `commands:` in `.github/openase.yml`.

Bots are refused unless listed by login, whatever access the tracker reports: the App's own
comments, and other bots', must never set off an agent run or a merge. `decide` only talks
to a `PermissionSource`, so Linear and Jira can answer later the way GitHub answers now.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from adapters.base import CodeHost
from adapters.errors import RequestRejected
from bot.config.repo import CommandAccess
from bot.config.workflow import REPO_CONFIG_PATH

WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})
ADMIN = "Admin"  # the kind of an Actor signed in to the web page with the admin token

log = structlog.get_logger(__name__)


class Level(enum.StrEnum):
    """What a command needs of its author."""

    ANYONE = "anyone"
    WRITE = "write"  # it spends (an agent run) or merges


@dataclass(frozen=True)
class Actor:
    """Who wrote the command: a login and its account type (GitHub: "User", "Bot", ...)."""

    login: str
    kind: str | None

    @property
    def mention(self) -> str:
        """How messages name them: `@login`, or "the admin" (the web page's admin token is
        nobody's GitHub login, and `@admin` would ping a stranger)."""
        return "the admin" if self.kind == ADMIN else f"@{self.login}"

    @property
    def is_bot(self) -> bool:
        # `[bot]` catches an App whose account type a tracker did not report.
        return (self.kind or "").casefold() == "bot" or self.login.casefold().endswith("[bot]")


@dataclass(frozen=True)
class Decision:
    """Whether the command may run; `reason` says why, or which permission it needs."""

    allowed: bool
    reason: str


class PermissionSource(Protocol):
    """A tracker's answer to "what may this login do here" (GitHub now, Linear/Jira later)."""

    async def permission(self, login: str) -> str:
        """One of admin, maintain, write, triage, read, none."""
        ...

    async def in_team(self, team: str, login: str) -> bool:
        """Whether `login` is an active member of `team` as the config writes it."""
        ...


class PermissionCache:
    """Answers kept `ttl` seconds, at most `max_entries` of them (least recently used go).

    A burst of commands (a pasted list, a busy thread) then asks GitHub once per person; a
    revoked permission takes effect within `ttl`. Logins, repos and teams ignore case.
    """

    def __init__(
        self,
        *,
        ttl: float = 60.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, ...], tuple[float, str | bool]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def permission(self, repo: str, login: str) -> str | None:
        found = self._get(("permission", repo.casefold(), login.casefold()))
        return found if isinstance(found, str) else None

    def remember_permission(self, repo: str, login: str, permission: str) -> None:
        self._put(("permission", repo.casefold(), login.casefold()), permission)

    def membership(self, org: str, team: str, login: str) -> bool | None:
        found = self._get(("team", org.casefold(), team.casefold(), login.casefold()))
        return found if isinstance(found, bool) else None

    def remember_membership(self, org: str, team: str, login: str, member: bool) -> None:
        self._put(("team", org.casefold(), team.casefold(), login.casefold()), member)

    def _get(self, key: tuple[str, ...]) -> str | bool | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def _put(self, key: tuple[str, ...], value: str | bool) -> None:
        self._entries[key] = (self._clock() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class GitHubPermissions:
    """A `PermissionSource` for one repository, asked as one installation of the App.

    Needs the App's `members: read` permission for teams. A 404 means no access (or no
    such team member); any other error propagates, so the delivery is retried.
    """

    def __init__(
        self,
        github: CodeHost,
        full_name: str,
        installation_id: int,
        cache: PermissionCache | None = None,
    ) -> None:
        self.github = github
        self.full_name = full_name
        self.installation_id = installation_id
        self.cache = cache if cache is not None else PermissionCache()

    async def permission(self, login: str) -> str:
        cached = self.cache.permission(self.full_name, login)
        if cached is not None:
            return cached
        # The base role (a custom role maps to one, maintain to write, triage to read).
        found = await self.github.collaborator_permission(
            self.full_name, login, self.installation_id
        )
        permission = found or "none"
        self.cache.remember_permission(self.full_name, login, permission)
        return permission

    async def in_team(self, team: str, login: str) -> bool:
        org, slug = self.team_of(team)
        cached = self.cache.membership(org, slug, login)
        if cached is not None:
            return cached
        try:
            state = await self.github.team_membership_state(org, slug, login, self.installation_id)
        except RequestRejected as exc:
            if exc.status != 403:
                raise
            # The installation has not granted `members: read`: nobody can be shown to be
            # a member, so the command is refused (with its reason) rather than the
            # delivery failing on every retry. Not cached: granting it takes effect at once.
            log.warning("team_membership_unreadable", team=f"{org}/{slug}", error=str(exc))
            return False
        # An invited user's membership is `pending` until accepted: not a member yet.
        member = state == "active"
        self.cache.remember_membership(org, slug, login, member)
        return member

    def team_of(self, team: str) -> tuple[str, str]:
        """(org, team slug) of `org/slug`, `@org/slug` or `slug` (the repo owner's org)."""
        name = team.strip().removeprefix("@")
        org, slash, slug = name.partition("/")
        return (org, slug) if slash else (self.full_name.split("/")[0], name)


async def decide(
    source: PermissionSource,
    *,
    command: str,
    needs: Level,
    actor: Actor,
    access: CommandAccess | None,
    repo: str,
) -> Decision:
    """Whether `actor` may use `/command` in `repo`; asks `source` only what it must."""
    listed_users = {_login(user) for user in access.users} if access is not None else set()
    teams = access.teams if access is not None else ()
    slash = f"`/{command}`"
    listed_under = f"commands.{command}"
    if _login(actor.login) in listed_users:
        return Decision(True, f"listed under {listed_under} in {REPO_CONFIG_PATH}")
    if actor.is_bot:
        return Decision(
            False,
            f"{slash} is not taken from bots unless they are listed under "
            f"{listed_under}.users in {REPO_CONFIG_PATH}",
        )
    if needs == Level.ANYONE:
        return Decision(True, f"anyone may use {slash}")
    permission = await source.permission(actor.login)
    if permission in WRITE_PERMISSIONS:
        return Decision(True, f"{permission} access to {repo}")
    for team in teams:
        if await source.in_team(team, actor.login):
            return Decision(True, f"member of team {team}, listed under {listed_under}")
    have = "no access" if permission == "none" else permission
    reason = (
        f"{slash} needs write access to {repo} (you have {have}), or to be listed under "
        f"{listed_under} in {REPO_CONFIG_PATH}"
    )
    if teams:
        reason += f" (by login, or as a member of team {_either(teams)})"
    return Decision(False, reason)


def _either(names: tuple[str, ...]) -> str:
    """`a`, `a or b`, `a, b or c`."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _login(login: str) -> str:
    """A login as the config may write it (`@Octocat`) compared as GitHub does (any case)."""
    return login.strip().removeprefix("@").casefold()
