"""`/approve` in a comment (DESIGN §5): a writer approves a ticket's PR, on the issue or on
the PR's conversation. Only this one command lives here; the full command set (and its
replies and reactions) is built on the same rules: one command per line, outside code,
quotes and HTML comments, never from a bot, never on an edit."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.base import CommentCreated
from bot.blockers import prose
from bot.engine import BOT, Engine, Followups, load, note, transition
from bot.engine_models import TicketState
from bot.merge_gate import can_write
from bot.models import Repository, Ticket
from bot.states import State

_APPROVE = re.compile(r"^/approve(?:\s|$)")


def says_approve(body: str) -> bool:
    """Whether a line of the comment, outside code and quotes, is the `/approve` command."""
    for line in prose(body).splitlines():
        stripped = line.strip()
        if not stripped.startswith(">") and _APPROVE.match(stripped):
            return True
    return False


async def approve_command(
    session: AsyncSession, engine: Engine, event: CommentCreated, followups: Followups
) -> None:
    comment = event.comment
    if comment.author_type == BOT or not says_approve(comment.body):
        return
    info = event.ticket
    if info.repo is None or info.number is None:
        return
    # The comment may be on the issue itself or on the conversation of the ticket's PR.
    ticket_ids = (
        await session.scalars(
            select(TicketState.ticket_id)
            .join(Ticket, Ticket.id == TicketState.ticket_id)
            .join(Repository, Repository.id == Ticket.repository_id)
            .where(
                Repository.id == info.repo.id,
                (Ticket.number == info.number) | (TicketState.pr_number == info.number),
            )
        )
    ).all()
    for ticket_id in ticket_ids:
        loaded = await load(session, ticket_id)
        if loaded is None or loaded.state is None or loaded.repo is None:
            continue
        repo = loaded.repo
        who = comment.author_login or "someone"
        if repo.installation_id is None or loaded.state.state != State.IN_REVIEW:
            continue
        if not await can_write(engine, repo.full_name, who, repo.installation_id):
            note(session, ticket_id, "command", f"/approve by @{who} ignored: no write access")
            continue
        config = (await engine.config_of(repo)).config
        await transition(
            session,
            engine,
            loaded,
            config,
            followups,
            loaded.state.state,
            reason=f"approved by @{who} (/approve)",
            approved=True,
        )
        followups.merge_checks.add(ticket_id)
