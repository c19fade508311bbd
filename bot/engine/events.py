"""The engine's reaction to what GitHub, Linear and Jira tell us (DESIGN §4): a trigger
label starts a ticket, a human moving the status label (or the Projects card, or the
tracker issue) moves it, closing the issue cancels it, a review sends it back or approves
it, a merged PR finishes it, a check run's Retry or Re-run starts its gates again, and a
comment's slash commands run.

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
    TicketRemoved,
    TicketUpserted,
)
from adapters.errors import AdapterError
from bot.config.repo import RepoConfig, stage_for
from bot.config.routes import route_of, state_of_tracker
from bot.config.states import TERMINAL, State, human_may_set
from bot.config.workflow import DEFAULT_TRIGGER, DEFAULT_WORKFLOW, INTAKE_STATES, Workflow
from bot.effects.projects import resolve_item, state_for_option
from bot.engine.commands.comments import body_commands, commented
from bot.engine.commands.registry import Commands
from bot.engine.context import (
    BOT,
    Engine,
    Followups,
    Loaded,
    by,
    ensure_state,
    load,
    stamp_moments,
)
from bot.engine.decision import Decision, Reacting, note
from bot.engine.reviews import pull_request_changed, rerun_gates, reviewed, tickets_at
from bot.engine.tickets import load_event_ticket, own_change, ticket_id_of
from bot.engine.tracker_tickets import is_tracker
from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import Run, TicketState

log = structlog.get_logger(__name__)


async def react(
    session: AsyncSession,
    engine: Engine,
    events: Sequence[NormalizedEvent],
    commands: Commands,
    installation_id: int | None = None,
) -> Followups:
    """Decide on a delivery's events in the caller's transaction; what to do after commit."""
    r = Reacting(session, engine, installation_id)
    for event in events:
        match event:
            case TicketUpserted():
                await _ticket_upserted(r, event, commands)
            case LabelsChanged():
                await _labels_changed(r, event)
            case PullRequestChanged():
                await pull_request_changed(r, event)
            case PullRequestReviewed():
                await reviewed(r, event)
            case CheckRunRequested():
                await _check_requested(r, event)
            case ChecksCompleted():
                for ticket_id in await tickets_at(session, event.repo.id, event.head_sha):
                    r.followups.merge_checks.add(ticket_id)
            case CommentCreated():
                await commented(r, event, commands)
            case StatusChanged():
                await _status_changed(r, event)
            case TicketRemoved():
                await _ticket_removed(r, event)
            case ProjectItemChanged():
                await _project_item_changed(r, event)
            case _:
                pass
    return r.followups


# --- issues and labels -------------------------------------------------------------------------


async def _ticket_removed(r: Reacting, event: TicketRemoved) -> None:
    """A deleted (or transferred) issue: its agent stops. Nothing is published: the issue
    it would go to is gone (a transferred GitHub issue arrives anew in its new home)."""
    ticket_id = await ticket_id_of(r.session, event.ticket)
    loaded = await load(r.session, ticket_id) if ticket_id is not None else None
    if loaded is None or loaded.state is None or loaded.state.state in TERMINAL:
        return
    row = loaded.state
    if row.run_id is not None:
        r.followups.cancel[row.run_id] = f"the issue was {event.reason}"
    old = row.state
    row.state, row.run_id, row.next_attempt_at = State.CANCELED, None, None
    await stamp_moments(r.session, row, State.CANCELED)
    row.version += 1
    note(r.session, loaded.ticket.id, "state", f"{old} → canceled: issue {event.reason}")
    r.followups.dispatch_due = True


async def _ticket_upserted(r: Reacting, event: TicketUpserted, commands: Commands) -> None:
    if event.action not in ("opened", "reopened", "closed", "edited"):
        return
    loaded = await load_event_ticket(r.session, r.engine, event.ticket)
    if loaded is None:
        return
    row = loaded.state
    if event.action == "closed":
        r.followups.dispatch_due = True  # it may have blocked others
        if row is None or row.state in TERMINAL:
            return
        closing = await r.decision(loaded)
        if row.state == State.MERGING:
            await closing.transition(State.DONE, reason="issue closed")
            return
        if row.run_id is not None:
            r.followups.cancel[row.run_id] = "the issue was closed"
        await closing.transition(State.CANCELED, reason="issue closed", run_id=None)
        return
    if event.action == "edited":
        if row is not None and row.state not in TERMINAL:
            r.followups.dispatch.add(loaded.ticket.id)  # its blockers may have changed
        return
    if event.action == "opened":
        await body_commands(r, loaded, event.ticket, commands)
        row = loaded.state
    decision = await _decision_or_wait(r, loaded, event.ticket.labels)
    if decision is None:
        return
    config = decision.config
    if config is None:
        if row is not None:
            r.followups.dispatch.add(loaded.ticket.id)
        return
    triggers = {label.casefold() for label in config.trigger_labels}
    carried = [label for label in event.ticket.labels if label.casefold() in triggers]
    if carried and (row is None or row.state in (State.BACKLOG, State.CANCELED, State.FAILED)):
        await _triggered(decision, config, carried[0], None)


async def _labels_changed(r: Reacting, event: LabelsChanged) -> None:
    loaded = await load_event_ticket(r.session, r.engine, event.ticket)
    if loaded is None or loaded.ticket.state != "open":
        return
    decision = await _decision_or_wait(r, loaded, event.added)
    if decision is None:
        return
    config = decision.config
    if config is None:
        if loaded.state is None and event.added:
            # A trigger may be among them: dispatch reports the config's problems.
            await ensure_state(r.session, loaded, State.TODO)
            r.followups.dispatch.add(loaded.ticket.id)
        return
    ours = await own_change(r.engine, loaded, event.actor_type, event.actor_id)
    triggers = {label.casefold() for label in config.trigger_labels}
    for label in event.added:
        state = config.state_for_label(label)
        if state is not None:
            if not ours:
                await _moved(decision, config, state, event.actor)
        elif label.casefold() in triggers:
            await _triggered(decision, config, label, event.actor)
    for label in event.removed:
        row = loaded.state
        state = config.state_for_label(label)
        if ours or state is None or row is None or state != row.state:
            continue
        # The bot keeps exactly one status label: a human removing it gets it back.
        await decision.transition(
            row.state, reason=f"status label {label!r} restored{by(event.actor)}", relabel=True
        )


async def _decision_or_wait(r: Reacting, loaded: Loaded, labels: Sequence[str]) -> Decision | None:
    """A decision on the ticket; or, when GitHub will not serve its repository's config and a
    new ticket carries what looks like a trigger label, the ticket put in `todo` for dispatch
    to wait on the config (it says why on the ticket and retries) instead of the label being
    lost with a delivery that failed. Any other ticket's delivery is retried as before."""
    try:
        return await r.decision(loaded)
    except AdapterError:
        if loaded.state is not None or not any(_maybe_trigger(label) for label in labels):
            raise
        log.warning("trigger_waits_for_config", ticket_id=loaded.ticket.id, exc_info=True)
        await ensure_state(r.session, loaded, State.TODO)
        r.followups.dispatch.add(loaded.ticket.id)
        return None


def _maybe_trigger(label: str) -> bool:
    """`openase` or `openase:<workflow>`: a trigger under any config that keeps the default
    names (a custom trigger label needs the config to be recognised)."""
    folded = label.casefold()
    return folded == DEFAULT_TRIGGER or folded.startswith(f"{DEFAULT_TRIGGER}:")


async def _triggered(decision: Decision, config: RepoConfig, label: str, actor: str | None) -> None:
    """A trigger label puts a new (or canceled, or failed) ticket in its workflow's pickup."""
    row = decision.row
    if row is not None and row.state not in (State.BACKLOG, State.CANCELED, State.FAILED):
        return
    routed = _routed_workflow(decision.engine, decision.loaded)
    flow = _intake_workflow(config, label, decision.ticket.labels, routed)
    if flow is None:
        return
    await decision.send_back(
        flow, reason=f"labelled {label!r}{by(actor)}: workflow {flow.name}", last_failure=None
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


async def _status_changed(r: Reacting, event: StatusChanged) -> None:
    """A human moved a Linear or Jira issue the engine works on: as moving its status label.
    Tickets the engine has not met start only by a trigger label or `/run`, never by a
    move (teams move issues to Todo all day without meaning the agent)."""
    loaded = await load_event_ticket(r.session, r.engine, event.ticket)
    if loaded is None or loaded.state is None or loaded.ticket.state != "open":
        return
    if await own_change(r.engine, loaded, None, event.actor_id):
        return
    tracker = loaded.ticket.tracker or {}
    kind = tracker.get("state_type") or tracker.get("status_category")
    state = state_of_tracker(r.engine.control, loaded.ticket.source, event.to_status, kind)
    row = loaded.state
    if state is None or state == row.state:
        return
    if row.state == State.MERGING and state == State.IN_REVIEW:
        return  # merging shows as review on the tracker
    decision = await r.decision(loaded)
    if decision.config is None:
        return
    await _moved(decision, decision.config, state, event.actor)


async def _moved(decision: Decision, config: RepoConfig, state: str, actor: str | None) -> None:
    """A human moved the status label (or the card) to `state`."""
    row, followups = decision.row, decision.followups
    if row is not None and row.state == state:
        return
    if not human_may_set(state):
        if row is not None:  # only the engine vouches for these: our label goes back
            await decision.transition(
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
        flow = stage_for(config, state, decision.ticket.labels)
        changes.update(
            attempt=0,
            next_attempt_at=None,
            last_failure=None,
            workflow=flow.name if flow is not None else None,
        )
    await decision.transition(state, reason=f"moved by a human{by(actor)}", **changes)
    if pickup:
        followups.dispatch.add(decision.ticket.id)
    if state == State.IN_REVIEW:
        followups.merge_checks.add(decision.ticket.id)


# --- check runs and project cards -------------------------------------------------------------


async def _check_requested(r: Reacting, event: CheckRunRequested) -> None:
    if event.app_id is not None and event.app_id != r.engine.app_id:
        return  # another app's check: not ours to re-run
    ticket_ids: list[int] = []
    if event.external_id and ":" in event.external_id:
        run_id = event.external_id.rsplit(":", 1)[0]
        run = await r.session.get(Run, run_id)
        if run is not None:
            ticket_ids.append(run.ticket_id)
    if not ticket_ids:
        rows = await r.session.scalars(
            select(TicketState.ticket_id)
            .join(Ticket, Ticket.id == TicketState.ticket_id)
            .where(Ticket.repository_id == event.repo.id, TicketState.head_sha == event.head_sha)
        )
        ticket_ids = list(rows.all())
    for ticket_id in ticket_ids:
        loaded = await load(r.session, ticket_id)
        if loaded is None or loaded.state is None or loaded.repo is None:
            continue
        row = loaded.state
        who = by(event.actor_login)
        if event.action == "rerequested" and row.state == State.IN_REVIEW:
            await rerun_gates(await r.decision(loaded), f"re-run requested{who}")
        elif row.state in (State.FAILED, State.IN_REVIEW) or (
            row.state not in TERMINAL and row.state != State.IN_PROGRESS and row.next_attempt_at
        ):
            await _retry(await r.decision(loaded), f"Retry requested{who}")


async def _retry(decision: Decision, why: str) -> None:
    row, flow = decision.row, decision.flow
    if row is None or flow is None:
        return
    # A ticket that gave up starts its attempts over; one waiting out a backoff keeps count.
    attempt = 0 if row.state == State.FAILED else row.attempt
    await decision.send_back(flow, reason=why, attempt=attempt)


async def _project_item_changed(r: Reacting, event: ProjectItemChanged) -> None:
    if event.actor_type == BOT or event.content_type != "Issue" or event.action != "edited":
        return
    if r.installation_id is None:
        return
    item = await resolve_item(r.engine.github, r.installation_id, event.item_node_id)
    if item is None or item.number is None or item.status is None:
        return
    ticket_id = await r.session.scalar(
        select(Ticket.id)
        .join(Repository, Repository.id == Ticket.repository_id)
        .where(Repository.full_name.ilike(item.repo), Ticket.number == item.number)
    )
    if ticket_id is None:
        return
    loaded = await load(r.session, ticket_id)
    if loaded is None or loaded.repo is None:
        return
    decision = await r.decision(loaded)
    if decision.config is None:
        return
    state = state_for_option(item.status, decision.config.states)
    if state is not None:
        await _moved(decision, decision.config, state, event.actor_login)
