"""The workflow engine's core: what every decision shares (DESIGN §3.6, §4).

A decision runs in one transaction: it locks the ticket's `ticket_states` row, changes it
(bumping `version`), records activity, and writes its side effects to the outbox. What
must wait for the commit (performing those effects, sending a run, cancelling one) is
gathered in `Followups` and done by `Followups.run` afterwards; whatever of it is lost
to a crash the engine's cron finds again (due tickets, pending effects, open runs).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.control import ControlConfig
from bot.config.loader import ConfigCache, RepoConfigResult, repo_config
from bot.config.repo import RepoConfig, Workflow
from bot.config.states import TERMINAL, State, label_color
from bot.deps import Deps
from bot.effects.github import EffectKind
from bot.effects.outbox import add_effect, enqueue_perform, revision_key
from bot.engine.commands.access import PermissionCache
from bot.engine.status_comment import StatusView, render
from bot.engine.tracker_tickets import (
    is_tracker,
    lane,
    link_pull_request,
    publish_tracker,
    tracker_comment,
)
from bot.registry import GitHubApp
from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import Activity, Run, TicketState
from bot.trackers import TrackerClients
from runner.contract import HookResult, run_cancel_key

log = structlog.get_logger(__name__)

CANCEL_TTL_SECONDS = 7 * 24 * 3600
# How long a default branch's head is trusted before asking GitHub again: a burst of
# decisions on one repository reads its config once (a push moves it within seconds).
HEAD_TTL_SECONDS = 5.0


@dataclass
class Engine:
    """What decisions need besides a session: the clients and the control-plane config."""

    deps: Deps
    github: GitHubApp
    control: ControlConfig
    configs: ConfigCache = field(default_factory=ConfigCache)
    # Who may use slash commands, asked of GitHub at most once a minute per person.
    permissions: PermissionCache = field(default_factory=PermissionCache)
    # Linear's and Jira's clients, for their tickets (each None when not configured).
    trackers: TrackerClients = field(default_factory=TrackerClients)
    _heads: dict[tuple[str, str], tuple[float, RepoConfigResult]] = field(default_factory=dict)

    @property
    def app_id(self) -> int:
        return self.github.app_id

    async def config_of(self, repo: Repository) -> RepoConfigResult:
        """The repository's config at its default branch (GitHub errors propagate)."""
        if repo.installation_id is None:
            raise LookupError(f"{repo.full_name} has no GitHub installation")
        branch = repo.default_branch or "main"
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
        self._heads[key] = (time.monotonic(), result)
        return result

    def run_url(self, run_id: str) -> str:
        return f"{self.deps.settings.base_url}/runs/{run_id}"


# --- after the commit ------------------------------------------------------------------------


@dataclass
class Followups:
    """What a committed decision asks for next."""

    dispatch: set[int] = field(default_factory=set)  # tickets to try to start now
    merge_checks: set[int] = field(default_factory=set)  # tickets whose merge gate to check
    cancel: dict[str, str] = field(default_factory=dict)  # run id -> reason
    outbox: set[int | None] = field(default_factory=set)  # installations with new effects
    later: dict[int, datetime] = field(default_factory=dict)  # ticket -> dispatch at (backoff)
    dispatch_due: bool = False  # a slot freed up: start the tickets waiting for one
    sends: list[tuple[Any, str]] = field(default_factory=list)  # (RunSpec, machine) to send
    decision: str = ""  # names the enqueued outbox job

    def merge(self, other: Followups) -> None:
        self.dispatch |= other.dispatch
        self.merge_checks |= other.merge_checks
        self.cancel.update(other.cancel)
        self.outbox |= other.outbox
        self.later.update(other.later)
        self.dispatch_due = self.dispatch_due or other.dispatch_due
        self.sends += other.sends
        self.decision = self.decision or other.decision

    async def run(self, engine: Engine) -> None:
        """Carry them out; a failure is logged, the cron repairs it within seconds."""
        from bot.engine.jobs import dispatch_due, dispatch_later  # it imports us
        from bot.engine.merge_gate import consider_merge
        from bot.engine.runs.dispatch import dispatch_ticket, send

        redis = engine.deps.redis
        for run_id, reason in self.cancel.items():
            try:
                await redis.set(run_cancel_key(run_id), reason[:500], ex=CANCEL_TTL_SECONDS)
            except (RedisError, OSError) as exc:
                log.warning("cancel_not_sent", run_id=run_id, error=type(exc).__name__)
        for spec, machine in self.sends:
            await send(engine, spec, machine)
        stamp = self.decision or f"{time.time_ns()}"
        for installation_id in self.outbox:
            await enqueue_perform(
                redis, decision=f"{stamp}:{installation_id}", installation_id=installation_id
            )
        for ticket_id in sorted(self.dispatch):
            await _guarded("dispatch_failed", ticket_id, dispatch_ticket(engine, ticket_id))
        for ticket_id in sorted(self.merge_checks):
            await _guarded("merge_check_failed", ticket_id, consider_merge(engine, ticket_id))
        for ticket_id, when in self.later.items():
            await dispatch_later(engine, ticket_id, when)
        if self.dispatch_due:
            await _guarded("dispatch_due_failed", 0, dispatch_due(engine))


async def _guarded(event: str, ticket_id: int, work: Awaitable[Any]) -> None:
    try:
        await work
    except Exception:  # the cron tries again; one ticket's trouble must not stop the rest
        log.warning(event, ticket_id=ticket_id, exc_info=True)


# --- loading ---------------------------------------------------------------------------------


@dataclass
class Loaded:
    """A ticket with its repository and its locked workflow state."""

    ticket: Ticket
    repo: Repository | None
    state: TicketState | None

    @property
    def installation_id(self) -> int | None:
        return None if self.repo is None else self.repo.installation_id


async def load(session: AsyncSession, ticket_id: int, *, lock: bool = True) -> Loaded | None:
    """The ticket, its repository and its state row (locked FOR UPDATE unless `lock` is off)."""
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
    from sqlalchemy.dialects.postgresql import insert

    await session.execute(
        insert(TicketState)
        .values(ticket_id=loaded.ticket.id, state=state, attempt=0, version=0, cost_usd=0.0)
        .on_conflict_do_nothing(index_elements=[TicketState.ticket_id])
    )
    fresh = await load(session, loaded.ticket.id)
    assert fresh is not None
    assert fresh.state is not None
    loaded.state = fresh.state
    return fresh.state


# Who GitHub says did something, when it was an App: the bot's own echoes are ignored.
BOT = "Bot"


def by(actor: str | None) -> str:
    """` by @alice` for a log line, or nothing."""
    return f" by @{actor}" if actor else ""


async def config_or_none(engine: Engine, loaded: Loaded) -> RepoConfig | None:
    """The repo's config, or None when it is invalid (dispatch reports its problems)."""
    assert loaded.repo is not None  # only GitHub tickets reach the engine's reactions
    return (await engine.config_of(loaded.repo)).config


# --- deciding --------------------------------------------------------------------------------


def note(
    session: AsyncSession,
    ticket_id: int,
    kind: str,
    message: str,
    *,
    run_id: str | None = None,
    **data: Any,
) -> None:
    """One line of the ticket's activity log, in the deciding transaction."""
    session.add(Activity(ticket_id=ticket_id, run_id=run_id, kind=kind, message=message, data=data))


async def transition(
    session: AsyncSession,
    engine: Engine,
    loaded: Loaded,
    config: RepoConfig | None,
    followups: Followups,
    new_state: str,
    *,
    reason: str,
    relabel: bool | None = None,
    **changes: Any,
) -> TicketState:
    """Move the ticket to `new_state` and set the columns in `changes` (`run_id=None`
    clears the run in flight), log it, and publish it: its status comment, and (when the
    state changed, or `relabel`) its status label and its Projects card."""
    created = loaded.state is None
    row = await ensure_state(session, loaded, new_state)
    old = row.state
    run_id = changes.get("run_id", row.run_id)  # the run the change is about, for the log
    if run_id is None:
        run_id = row.run_id
    row.state = new_state
    for name, value in changes.items():
        setattr(row, name, value)
    row.version += 1
    await session.flush()
    message = reason if old == new_state else f"{old} → {new_state}: {reason}"
    note(session, loaded.ticket.id, "state", message, run_id=run_id, old=old, new=new_state)
    log.info("ticket_state", ticket_id=loaded.ticket.id, old=old, new=new_state, reason=reason)
    label = (created or old != new_state) if relabel is None else relabel
    await publish(session, engine, loaded, config, followups, label=label)
    return row


def workflow_of(config: RepoConfig | None, row: TicketState | None) -> Workflow | None:
    """The workflow the ticket is in, as the repo's config has it (None without one)."""
    if config is None or row is None or row.workflow is None:
        return None
    return config.workflow(row.workflow)


async def send_back(
    session: AsyncSession,
    engine: Engine,
    loaded: Loaded,
    config: RepoConfig | None,
    followups: Followups,
    flow: Workflow,
    *,
    reason: str,
    **changes: Any,
) -> None:
    """Put the ticket in `flow`'s pickup state for a fresh run and ask for its dispatch:
    a trigger, a retry, a review asking for changes, a re-run of the gates all do this."""
    fresh: dict[str, Any] = {
        "workflow": flow.name,
        "attempt": 0,
        "next_attempt_at": None,
        "run_id": None,
        "approved": False,
        "waiting": None,
    }
    await transition(
        session, engine, loaded, config, followups, flow.pickup, reason=reason, **(fresh | changes)
    )
    followups.dispatch.add(loaded.ticket.id)


async def publish(
    session: AsyncSession,
    engine: Engine,
    loaded: Loaded,
    config: RepoConfig | None,
    followups: Followups,
    *,
    label: bool = True,
) -> None:
    """Outbox effects that show the ticket's current state on GitHub (or on the Linear or
    Jira issue the ticket is)."""
    row, repo = loaded.state, loaded.repo
    if row is not None and repo is not None and is_tracker(loaded.ticket):
        view = await status_view(session, engine, loaded, config)
        lane = await publish_tracker(
            session,
            engine.control,
            loaded.ticket,
            row.state,
            row.version,
            config.status_labels if config is not None else None,
            render(view),
            relabel=label,
            # An issue a human closed in its tracker stays in the state they chose.
            move=label and not (loaded.ticket.state == "closed" and row.state in TERMINAL),
        )
        if view.pull_request_url and row.pr_number is not None:
            title = f"{repo.full_name}#{row.pr_number}: {loaded.ticket.title}"[:250]
            await link_pull_request(session, loaded.ticket, view.pull_request_url, title)
        followups.outbox.add(lane)
        return
    if row is None or repo is None or loaded.ticket.number is None:
        return
    number, ticket_id = loaded.ticket.number, loaded.ticket.id
    inst = repo.installation_id
    labels = config.status_labels if config is not None else None
    if label and labels is not None:
        wanted = labels.get(row.state)
        await add_effect(
            session,
            key=revision_key(f"label:{ticket_id}", row.version),
            kind=EffectKind.STATUS_LABEL,
            payload={
                "repo": repo.full_name,
                "number": number,
                "add": wanted,
                "remove": sorted({name for name in labels.values() if name != wanted}),
                "color": label_color(row.state),
                "description": f"OpenASE: {row.state.replace('_', ' ')}",
            },
            ticket_id=ticket_id,
            installation_id=inst,
        )
        if "set_project_status" in _performers():
            await add_effect(
                session,
                key=revision_key(f"project:{ticket_id}", row.version),
                kind="set_project_status",
                payload={"repo": repo.full_name, "number": number, "state": row.state},
                ticket_id=ticket_id,
                installation_id=inst,
            )
    await add_effect(
        session,
        key=revision_key(f"status:{ticket_id}", row.version),
        kind=EffectKind.STATUS_COMMENT,
        payload={
            "repo": repo.full_name,
            "number": number,
            "body": render(await status_view(session, engine, loaded, config)),
        },
        ticket_id=ticket_id,
        installation_id=inst,
    )
    followups.outbox.add(inst)


def _checks(run: Run | None) -> tuple[tuple[str, str], ...]:
    """The blocking gates of the latest finished run and how each ended."""
    if run is None or not run.result:
        return ()
    checks = []
    for raw in run.result.get("hook_results") or []:
        try:
            hook = HookResult.model_validate(raw)
        except ValueError:
            continue  # a result of an older runner: no checks to show
        if hook.phase == "on_complete" and hook.on_failure == "block":
            checks.append((f"openase/{hook.name}", "passed" if hook.passed else "failed"))
    return tuple(checks)


def _performers() -> Any:
    from bot.effects.github import PERFORMERS

    return PERFORMERS


async def status_view(
    session: AsyncSession, engine: Engine, loaded: Loaded, config: RepoConfig | None
) -> StatusView:
    row = loaded.state
    assert row is not None  # callers publish a ticket the engine tracks
    flow = workflow_of(config, row)
    run = None
    if row.run_id is not None:
        run = await session.get(Run, row.run_id)
    if run is None:
        run = await session.scalar(
            select(Run)
            .where(Run.ticket_id == row.ticket_id)
            .order_by(Run.queued_at.desc())
            .limit(1)
        )
    harness = None
    if run is not None:
        spec_harness = (run.spec or {}).get("harness") or {}
        if spec_harness.get("name"):
            harness = f"{spec_harness['name']}@{spec_harness.get('version')}"
    pull_url = None
    if row.pr_number is not None and loaded.repo is not None and loaded.repo.html_url:
        pull_url = f"{loaded.repo.html_url}/pull/{row.pr_number}"
    live = row.state == State.IN_PROGRESS and row.run_id is not None
    return StatusView(
        state=row.state,
        workflow=row.workflow,
        attempt=row.attempt,
        max_attempts=flow.max_attempts if flow is not None else None,
        machine=run.machine if run is not None else None,
        harness=harness,
        cost_usd=row.cost_usd,
        run_url=engine.run_url(row.run_id) if live and row.run_id else None,
        pull_request_url=pull_url,
        last_failure=row.last_failure if row.state != State.DONE else None,
        held=row.held,
        note=row.waiting,
        checks=_checks(run),
    )


async def comment(
    session: AsyncSession,
    loaded: Loaded,
    followups: Followups,
    *,
    key: str,
    body: str,
) -> bool:
    """A one-off reply on the ticket (idempotent by `key`); whether it is a new one."""
    if is_tracker(loaded.ticket):
        added = await tracker_comment(session, loaded.ticket, key=key, body=body)
        followups.outbox.add(lane(loaded.ticket))
        return added
    if loaded.repo is None or loaded.ticket.number is None:
        return False
    added = await add_effect(
        session,
        key=key,
        kind=EffectKind.COMMENT,
        payload={"repo": loaded.repo.full_name, "number": loaded.ticket.number, "body": body},
        ticket_id=loaded.ticket.id,
        installation_id=loaded.repo.installation_id,
    )
    followups.outbox.add(loaded.repo.installation_id)
    return added
