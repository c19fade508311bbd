"""What every decision of the workflow engine shares (DESIGN §3.6, §4): the engine's clients
and config (`Engine`), the ticket it decides on (`Loaded`), and what it asks for after its
commit (`Followups`).

A decision runs in one transaction: it locks the ticket's `ticket_states` row, changes it
(bumping `version`), records activity, and writes its side effects to the outbox. What
must wait for the commit (performing those effects, sending a run, cancelling one,
starting another decision) is gathered in `Followups` and returned to the caller at the
top, which carries it out (bot/engine/after_commit.py); whatever of it is lost to a crash
the engine's cron finds again (due tickets, pending effects, open runs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key

from adapters.base import CodeHost
from bot.config.control import ControlConfig
from bot.config.loader import ConfigCache, RepoConfigResult, repo_config
from bot.config.states import State
from bot.deps import Deps
from bot.engine.access import PermissionCache
from bot.registry import TrackerClients
from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import TicketState
from runner.contract import RunSpec

log = structlog.get_logger(__name__)

# How long a default branch's head is trusted before asking GitHub again: a burst of
# decisions on one repository reads its config once (a push moves it within seconds).
HEAD_TTL_SECONDS = 5.0
# Who GitHub says did something, when it was an App: the bot's own echoes are ignored.
BOT = "Bot"


@dataclass
class Engine:
    """What decisions need besides a session: the clients and the control-plane config."""

    deps: Deps
    github: CodeHost
    control: ControlConfig
    configs: ConfigCache = field(default_factory=ConfigCache)
    # Who may use slash commands, asked of GitHub at most once a minute per person.
    permissions: PermissionCache = field(default_factory=PermissionCache)
    # Linear's and Jira's clients, for their tickets (each None when not configured).
    trackers: TrackerClients = field(default_factory=TrackerClients)
    _heads: dict[tuple[str, str], tuple[float, RepoConfigResult]] = field(default_factory=dict)
    # (repository, the default branch the mirror names) -> what GitHub calls it now.
    _renamed: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def app_id(self) -> int:
        return self.github.app_id

    async def config_of(self, repo: Repository) -> RepoConfigResult:
        """The repository's config at its default branch (GitHub errors propagate;
        ConfigUnavailable when there is no default branch to read it from)."""
        if repo.installation_id is None:
            raise LookupError(f"{repo.full_name} has no GitHub installation")
        mirrored = repo.default_branch or "main"
        branch = self._renamed.get((repo.full_name.lower(), mirrored), mirrored)
        key = (repo.full_name.lower(), branch)
        cached = self._heads.get(key)
        if cached is not None and time.monotonic() - cached[0] < HEAD_TTL_SECONDS:
            return cached[1]
        result = await repo_config(
            self.github,
            repo.installation_id,
            repo.full_name,
            branch,
            self.control,
            cache=self.configs,
        )
        if result.branch is not None and result.branch != branch:
            self._renamed[(repo.full_name.lower(), mirrored)] = result.branch
            await self._remember_branch(repo, result.branch)
            key = (repo.full_name.lower(), result.branch)
        self._heads[key] = (time.monotonic(), result)
        return result

    async def _remember_branch(self, repo: Repository, branch: str) -> None:
        """Tell the mirror the default branch GitHub names now (renamed without a webhook
        saying so). A row another transaction holds (a delivery mirroring the repository)
        is left to it: that delivery brings the new name, and `_renamed` serves meanwhile."""
        locked = (
            select(Repository.id).where(Repository.id == repo.id).with_for_update(skip_locked=True)
        )
        async with self.deps.sessions() as session, session.begin():
            await session.execute(
                update(Repository)
                .where(Repository.id.in_(locked.scalar_subquery()))
                .values(default_branch=branch)
            )
        log.info("default_branch_renamed", repo=repo.full_name, old=repo.default_branch, new=branch)
        # The caller's copy too: a run starts from, and a PR targets, the branch that exists.
        repo.default_branch = branch

    def run_url(self, run_id: str) -> str:
        return f"{self.deps.settings.base_url}/runs/{run_id}"


@dataclass
class Followups:
    """What a committed decision asks for next."""

    dispatch: set[int] = field(default_factory=set)  # tickets to try to start now
    merge_checks: set[int] = field(default_factory=set)  # tickets whose merge gate to check
    cancel: dict[str, str] = field(default_factory=dict)  # run id -> reason
    outbox: set[int | None] = field(default_factory=set)  # installations with new effects
    later: dict[int, datetime] = field(default_factory=dict)  # ticket -> dispatch at (backoff)
    dispatch_due: bool = False  # a slot freed up: start the tickets waiting for one
    # (spec, machine, when its git token expires) to send
    sends: list[tuple[RunSpec, str, datetime]] = field(default_factory=list)
    decision: str = ""  # names the enqueued outbox job


@dataclass(frozen=True)
class Decided:
    """How a decision ended (one word, for logs and tests) and what must follow its commit."""

    outcome: str
    followups: Followups = field(default_factory=Followups)


@dataclass
class Loaded:
    """A ticket with its repository and its locked workflow state."""

    ticket: Ticket
    repo: Repository | None
    state: TicketState | None

    @property
    def installation_id(self) -> int | None:
        return None if self.repo is None else self.repo.installation_id


_TICKET_AND_REPO = (
    select(Ticket, Repository)
    .outerjoin(Repository, Repository.id == Ticket.repository_id)
    .where(Ticket.id == bindparam("ticket_id"))
)


async def load(session: AsyncSession, ticket_id: int, *, lock: bool = True) -> Loaded | None:
    """The ticket, its repository and its state row (locked FOR UPDATE unless `lock` is off)."""
    ticket: Ticket | None
    repo: Repository | None
    if session.identity_map.get(identity_key(Ticket, ticket_id)) is None:
        # A session's first look: ticket and repository in one round trip, not two (every
        # decision and dispatch begins here).
        found = (await session.execute(_TICKET_AND_REPO, {"ticket_id": ticket_id})).first()
        if found is None:
            return None
        ticket, repo = found[0], found[1]
    else:
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None:
            return None
        repo = (
            None
            if ticket.repository_id is None
            else await session.get(Repository, ticket.repository_id)
        )
    query = select(TicketState).where(TicketState.ticket_id == ticket_id)
    if lock:
        query = query.with_for_update()
    state = (
        await session.execute(query, execution_options={"populate_existing": True})
    ).scalar_one_or_none()
    return Loaded(ticket, repo, state)


async def ensure_state(session: AsyncSession, loaded: Loaded, state: str) -> TicketState:
    """The ticket's state row, created in `state` the first time the engine sees it."""
    if loaded.state is not None:
        return loaded.state
    await session.execute(
        insert(TicketState)
        .values(
            ticket_id=loaded.ticket.id,
            state=state,
            attempt=0,
            version=0,
            cost_usd=0.0,
            **{name: func.now() for name in _moments_of(state)},
        )
        .on_conflict_do_nothing(index_elements=[TicketState.ticket_id])
    )
    fresh = await load(session, loaded.ticket.id)
    assert fresh is not None
    assert fresh.state is not None
    loaded.state = fresh.state
    return fresh.state


def _moments_of(state: str) -> list[str]:
    """The moment columns entering `state` sets (when they are still empty)."""
    moments = [] if state == State.BACKLOG else ["labelled_at"]
    if state == State.IN_REVIEW:
        moments.append("pr_at")
    elif state == State.DONE:
        moments.append("done_at")
    return moments


async def stamp_moments(session: AsyncSession, row: TicketState, state: str) -> None:
    """Record the ticket's first moments that entering `state` makes (its lead time), at the
    transaction's `now()`: the clock of the activity row logging the move, so the two agree.
    A moment already set stays: a reopened ticket keeps its first PR and its first done."""
    missing = [name for name in _moments_of(state) if getattr(row, name) is None]
    if missing:
        now = await session.scalar(select(func.now()))
        for name in missing:
            setattr(row, name, now)


def by(actor: str | None) -> str:
    """` by @alice` for a log line, or nothing."""
    return f" by @{actor}" if actor else ""
