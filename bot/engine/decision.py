"""One decision on one ticket (`Decision`): moving it between states and publishing where it
is — its status label, Projects card and status comment on GitHub, or the state, label and
comment of its Linear or Jira issue — as outbox effects in the deciding transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.control import ticket_budget
from bot.config.repo import RepoConfig
from bot.config.states import QUESTION_COLOR, QUESTION_LABEL, TERMINAL, State, label_color
from bot.config.workflow import Workflow
from bot.effects.kinds import EffectKind
from bot.effects.notifications import Occurrence, TicketRef, notify
from bot.effects.outbox import NewEffect, add_effect, add_effects, revision_key
from bot.engine.context import Engine, Followups, Loaded, ensure_state, stamp_moments
from bot.engine.status_comment import StatusView, render
from bot.engine.tracker_tickets import (
    is_tracker,
    lane,
    link_pull_request,
    publish_tracker,
    tracker_comment,
    tracker_label,
)
from bot.errors import ConfigUnavailable
from bot.tables.mirror import Ticket
from bot.tables.workflow import Activity, Run, TicketState
from runner.contract import HookResult

log = structlog.get_logger(__name__)

# The states whose entering is a notification's event (`done` only with a pull request).
FAILURE_TAIL = 1000  # characters of the last failure a notification quotes
STATE_EVENTS: dict[str, str] = {
    State.FAILED: "ticket_failed",
    State.IN_REVIEW: "in_review",
    State.DONE: "merged",
}


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


def workflow_of(config: RepoConfig | None, row: TicketState | None) -> Workflow | None:
    """The workflow the ticket is in, as the repo's config has it (None without one)."""
    if config is None or row is None or row.workflow is None:
        return None
    return config.workflow(row.workflow)


async def config_or_none(engine: Engine, loaded: Loaded) -> RepoConfig | None:
    """The repo's config, or None when it is invalid or has no branch to be read from
    (dispatch then says so on the ticket). GitHub failing otherwise propagates: the
    delivery is tried again rather than decided on without the config."""
    assert loaded.repo is not None  # only tickets with a repository reach the reactions
    try:
        return (await engine.config_of(loaded.repo)).config
    except ConfigUnavailable:
        return None


@dataclass
class Decision:
    """A decision's context: its transaction, the engine, the ticket (its state row locked),
    the repository's config (None when invalid) and what must follow the commit."""

    session: AsyncSession
    engine: Engine
    loaded: Loaded
    config: RepoConfig | None
    followups: Followups

    @classmethod
    async def on(
        cls, session: AsyncSession, engine: Engine, loaded: Loaded, followups: Followups
    ) -> Decision:
        """A decision on a ticket with a repository, under its config (None when invalid)."""
        return cls(session, engine, loaded, await config_or_none(engine, loaded), followups)

    @property
    def ticket(self) -> Ticket:
        return self.loaded.ticket

    @property
    def row(self) -> TicketState | None:
        """The ticket's workflow state (None until the engine first takes it on)."""
        return self.loaded.state

    @property
    def flow(self) -> Workflow | None:
        """The workflow the ticket is in."""
        return workflow_of(self.config, self.loaded.state)

    def note(self, kind: str, message: str, *, run_id: str | None = None, **data: Any) -> None:
        note(self.session, self.ticket.id, kind, message, run_id=run_id, **data)

    async def transition(
        self, new_state: str, *, reason: str, relabel: bool | None = None, **changes: Any
    ) -> TicketState:
        """Move the ticket to `new_state` and set the columns in `changes` (`run_id=None`
        clears the run in flight), log it, and publish it: its status comment, and (when the
        state changed, or `relabel`) its status label and its Projects card."""
        created = self.loaded.state is None
        row = await ensure_state(self.session, self.loaded, new_state)
        old, was_waiting = row.state, row.needs_input
        run_id = changes.get("run_id", row.run_id)  # the run the change is about, for the log
        if run_id is None:
            run_id = row.run_id
        row.state = new_state
        for name, value in changes.items():
            setattr(row, name, value)
        if row.needs_input and new_state != State.IN_PROGRESS:
            # Answered, retried, canceled, merged: no run will read the question now.
            row.needs_input, row.question, row.question_run_id = False, None, None
            row.asked_at = row.reminded_at = None
        await stamp_moments(self.session, row, new_state)
        row.version += 1
        await self.session.flush()
        message = reason if old == new_state else f"{old} → {new_state}: {reason}"
        self.note("state", message, run_id=run_id, old=old, new=new_state)
        log.info("ticket_state", ticket_id=self.ticket.id, old=old, new=new_state, reason=reason)
        label = (created or old != new_state) if relabel is None else relabel
        await self.publish(label=label)
        if was_waiting != row.needs_input:
            await self._question_label(on=row.needs_input)
        if old != new_state:
            await self.notify_state(new_state, reason)
        return row

    async def notify_state(self, state: str, reason: str) -> None:
        """Tell the channels the control config's rules name that the ticket moved where
        people want to hear of: failed, ready for review, merged."""
        row = self.loaded.state
        event = STATE_EVENTS.get(state)
        if state == State.DONE and (row is None or row.pr_number is None):
            event = None  # closed or moved to done by hand: nothing was merged
        failure = row.last_failure if row is not None else None
        if event == "ticket_failed" and failure and failure not in reason:
            reason = f"{reason}\n{failure[-FAILURE_TAIL:]}"  # what failed, not only that
        if event is not None:
            await self.notify(event, reason)

    async def notify(self, event: str, reason: str) -> None:
        """Notification effects of `event` on this ticket (one per channel, once per ticket
        version: deciding it again adds nothing)."""
        notifications = self.engine.control.notifications
        row, repo, ticket = self.loaded.state, self.loaded.repo, self.ticket
        if not notifications.rules or row is None:
            return
        base = self.engine.deps.settings.base_url
        pull = None
        if row.pr_number is not None and repo is not None and repo.html_url:
            pull = f"{repo.html_url}/pull/{row.pr_number}"
        occurrence = Occurrence(
            id=f"ticket:{ticket.id}:v{row.version}",
            event=event,
            reason=reason,
            ticket=TicketRef(
                key=ticket.key,
                title=ticket.title,
                url=ticket.html_url,
                repo=repo.full_name if repo is not None else None,
            ),
            ticket_id=ticket.id,
            state=row.state,
            workflow=row.workflow,
            pull_request_url=pull,
            page_url=f"{base}/tickets/{ticket.id}",
        )
        self.followups.outbox.update(await notify(self.session, notifications, occurrence))

    async def send_back(self, flow: Workflow, *, reason: str, **changes: Any) -> None:
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
        await self.transition(flow.pickup, reason=reason, **(fresh | changes))
        self.followups.dispatch.add(self.ticket.id)

    async def publish(self, *, label: bool = True) -> None:
        """Outbox effects that show the ticket's current state on GitHub (or on the Linear or
        Jira issue the ticket is)."""
        row, repo, ticket, config = self.loaded.state, self.loaded.repo, self.ticket, self.config
        if row is not None and repo is not None and is_tracker(ticket):
            view = await self.status_view()
            lane = await publish_tracker(
                self.session,
                self.engine.control,
                ticket,
                row.state,
                row.version,
                config.status_labels if config is not None else None,
                render(view),
                relabel=label,
                # An issue a human closed in its tracker stays in the state they chose.
                move=label and not (ticket.state == "closed" and row.state in TERMINAL),
            )
            if view.pull_request_url and row.pr_number is not None:
                title = f"{repo.full_name}#{row.pr_number}: {ticket.title}"[:250]
                await link_pull_request(self.session, ticket, view.pull_request_url, title)
            self.followups.outbox.add(lane)
            return
        if row is None or repo is None or ticket.number is None:
            return
        number, inst = ticket.number, repo.installation_id
        labels = config.status_labels if config is not None else None
        effects: list[NewEffect] = []
        if label and labels is not None:
            wanted = labels.get(row.state)
            label_payload = {
                "repo": repo.full_name,
                "number": number,
                "add": wanted,
                "remove": sorted({name for name in labels.values() if name != wanted}),
                "color": label_color(row.state),
                "description": f"OpenASE: {row.state.replace('_', ' ')}",
            }
            card = {"repo": repo.full_name, "number": number, "state": row.state}
            effects += [
                NewEffect(
                    revision_key(f"label:{ticket.id}", row.version),
                    EffectKind.STATUS_LABEL,
                    label_payload,
                    ticket.id,
                    inst,
                ),
                NewEffect(
                    revision_key(f"project:{ticket.id}", row.version),
                    EffectKind.PROJECT_STATUS,
                    card,
                    ticket.id,
                    inst,
                ),
            ]
        comment = {
            "repo": repo.full_name,
            "number": number,
            "body": render(await self.status_view()),
        }
        effects.append(
            NewEffect(
                revision_key(f"status:{ticket.id}", row.version),
                EffectKind.STATUS_COMMENT,
                comment,
                ticket.id,
                inst,
            )
        )
        await add_effects(self.session, effects)  # one statement for the three
        self.followups.outbox.add(inst)

    async def _question_label(self, *, on: bool) -> None:
        """Carry `openase/needs-input` while the agent waits for an answer, on the issue or
        on its Linear or Jira issue."""
        ticket, repo, row = self.ticket, self.loaded.repo, self.loaded.state
        if repo is None or row is None:
            return
        add, remove = (QUESTION_LABEL, []) if on else (None, [QUESTION_LABEL])
        key = revision_key(f"question-label:{ticket.id}", row.version)
        if is_tracker(ticket):
            lane = await tracker_label(
                self.session, ticket, key=key, add=add, remove=remove, color=QUESTION_COLOR
            )
            self.followups.outbox.add(lane)
            return
        if ticket.number is None:
            return
        await add_effect(
            self.session,
            key=key,
            kind=EffectKind.STATUS_LABEL,
            payload={
                "repo": repo.full_name,
                "number": ticket.number,
                "add": add,
                "remove": remove,
                "color": QUESTION_COLOR,
                "description": "OpenASE: the agent asked a question and waits for the answer",
            },
            ticket_id=ticket.id,
            installation_id=repo.installation_id,
        )
        self.followups.outbox.add(repo.installation_id)

    async def status_view(self) -> StatusView:
        """What the status comment says about the ticket now."""
        row = self.loaded.state
        assert row is not None  # callers publish a ticket the engine tracks
        flow = self.flow
        run = None
        if row.run_id is not None:
            run = await self.session.get(Run, row.run_id)
        if run is None:
            run = await self.session.scalar(
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
        repo = self.loaded.repo
        pull_url = None
        if row.pr_number is not None and repo is not None and repo.html_url:
            pull_url = f"{repo.html_url}/pull/{row.pr_number}"
        live = row.state == State.IN_PROGRESS and row.run_id is not None
        return StatusView(
            state=row.state,
            workflow=row.workflow,
            attempt=row.attempt,
            max_attempts=flow.max_attempts if flow is not None else None,
            machine=run.machine if run is not None else None,
            harness=harness,
            cost_usd=row.cost_usd,
            budget_usd=self.ticket_budget(flow),
            run_url=self.engine.run_url(row.run_id) if live and row.run_id else None,
            pull_request_url=pull_url,
            last_failure=row.last_failure if row.state != State.DONE else None,
            held=row.held,
            note=row.waiting,
            checks=_checks(run),
            question=row.question if row.needs_input else None,
        )

    def ticket_budget(self, flow: Workflow | None) -> float | None:
        """What the ticket may spend in all under `flow` (bot/engine/budgets.py)."""
        provider = self.engine.control.providers.get(flow.provider) if flow else None
        return ticket_budget(flow, provider) if flow and provider else None

    async def comment(self, *, key: str, body: str) -> bool:
        """A one-off reply on the ticket (idempotent by `key`); whether it is a new one."""
        ticket, repo = self.ticket, self.loaded.repo
        if is_tracker(ticket):
            added = await tracker_comment(self.session, ticket, key=key, body=body)
            self.followups.outbox.add(lane(ticket))
            return added
        if repo is None or ticket.number is None:
            return False
        added = await add_effect(
            self.session,
            key=key,
            kind=EffectKind.COMMENT,
            payload={"repo": repo.full_name, "number": ticket.number, "body": body},
            ticket_id=ticket.id,
            installation_id=repo.installation_id,
        )
        self.followups.outbox.add(repo.installation_id)
        return added

    async def close_issue(self) -> None:
        """Close the ticket as completed (a PR into a non-default branch does not close it)."""
        ticket, repo = self.ticket, self.loaded.repo
        if repo is None or ticket.number is None or ticket.state != "open":
            return
        await add_effect(
            self.session,
            key=f"close:{ticket.id}",
            kind=EffectKind.ISSUE,
            payload={
                "repo": repo.full_name,
                "number": ticket.number,
                "state": "closed",
                "state_reason": "completed",
            },
            ticket_id=ticket.id,
            installation_id=repo.installation_id,
        )
        self.followups.outbox.add(repo.installation_id)


@dataclass
class Reacting:
    """A delivery being reacted to: its transaction, the engine, the installation it came
    from, and what the decisions on its events ask for after the commit."""

    session: AsyncSession
    engine: Engine
    installation_id: int | None = None
    followups: Followups = field(default_factory=Followups)

    async def decision(self, loaded: Loaded) -> Decision:
        """A decision on one of the delivery's tickets (it has a repository)."""
        return await Decision.on(self.session, self.engine, loaded, self.followups)


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
