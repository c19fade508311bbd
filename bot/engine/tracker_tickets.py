"""Linear and Jira tickets in the engine: routing them to their repository, publishing
their state on their tracker, and who their commenters are on GitHub.

A tracker ticket's `repository_id` is where its code lives: set here from the control
config's route when the engine first meets the ticket, and changed by a new route only
while no work is under way. Publishing mirrors `Decision.publish` for GitHub issues: the
issue is moved to the state's tracker state, carries the state's status label, and has one
status comment; the pull request is linked to the issue once it exists.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.base import CodeHost, InstallationChanged, NormalizedEvent, RepositoryChanged
from adapters.errors import AdapterError
from bot.config.control import ControlConfig
from bot.config.routes import (
    TRACKERS,
    Route,
    access_of,
    allowed,
    github_login_for,
    linear_target_type,
    route_of,
    target_names,
)
from bot.config.states import State, label_color
from bot.effects.outbox import add_effect, revision_key
from bot.effects.trackers import LANES, TrackerEffect
from bot.engine.access import Actor, PermissionSource
from bot.engine.context import Engine, Loaded
from bot.engine.jira_text import to_wiki
from bot.intake import mirror
from bot.registry import JIRA, LINEAR
from bot.tables.mirror import Repository, Ticket

log = structlog.get_logger(__name__)

# States in which a ticket may change repository when its route changes.
REROUTABLE = frozenset({State.BACKLOG, State.CANCELED, State.FAILED, State.DONE})


def is_tracker(ticket: Ticket) -> bool:
    return ticket.source in TRACKERS


async def route_ticket(
    session: AsyncSession,
    control: ControlConfig,
    github: CodeHost,
    ticket: Ticket,
    workflow_state: str | None,
) -> Route | None:
    """Point a Linear or Jira ticket at its route's repository (None: no route, or the
    repository is not one the App is installed on)."""
    route = route_of(control, ticket.source, ticket.tracker, ticket.labels)
    if route is None:
        return None
    repo_id = await _known_repo(session, route.repo) or await _discover(session, github, route)
    if repo_id is None:
        return None
    if ticket.repository_id != repo_id and (
        ticket.repository_id is None or workflow_state is None or workflow_state in REROUTABLE
    ):
        ticket.repository_id = repo_id
        await session.flush()
    return route


async def _known_repo(session: AsyncSession, full_name: str) -> int | None:
    found: int | None = await session.scalar(
        select(Repository.id).where(
            func.lower(Repository.full_name) == full_name.lower(),
            Repository.active.is_(True),
            Repository.installation_id.is_not(None),
        )
    )
    return found


async def _discover(session: AsyncSession, github: CodeHost, route: Route) -> int | None:
    """A routed repository no GitHub webhook has shown us yet: asked of GitHub as the App,
    and mirrored (a team may plan in Linear long before anyone touches the repository)."""
    try:
        installation = await github.repo_installation(route.repo)
        info = await github.repository(route.repo, installation.id)
    except AdapterError as exc:
        log.warning("tracker_route_unknown_repo", repo=route.repo, error=str(exc))
        return None
    events: list[NormalizedEvent] = [
        InstallationChanged(action="created", installation=installation),
        RepositoryChanged(action="created", repo=info, installation_id=installation.id),
    ]
    await mirror.apply(session, events, installation_id=installation.id)
    return await _known_repo(session, route.repo)


async def unreachable_route(
    session: AsyncSession, engine: Engine, loaded: Loaded, *, wanted: bool
) -> None:
    """Tell a ticket that asks for the agent (its trigger label, or `/run`) once per route
    why nothing happens: its team or project is routed to a repository the App cannot
    reach. Tickets that ask for nothing are left alone (a whole team may be routed)."""
    ticket = loaded.ticket
    route = route_of(engine.control, ticket.source, ticket.tracker, ticket.labels)
    if route is None:
        return
    asked = wanted or any(
        label.casefold() == "openase" or label.casefold().startswith("openase:")
        for label in ticket.labels
    )
    if not asked:
        return
    key = f"route-missing:{ticket.id}:{route.repo.lower()}"[:255]
    body = (
        f"⚠️ OpenASE cannot work on {ticket.key}: it is routed ({route.reason}) to "
        f"{route.repo}, which is not a repository the GitHub App is installed on. Install the "
        "App there, or fix the route in the control-plane config, then ask again."
    )
    # Performed by the outbox's sweep within seconds (this runs before the commit).
    await tracker_comment(session, ticket, key=key, body=body)


# --- publishing ----------------------------------------------------------------------------------


def lane(ticket: Ticket) -> int:
    return LANES[ticket.source]


def _issue_fields(ticket: Ticket) -> dict[str, Any]:
    """How the tracker's API names the issue."""
    if ticket.source == LINEAR:
        tracker = ticket.tracker or {}
        return {"issue_id": ticket.external_id, "team_id": tracker.get("team_id")}
    return {"key": ticket.key}


async def publish_tracker(
    session: AsyncSession,
    control: ControlConfig,
    ticket: Ticket,
    state: str,
    version: int,
    status_labels: dict[str, str] | None,
    body: str,
    *,
    relabel: bool,
    move: bool,
) -> int:
    """Outbox effects that show the ticket's state on its tracker (`move`: the issue's own
    state too, `relabel`: its status label); returns the lane."""
    linear = ticket.source == LINEAR
    fields = _issue_fields(ticket)
    if move:
        names = target_names(control, ticket.source, state)
        if names or linear:
            await add_effect(
                session,
                key=revision_key(f"tstate:{ticket.id}", version),
                kind=TrackerEffect.LINEAR_STATE if linear else TrackerEffect.JIRA_STATE,
                payload=fields
                | {"state": state, "names": names, "type": linear_target_type(state)},
                ticket_id=ticket.id,
                installation_id=lane(ticket),
            )
    if relabel and status_labels is not None:
        wanted = status_labels.get(state)
        await add_effect(
            session,
            key=revision_key(f"tlabel:{ticket.id}", version),
            kind=TrackerEffect.LINEAR_LABELS if linear else TrackerEffect.JIRA_LABELS,
            payload=fields
            | {
                "add": wanted,
                "remove": sorted({name for name in status_labels.values() if name != wanted}),
                "color": label_color(state),
            },
            ticket_id=ticket.id,
            installation_id=lane(ticket),
        )
    await add_effect(
        session,
        key=revision_key(f"tstatus:{ticket.id}", version),
        kind=TrackerEffect.LINEAR_STATUS_COMMENT if linear else TrackerEffect.JIRA_STATUS_COMMENT,
        payload=fields | {"body": body if linear else to_wiki(body)},
        ticket_id=ticket.id,
        installation_id=lane(ticket),
    )
    return lane(ticket)


async def tracker_label(
    session: AsyncSession,
    ticket: Ticket,
    *,
    key: str,
    add: str | None,
    remove: list[str],
    color: str,
) -> int:
    """Add the label `add` to the tracker issue, or take those in `remove` off (idempotent
    by `key`); returns the lane."""
    linear = ticket.source == LINEAR
    await add_effect(
        session,
        key=key,
        kind=TrackerEffect.LINEAR_LABELS if linear else TrackerEffect.JIRA_LABELS,
        payload=_issue_fields(ticket) | {"add": add, "remove": remove, "color": color},
        ticket_id=ticket.id,
        installation_id=lane(ticket),
    )
    return lane(ticket)


async def tracker_comment(session: AsyncSession, ticket: Ticket, *, key: str, body: str) -> bool:
    """A one-off comment on the tracker issue (idempotent by `key`)."""
    linear = ticket.source == LINEAR
    return await add_effect(
        session,
        key=key,
        kind=TrackerEffect.LINEAR_COMMENT if linear else TrackerEffect.JIRA_COMMENT,
        payload=_issue_fields(ticket) | {"body": body if linear else to_wiki(body)},
        ticket_id=ticket.id,
        installation_id=lane(ticket),
    )


async def tracker_reaction(
    session: AsyncSession, ticket: Ticket, *, key: str, comment_id: str, content: str
) -> bool:
    """A reaction on a Linear comment; Jira comments have none (the replies say it all)."""
    if ticket.source != LINEAR:
        return False
    return await add_effect(
        session,
        key=key,
        kind=TrackerEffect.LINEAR_REACTION,
        payload={"comment_id": comment_id, "content": content},
        ticket_id=ticket.id,
        installation_id=lane(ticket),
    )


async def link_pull_request(session: AsyncSession, ticket: Ticket, url: str, title: str) -> bool:
    """Attach the PR to the tracker issue once (Linear attachment, Jira remote link)."""
    linear = ticket.source == LINEAR
    return await add_effect(
        session,
        key=f"tlink:{ticket.id}:{url}"[:255],
        kind=TrackerEffect.LINEAR_LINK if linear else TrackerEffect.JIRA_LINK,
        payload=_issue_fields(ticket) | {"url": url, "title": title},
        ticket_id=ticket.id,
        installation_id=lane(ticket),
    )


# --- people -------------------------------------------------------------------------------------


def tracker_actor(
    control: ControlConfig,
    source: str,
    *,
    name: str | None,
    kind: str | None,
    identities: list[str],
) -> tuple[Actor, bool, bool]:
    """The commenter as the commands see them: the GitHub login config maps them to (else
    their tracker name), whether they are mapped, and whether config allows them all."""
    access = access_of(control, source)
    login = github_login_for(access, identities)
    actor = Actor(login or name or (identities[0] if identities else "someone"), kind)
    return actor, login is not None, allowed(access, identities)


class TrackerPermissions:
    """What a tracker user may do: what their mapped GitHub login may do on the repository,
    or everything when config allows them, else nothing."""

    def __init__(self, github: PermissionSource, *, mapped: bool, allow_all: bool) -> None:
        self.github = github
        self.mapped = mapped
        self.allow_all = allow_all

    async def permission(self, login: str) -> str:
        if self.allow_all:
            return "write"
        return await self.github.permission(login) if self.mapped else "none"

    async def in_team(self, team: str, login: str) -> bool:
        return self.mapped and await self.github.in_team(team, login)


def access_hint(source: str) -> str:
    """How to grant a tracker user commands, for a refusal's reply."""
    section = "linear" if source == LINEAR else "jira" if source == JIRA else source
    return (
        f" Map your {section.title()} user to a GitHub login under `{section}.users` "
        f"(by id or email), or list it under `{section}.allow`, in the control-plane config."
    )
