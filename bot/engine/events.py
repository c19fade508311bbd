"""The engine's reaction to what GitHub tells us (DESIGN §4): a trigger label starts a
ticket, a human moving the status label (or the Projects card) moves it, closing the issue
cancels it, a review sends it back or approves it, a merged PR finishes it, a check run's
Retry or Re-run starts its gates again.

`react` runs inside the ingest transaction that applied the delivery to the mirror, so a
delivery's decisions commit with it, exactly once; the webhook's redelivery finds the
delivery done. Echoes of the bot's own writes (its label changes, its project moves, its
reviews) are recognised by their `Bot` actor and ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.base import (
    CheckRunRequested,
    ChecksCompleted,
    CommentCreated,
    LabelsChanged,
    NormalizedEvent,
    ProjectItemChanged,
    PullRequestChanged,
    PullRequestReviewed,
    StatusChanged,
    TicketInfo,
    TicketRemoved,
    TicketUpserted,
)
from bot.config.repo import (
    DEFAULT_WORKFLOW,
    INTAKE_STATES,
    RepoConfig,
    Workflow,
    stage_for,
)
from bot.config.routes import route_of, state_of_tracker, tracker_identities
from bot.config.states import TERMINAL, State, human_may_set
from bot.engine.commands.access import Actor
from bot.engine.core import (
    BOT,
    Engine,
    Followups,
    Loaded,
    by,
    config_or_none,
    load,
    note,
    send_back,
    transition,
    workflow_of,
)
from bot.engine.reviews import pull_request_changed, rerun_gates, reviewed, tickets_at
from bot.engine.tracker_tickets import is_tracker, route_ticket, tracker_actor, unreachable_route
from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import Run, TicketState

log = structlog.get_logger(__name__)


async def react(
    session: AsyncSession,
    engine: Engine,
    events: Sequence[NormalizedEvent],
    installation_id: int | None = None,
) -> Followups:
    """Decide on a delivery's events in the caller's transaction; what to do after commit."""
    followups = Followups()
    for event in events:
        match event:
            case TicketUpserted():
                await _ticket_upserted(session, engine, event, followups)
            case LabelsChanged():
                await _labels_changed(session, engine, event, followups)
            case PullRequestChanged():
                await pull_request_changed(session, engine, event, followups)
            case PullRequestReviewed():
                await reviewed(session, engine, event, followups)
            case CheckRunRequested():
                await _check_requested(session, engine, event, followups)
            case ChecksCompleted():
                for ticket_id in await tickets_at(session, event.repo.id, event.head_sha):
                    followups.merge_checks.add(ticket_id)
            case CommentCreated():
                await _commented(session, engine, event, followups)
            case StatusChanged():
                await _status_changed(session, engine, event, followups)
            case TicketRemoved():
                await _ticket_removed(session, engine, event, followups)
            case ProjectItemChanged():
                await _project_item_changed(session, engine, event, installation_id, followups)
            case _:
                pass
    return followups


# --- issues and labels -------------------------------------------------------------------------


async def _ticket_id(session: AsyncSession, info: TicketInfo) -> int | None:
    found: int | None = await session.scalar(
        select(Ticket.id).where(
            Ticket.source == info.source, Ticket.external_id == info.external_id
        )
    )
    return found


async def _loaded(session: AsyncSession, engine: Engine, info: TicketInfo) -> Loaded | None:
    ticket_id = await _ticket_id(session, info)
    if ticket_id is None:
        return None
    return await load_routed(session, engine, ticket_id)


async def load_routed(
    session: AsyncSession, engine: Engine, ticket_id: int, *, wanted: bool = False
) -> Loaded | None:
    """The ticket with its repository: a Linear or Jira ticket's is where config routes it
    (None: not routed, so not the engine's). `wanted`: someone asked for the agent (`/run`),
    so a route to a repository the App cannot reach is worth telling them about."""
    loaded = await load(session, ticket_id)
    if loaded is None:
        return None
    if is_tracker(loaded.ticket):
        if not engine.trackers.writable(loaded.ticket.source):
            return None  # mirrored only; the worker warned at start (engine_jobs)
        current = loaded.state.state if loaded.state is not None else None
        route = await route_ticket(session, engine.control, engine.github, loaded.ticket, current)
        if route is None:
            await unreachable_route(session, engine, loaded, wanted=wanted)
            return None
        loaded = await load(session, ticket_id)
    if loaded is None or loaded.repo is None or loaded.repo.installation_id is None:
        return None
    return loaded


async def _ticket_removed(
    session: AsyncSession, engine: Engine, event: TicketRemoved, followups: Followups
) -> None:
    """A deleted (or transferred) issue: its agent stops. Nothing is published: the issue
    it would go to is gone (a transferred GitHub issue arrives anew in its new home)."""
    ticket_id = await _ticket_id(session, event.ticket)
    loaded = await load(session, ticket_id) if ticket_id is not None else None
    if loaded is None or loaded.state is None or loaded.state.state in TERMINAL:
        return
    row = loaded.state
    if row.run_id is not None:
        followups.cancel[row.run_id] = f"the issue was {event.reason}"
    old = row.state
    row.state, row.run_id, row.next_attempt_at = State.CANCELED, None, None
    row.version += 1
    note(session, loaded.ticket.id, "state", f"{old} → canceled: issue {event.reason}")
    followups.dispatch_due = True


async def _own_change(
    engine: Engine, loaded: Loaded, actor_type: str | None, actor_id: str | None
) -> bool:
    """Whether a change coming back is the bot's own (GitHub says Bot; Linear and Jira
    name the API key's user, which the engine compares with its own)."""
    if actor_type == BOT:
        return True
    return is_tracker(loaded.ticket) and await engine.trackers.is_self(
        loaded.ticket.source, actor_id
    )


async def _ticket_upserted(
    session: AsyncSession, engine: Engine, event: TicketUpserted, followups: Followups
) -> None:
    if event.action not in ("opened", "reopened", "closed", "edited"):
        return
    loaded = await _loaded(session, engine, event.ticket)
    if loaded is None:
        return
    row = loaded.state
    if event.action == "closed":
        followups.dispatch_due = True  # it may have blocked others
        if row is None or row.state in TERMINAL:
            return
        config = await config_or_none(engine, loaded)
        if row.state == State.MERGING:
            await transition(
                session, engine, loaded, config, followups, State.DONE, reason="issue closed"
            )
            return
        if row.run_id is not None:
            followups.cancel[row.run_id] = "the issue was closed"
        await transition(
            session,
            engine,
            loaded,
            config,
            followups,
            State.CANCELED,
            reason="issue closed",
            run_id=None,
        )
        return
    if event.action == "edited":
        if row is not None and row.state not in TERMINAL:
            followups.dispatch.add(loaded.ticket.id)  # its blockers may have changed
        return
    if event.action == "opened":
        await _body_commands(session, engine, loaded, event.ticket, followups)
        row = loaded.state
    config = await config_or_none(engine, loaded)
    if config is None:
        followups.dispatch.add(loaded.ticket.id) if row is not None else None
        return
    triggers = {label.casefold() for label in config.trigger_labels}
    carried = [label for label in event.ticket.labels if label.casefold() in triggers]
    if carried and (row is None or row.state in (State.BACKLOG, State.CANCELED, State.FAILED)):
        await _triggered(session, engine, loaded, config, carried[0], followups, None)


async def _labels_changed(
    session: AsyncSession, engine: Engine, event: LabelsChanged, followups: Followups
) -> None:
    loaded = await _loaded(session, engine, event.ticket)
    if loaded is None or loaded.ticket.state != "open":
        return
    config = await config_or_none(engine, loaded)
    if config is None:
        if loaded.state is None and event.added:
            # A trigger may be among them: dispatch reports the config's problems.
            await _start_unconfigured(session, loaded, followups)
        return
    ours = await _own_change(engine, loaded, event.actor_type, event.actor_id)
    triggers = {label.casefold() for label in config.trigger_labels}
    for label in event.added:
        state = config.state_for_label(label)
        if state is not None:
            if not ours:
                await _moved(session, engine, loaded, config, state, followups, event.actor)
        elif label.casefold() in triggers:
            await _triggered(session, engine, loaded, config, label, followups, event.actor)
    for label in event.removed:
        row = loaded.state
        state = config.state_for_label(label)
        if ours or state is None or row is None or state != row.state:
            continue
        # The bot keeps exactly one status label: a human removing it gets it back.
        await transition(
            session,
            engine,
            loaded,
            config,
            followups,
            row.state,
            reason=f"status label {label!r} restored{by(event.actor)}",
            relabel=True,
        )


async def _start_unconfigured(session: AsyncSession, loaded: Loaded, followups: Followups) -> None:
    from bot.engine.core import ensure_state

    await ensure_state(session, loaded, State.TODO)
    followups.dispatch.add(loaded.ticket.id)


async def _triggered(
    session: AsyncSession,
    engine: Engine,
    loaded: Loaded,
    config: RepoConfig,
    label: str,
    followups: Followups,
    actor: str | None,
) -> None:
    """A trigger label puts a new (or canceled, or failed) ticket in its workflow's pickup."""
    row = loaded.state
    if row is not None and row.state not in (State.BACKLOG, State.CANCELED, State.FAILED):
        return
    flow = _intake_workflow(config, label, loaded.ticket.labels, _routed_workflow(engine, loaded))
    if flow is None:
        return
    await send_back(
        session,
        engine,
        loaded,
        config,
        followups,
        flow,
        reason=f"labelled {label!r}{by(actor)}: workflow {flow.name}",
        last_failure=None,
    )


def _intake_workflow(
    config: RepoConfig, label: str, labels: Sequence[str], routed: str | None = None
) -> Workflow | None:
    folded = label.casefold()
    if routed is not None and routed in config.workflows:
        # A Linear or Jira route names the workflow its tickets' plain trigger label means.
        flow = config.workflows[routed]
        base = config.workflow(DEFAULT_WORKFLOW)
        default = {t.casefold() for t in (base.trigger_labels if base else ("openase",))}
        if folded in default or folded in {t.casefold() for t in flow.trigger_labels}:
            return flow
    for flow in config.workflows.values():
        if flow.pickup in INTAKE_STATES and folded in {t.casefold() for t in flow.trigger_labels}:
            return flow
    return stage_for(config, State.TODO, labels)


def _routed_workflow(engine: Engine, loaded: Loaded) -> str | None:
    ticket = loaded.ticket
    if not is_tracker(ticket):
        return None
    route = route_of(engine.control, ticket.source, ticket.tracker, ticket.labels)
    return route.workflow if route is not None else None


async def _status_changed(
    session: AsyncSession, engine: Engine, event: StatusChanged, followups: Followups
) -> None:
    """A human moved a Linear or Jira issue the engine works on: as moving its status label.
    Tickets the engine has not met start only by a trigger label or `/run`, never by a
    move (teams move issues to Todo all day without meaning the agent)."""
    loaded = await _loaded(session, engine, event.ticket)
    if loaded is None or loaded.state is None or loaded.ticket.state != "open":
        return
    if await _own_change(engine, loaded, None, event.actor_id):
        return
    tracker = loaded.ticket.tracker or {}
    kind = tracker.get("state_type") or tracker.get("status_category")
    state = state_of_tracker(engine.control, loaded.ticket.source, event.to_status, kind)
    row = loaded.state
    if state is None or state == row.state:
        return
    if row.state == State.MERGING and state == State.IN_REVIEW:
        return  # merging shows as review on the tracker
    config = await config_or_none(engine, loaded)
    if config is None:
        return
    await _moved(session, engine, loaded, config, state, followups, event.actor)


async def _moved(
    session: AsyncSession,
    engine: Engine,
    loaded: Loaded,
    config: RepoConfig,
    state: str,
    followups: Followups,
    actor: str | None,
) -> None:
    """A human moved the status label (or the card) to `state`."""
    row = loaded.state
    if row is not None and row.state == state:
        return
    if not human_may_set(state):
        if row is not None:  # only the engine vouches for these: our label goes back
            await transition(
                session,
                engine,
                loaded,
                config,
                followups,
                row.state,
                reason=f"{state} is set by OpenASE only; label restored{by(actor)}",
                relabel=True,
            )
        return
    if row is not None and row.state == State.IN_PROGRESS and row.run_id is not None:
        followups.cancel[row.run_id] = f"moved to {state}{by(actor)}"
    pickup = state not in TERMINAL and state not in (State.IN_REVIEW, State.FAILED)
    changes: dict[str, Any] = {"run_id": None, "waiting": None}
    if pickup:
        flow = stage_for(config, state, loaded.ticket.labels)
        changes.update(
            attempt=0,
            next_attempt_at=None,
            last_failure=None,
            workflow=flow.name if flow is not None else None,
        )
    await transition(
        session,
        engine,
        loaded,
        config,
        followups,
        state,
        reason=f"moved by a human{by(actor)}",
        **changes,
    )
    if pickup:
        followups.dispatch.add(loaded.ticket.id)
    if state == State.IN_REVIEW:
        followups.merge_checks.add(loaded.ticket.id)


# --- check runs and project cards -------------------------------------------------------------


async def _check_requested(
    session: AsyncSession, engine: Engine, event: CheckRunRequested, followups: Followups
) -> None:
    if event.app_id is not None and event.app_id != engine.app_id:
        return  # another app's check: not ours to re-run
    ticket_ids: list[int] = []
    if event.external_id and ":" in event.external_id:
        run_id = event.external_id.rsplit(":", 1)[0]
        run = await session.get(Run, run_id)
        if run is not None:
            ticket_ids.append(run.ticket_id)
    if not ticket_ids:
        rows = await session.scalars(
            select(TicketState.ticket_id)
            .join(Ticket, Ticket.id == TicketState.ticket_id)
            .where(Ticket.repository_id == event.repo.id, TicketState.head_sha == event.head_sha)
        )
        ticket_ids = list(rows.all())
    for ticket_id in ticket_ids:
        loaded = await load(session, ticket_id)
        if loaded is None or loaded.state is None or loaded.repo is None:
            continue
        row = loaded.state
        who = by(event.actor_login)
        if event.action == "rerequested" and row.state == State.IN_REVIEW:
            await rerun_gates(session, engine, loaded, followups, f"re-run requested{who}")
        elif row.state in (State.FAILED, State.IN_REVIEW) or (
            row.state not in TERMINAL and row.state != State.IN_PROGRESS and row.next_attempt_at
        ):
            await _retry(session, engine, loaded, followups, f"Retry requested{who}")


async def _retry(
    session: AsyncSession, engine: Engine, loaded: Loaded, followups: Followups, why: str
) -> None:
    row = loaded.state
    config = await config_or_none(engine, loaded)
    flow = workflow_of(config, row)
    if row is None or flow is None:
        return
    # A ticket that gave up starts its attempts over; one waiting out a backoff keeps count.
    attempt = 0 if row.state == State.FAILED else row.attempt
    await send_back(session, engine, loaded, config, followups, flow, reason=why, attempt=attempt)


async def _project_item_changed(
    session: AsyncSession,
    engine: Engine,
    event: ProjectItemChanged,
    installation: int | None,
    followups: Followups,
) -> None:
    from bot.effects.projects import resolve_item, state_for_option

    if event.actor_type == BOT or event.content_type != "Issue" or event.action != "edited":
        return
    if installation is None:
        return
    item = await resolve_item(engine.github, installation, event.item_node_id)
    if item is None or item.number is None or item.status is None:
        return
    ticket_id = await session.scalar(
        select(Ticket.id)
        .join(Repository, Repository.id == Ticket.repository_id)
        .where(Repository.full_name.ilike(item.repo), Ticket.number == item.number)
    )
    if ticket_id is None:
        return
    loaded = await load(session, ticket_id)
    if loaded is None or loaded.repo is None:
        return
    config = await config_or_none(engine, loaded)
    if config is None:
        return
    state = state_for_option(item.status, config.states)
    if state is not None:
        await _moved(session, engine, loaded, config, state, followups, event.actor_login)


# --- slash commands -----------------------------------------------------------------------------


async def _commented(
    session: AsyncSession, engine: Engine, event: CommentCreated, followups: Followups
) -> None:
    """A new comment's commands, on the issue itself or on its PR's conversation."""
    from bot.engine.commands.registry import Source, run_commands

    comment = event.comment
    if not comment.body or "/" not in comment.body:
        return
    ticket_ids = await _tickets_commented(session, event.ticket)
    author = Actor(comment.author_login or "ghost", comment.author_type)
    wanted = any(line.strip().startswith("/run") for line in comment.body.splitlines())
    for ticket_id in ticket_ids:
        loaded = await load_routed(session, engine, ticket_id, wanted=wanted)
        if loaded is None or loaded.repo is None:
            continue
        if is_tracker(loaded.ticket):
            if await _own_change(engine, loaded, None, comment.author_id):
                continue  # the bot's own status comment and replies
            source = _tracker_source(
                engine,
                loaded,
                comment.body,
                name=comment.author_login,
                kind=comment.author_type,
                identities=tracker_identities(
                    loaded.ticket.source, comment.author_id, comment.author_email
                ),
                comment_id=comment.external_id,
                key=f"c{comment.external_id}",
            )
        else:
            source = Source(
                comment.body, author, _int(comment.external_id), f"c{comment.external_id}"
            )
        await run_commands(session, engine, loaded, source, followups)


def _tracker_source(
    engine: Engine,
    loaded: Loaded,
    body: str,
    *,
    name: str | None,
    kind: str | None,
    identities: list[str],
    comment_id: str | None,
    key: str,
) -> Any:
    from bot.engine.commands.registry import Source

    actor, mapped, allow_all = tracker_actor(
        engine.control, loaded.ticket.source, name=name, kind=kind, identities=identities
    )
    return Source(
        body,
        actor,
        None,
        key,
        tracker_comment_id=comment_id,
        mapped=mapped,
        allow_all=allow_all,
    )


async def _body_commands(
    session: AsyncSession, engine: Engine, loaded: Loaded, info: TicketInfo, followups: Followups
) -> None:
    """A new issue's body may carry commands too (`/run` in an issue template)."""
    from bot.engine.commands.registry import Source, run_commands

    if not info.body or "/" not in info.body:
        return
    if is_tracker(loaded.ticket):
        tracker = loaded.ticket.tracker or {}
        creator_id = tracker.get("creator_id") or tracker.get("reporter_id")
        creator_email = tracker.get("creator_email") or tracker.get("reporter_email")
        if await _own_change(engine, loaded, None, creator_id):
            return
        source = _tracker_source(
            engine,
            loaded,
            info.body,
            name=info.author_login,
            kind="User",
            identities=tracker_identities(loaded.ticket.source, creator_id, creator_email),
            comment_id=None,
            key=f"i{loaded.ticket.id}",
        )
        await run_commands(session, engine, loaded, source, followups)
        return
    login = info.author_login or "ghost"
    author = Actor(login, BOT if login.endswith("[bot]") else "User")
    source = Source(info.body, author, None, f"i{loaded.ticket.id}")
    await run_commands(session, engine, loaded, source, followups)


async def _tickets_commented(session: AsyncSession, info: TicketInfo) -> list[int]:
    """The ticket commented on, or the tickets whose PR the conversation is."""
    own = await _ticket_id(session, info)
    if info.repo is None or info.number is None:
        return [own] if own is not None else []
    prs = (
        await session.scalars(
            select(TicketState.ticket_id)
            .join(Ticket, Ticket.id == TicketState.ticket_id)
            .where(Ticket.repository_id == info.repo.id, TicketState.pr_number == info.number)
        )
    ).all()
    if prs:
        return list(prs)
    return [own] if own is not None else []


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None
