"""Actions pressed on a ticket's web page (issue #16): each is the slash command of the
same name, carried out by the same handler after the same permission check
(bot/engine/commands/run.py `carry_out_command`) — a signed-in GitHub user needs what the
command needs of a commenter (write access, or a listing under `commands:`), the web
page's admin may do all.

The web process stores a `ticket_actions` row (bot.tables.actions) and enqueues its id;
`carry_out_action` decides on it in the control worker's transaction with the ticket's row
locked, and records how it went on the row in that same transaction, so an action takes
effect exactly once however often its job runs. Nothing is said on the issue (no comment
was written to react to); the activity log names the person, and `/ask`'s answer is posted
in the thread as for the comment.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.engine.access import ADMIN, Actor, GitHubPermissions
from bot.engine.commands.parse import ParsedCommand
from bot.engine.commands.registry import Commands, Outcome
from bot.engine.commands.run import REFUSED, carry_out_command
from bot.engine.context import Engine, Followups
from bot.engine.decision import Decision, note
from bot.engine.tickets import load_routed
from bot.tables.actions import ActionState, TicketAction

log = structlog.get_logger(__name__)

# The commands a ticket page offers, by the label of their button; the others only read
# (`/status`, `/help`).
BUTTONS = {
    "run": "Run",
    "retry": "Retry",
    "cancel": "Cancel",
    "hold": "Hold",
    "unhold": "Unhold",
    "approve": "Approve",
    "answer": "Answer",
    "harness": "Pin harness",
    "ask": "Ask",
}
# An action no worker carried out within this long is dropped, not done late: someone who
# pressed Retry an hour ago may have done something else since.
EXPIRE_AFTER = timedelta(minutes=10)
WEB_ADMIN = "admin"  # TicketAction.actor_kind of the admin-token session


async def carry_out_action(
    session: AsyncSession, engine: Engine, action: TicketAction, commands: Commands
) -> Followups:
    """Decide on a pending action (its row locked by the caller) and record how it went;
    what must follow the commit."""
    followups = Followups(decision=f"web-action:{action.id}")
    outcome, state = await _decide(session, engine, action, commands, followups)
    action.state = state
    action.message = _message(outcome) or None
    action.finished_at = datetime.now(UTC)
    for spec, _, _ in followups.sends:
        action.run_id = spec.run_id  # an Ask's run, for its page
    pressed = (
        f"{_sentence(actor_of(action).mention)} pressed "
        f"{BUTTONS.get(action.command, action.command)} on the web page"
    )
    detail = f": {action.args[:200]}" if action.args else ""
    result = "" if state == ActionState.DONE else f" — {state.replace('_', ' ')}"
    if result and action.message:
        result += f": {action.message}"
    note(
        session,
        action.ticket_id,
        "command",
        f"{pressed}{detail}{result}"[:2000],
        run_id=action.run_id,
        via="web",
        command=action.command,
        by=action.actor,
        outcome=state,
    )
    log.info("web_action", id=action.id, command=action.command, by=action.actor, outcome=state)
    return followups


async def _decide(
    session: AsyncSession,
    engine: Engine,
    action: TicketAction,
    commands: Commands,
    followups: Followups,
) -> tuple[Outcome, ActionState]:
    spec = commands.get(action.command)
    if spec is None or action.command not in BUTTONS:
        return Outcome(False, f"there is no {action.command!r} action."), ActionState.NOT_DONE
    loaded = await load_routed(session, engine, action.ticket_id, wanted=action.command == "run")
    if loaded is None or loaded.repo is None or loaded.repo.installation_id is None:
        reason = (
            "the ticket is not in a repository the GitHub App is installed on (or its "
            "tracker is not routed to one), so no agent can work on it."
        )
        return Outcome(False, reason), ActionState.NOT_DONE
    repo, installation = loaded.repo, loaded.repo.installation_id
    decision = await Decision.on(session, engine, loaded, followups)
    admin = action.actor_kind == WEB_ADMIN
    actor = actor_of(action)
    # Signed in with GitHub: their login's access to the repository decides, on a Linear
    # or Jira ticket too (as for a tracker user config maps to a GitHub login).
    permissions = GitHubPermissions(
        engine.github, repo.full_name, installation, cache=engine.permissions
    )
    line = f"/{action.command} {action.args}".strip()
    parsed = ParsedCommand(action.command, action.args, line, 1)
    outcome, reaction = await carry_out_command(
        decision, actor, parsed, spec, permissions, commands, admin=admin
    )
    if reaction == REFUSED:
        return outcome, ActionState.REFUSED
    return outcome, ActionState.DONE if outcome.done else ActionState.NOT_DONE


def _sentence(text: str) -> str:
    """`text` to open a sentence ("The admin"), a login's case kept."""
    return text[:1].upper() + text[1:]


def actor_of(action: TicketAction) -> Actor:
    """Who pressed it, as the command's handler sees them."""
    return Actor(action.actor, ADMIN if action.actor_kind == WEB_ADMIN else "User")


def _message(outcome: Outcome) -> str:
    """The handler's reply as a sentence for the page (it was written for a comment)."""
    # Empty when there is nothing to add: the page's headline says it.
    return _sentence((outcome.reply or "").strip().removeprefix("🚫").strip())


async def expire_actions(session: AsyncSession) -> int:
    """Drop actions older than EXPIRE_AFTER that no worker carried out; how many."""
    dropped = await session.execute(
        update(TicketAction)
        .where(
            TicketAction.state == ActionState.PENDING,
            TicketAction.created_at < func.now() - EXPIRE_AFTER,
        )
        .values(
            state=ActionState.EXPIRED,
            finished_at=func.now(),
            message=(
                "No control worker carried it out within "
                f"{int(EXPIRE_AFTER.total_seconds() // 60)} minutes, so it was dropped; "
                "press it again if it is still wanted."
            ),
        )
        .returning(TicketAction.id)
    )
    return len(dropped.all())


async def stranded_actions(session: AsyncSession, older_than: timedelta) -> list[int]:
    """Pending actions whose job may have been lost (Redis away when they were stored)."""
    return list(
        (
            await session.scalars(
                select(TicketAction.id)
                .where(
                    TicketAction.state == ActionState.PENDING,
                    TicketAction.created_at < func.now() - older_than,
                )
                .order_by(TicketAction.created_at)
                .limit(100)
            )
        ).all()
    )
