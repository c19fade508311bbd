"""`POST /tickets/{id}/actions`: Run, Retry, Cancel, Hold, Unhold, Approve, Answer, Pin
harness and Ask, pressed on a ticket's (or its run's) page.

The form is checked here (signed in, CSRF token, a known action, its field well formed);
the action is stored as a `ticket_actions` row and enqueued for the control worker, which
carries it out as the slash command of the same name, with the same permission rule
(bot/engine/commands/web.py). The page waits up to WAIT_SECONDS for the outcome and
answers 303 to the ticket's page (or the run's, or the Ask's run) with `?action=ID`,
where the outcome is shown; one still pending is shown as such, and the page updates
when it is done. Redis away loses nothing: the row waits and the engine's tick sends it.
Each form carries a one-time nonce, so a form sent twice acts once.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import structlog
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bot.api.request import deps_of
from bot.config.workflow import HarnessPin
from bot.engine.commands.web import BUTTONS, actor_of
from bot.jobs import TICKET_ACTION_JOB, action_job_id
from bot.tables.actions import ActionState, TicketAction
from bot.tables.mirror import Ticket
from bot.web.auth import safe_next
from bot.web.pages import Refused, bad_request, form_of, html_endpoint, not_found, settings_of
from bot.web.session import current
from bot.web.ticket_keys import positive_id, ticket_path
from harness_store.db import transaction

log = structlog.get_logger(__name__)

WAIT_SECONDS = 5.0  # how long the POST waits for the control worker's outcome
POLL_SECONDS = 0.1
TEXT_LIMIT = 4_000  # characters of Retry guidance, an Ask question or an Answer
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_WORKFLOW = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# The form field each action's argument comes from (the others take none).
FIELDS = {
    "run": "workflow",
    "retry": "guidance",
    "harness": "harness",
    "ask": "question",
    "answer": "answer",
}


def nonces() -> dict[str, str]:
    """A fresh one-time nonce for each action form on a page."""
    return {name: secrets.token_urlsafe(18) for name in BUTTONS}


def _argument(request: Request, action: str, form: dict[str, str]) -> str:
    """The action's argument from its field, checked; a 400 page names what is wrong."""
    field = FIELDS.get(action)
    value = (form.get(field, "") if field else "").strip()
    if action == "run" and value and not _WORKFLOW.fullmatch(value):
        raise bad_request(
            request, "workflow: a workflow's name (letters, digits, . _ -); empty for the default."
        )
    if action in ("retry", "ask", "answer") and len(value) > TEXT_LIMIT:
        raise bad_request(request, f"{field}: at most {TEXT_LIMIT} characters ({len(value)} sent).")
    if action == "ask" and not value:
        raise bad_request(request, "question: write the question to ask the agent.")
    if action == "answer" and not value:
        raise bad_request(request, "answer: write the answer to the agent's question.")
    if action == "harness":
        try:
            HarnessPin.parse(value)
        except ValueError as error:
            raise bad_request(request, f"harness: {error} (NAME or NAME@VERSION).") from None
    return value


@html_endpoint
async def act_on_ticket(request: Request) -> Response:
    session = current(request, settings_of(request))
    ticket_id = positive_id(request, "The ticket id", request.path_params["id"])
    if session is None:
        # A signed-out POST cannot be replayed after signing in: back to the ticket.
        target = f"/tickets/{ticket_id}"
        raise Refused(RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303))
    form = await form_of(request)
    action = form.get("action", "")
    if action not in BUTTONS:
        raise bad_request(request, f"action must be one of: {', '.join(BUTTONS)}.")
    nonce = form.get("nonce", "")
    if not _NONCE.fullmatch(nonce):
        raise bad_request(request, "nonce: the form's one-time token is missing; reload the page.")
    args = _argument(request, action, form)
    deps = deps_of(request)
    async with transaction(deps.sessions) as db:
        ticket = await db.get(Ticket, ticket_id)
        if ticket is None:
            raise not_found(request, f"There is no ticket {ticket_id}.")
        stored = await _store(db, ticket_id, nonce, action, args, session.user, session.kind)
    if stored.ticket_id != ticket_id or stored.command != action:
        raise bad_request(request, "nonce: this form was already used; reload the page.")
    if stored.fresh:
        log.info("web_action_pressed", id=stored.id, command=action, by=session.label)
        await _enqueue(request, stored.id)
    outcome = await _wait(request, stored.id)
    back = safe_next(form.get("next")) if form.get("next") else None
    if outcome is not None and outcome.run_id and action == "ask":
        back = f"/runs/{quote(outcome.run_id, safe='')}"
    target = back or ticket_path(ticket.source, ticket.key, ticket.id)
    joiner = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{joiner}action={stored.id}#outcome", status_code=303)


@dataclass(frozen=True)
class Stored:
    id: int
    ticket_id: int
    command: str
    fresh: bool  # False: the nonce was used before (the form was sent twice)


async def _store(
    db: AsyncSession, ticket_id: int, nonce: str, action: str, args: str, user: str, kind: str
) -> Stored:
    new_id = await db.scalar(
        insert(TicketAction)
        .values(
            ticket_id=ticket_id,
            request=nonce,
            command=action,
            args=args,
            actor=user,
            actor_kind=kind,
            state=ActionState.PENDING,
        )
        .on_conflict_do_nothing(index_elements=[TicketAction.request])
        .returning(TicketAction.id)
    )
    if new_id is not None:
        return Stored(new_id, ticket_id, action, True)
    row = (
        await db.execute(
            select(TicketAction.id, TicketAction.ticket_id, TicketAction.command).where(
                TicketAction.request == nonce
            )
        )
    ).one()
    return Stored(row.id, row.ticket_id, row.command, False)


async def _enqueue(request: Request, action_id: int) -> None:
    try:
        await deps_of(request).redis.enqueue_job(
            TICKET_ACTION_JOB, action_id, _job_id=action_job_id(action_id)
        )
    except (RedisError, OSError) as error:
        # Stored: the engine's tick sends it when Redis is back.
        log.warning("web_action_not_enqueued", id=action_id, error=type(error).__name__)


async def _wait(request: Request, action_id: int) -> TicketAction | None:
    """The action once carried out, or None if it still waits after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        async with deps_of(request).sessions() as db:
            action = await db.get(TicketAction, action_id)
        if action is not None and action.state != ActionState.PENDING:
            return action
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(POLL_SECONDS)


@dataclass(frozen=True)
class Said:
    """An action's outcome as a page shows it (`?action=ID`)."""

    label: str
    who: str
    args: str
    state: str
    message: str | None
    run_id: str | None

    @property
    def tone(self) -> str:
        return {"done": "ok", "pending": "note"}.get(self.state, "bad")

    @property
    def headline(self) -> str:
        words = {
            ActionState.DONE: "done",
            ActionState.PENDING: "waiting for the control worker",
            ActionState.NOT_DONE: "not done",
            ActionState.REFUSED: "refused",
            ActionState.EXPIRED: "dropped",
        }
        return f"{self.label} by {self.who}: {words.get(ActionState(self.state), self.state)}"


async def said(
    request: Request, db: AsyncSession, ticket_id: int, *, key: str = "action"
) -> Said | None:
    """The outcome named by `?action=` when it is this ticket's (else nothing is shown)."""
    raw = request.query_params.get(key, "")
    if not raw.isdigit() or len(raw) > 18:
        return None
    action = await db.get(TicketAction, int(raw))
    if action is None or action.ticket_id != ticket_id:
        return None
    label = BUTTONS.get(action.command, action.command)
    who = actor_of(action).mention
    return Said(label, who, action.args, action.state, action.message, action.run_id)


def action_context(request: Request) -> dict[str, Any]:
    """What a page with action forms needs: fresh nonces, and whether anyone is signed in."""
    return {"nonces": nonces(), "can_act": current(request, settings_of(request)) is not None}
