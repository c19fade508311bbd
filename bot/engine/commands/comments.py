"""Where slash commands come from: a new comment on an issue or its PR's conversation, or a
new issue's body (`/run` in an issue template), on GitHub, Linear or Jira. Each becomes a
`Source` (who wrote it, and on a tracker, whether config maps them to a GitHub login) and
its commands are run by bot/engine/commands/registry.py."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.base import CommentCreated, TicketInfo
from bot.config.routes import tracker_identities
from bot.engine.access import Actor
from bot.engine.commands.answers import answer_from_comment
from bot.engine.commands.registry import Commands
from bot.engine.commands.run import Source, run_commands
from bot.engine.context import BOT, Engine, Loaded
from bot.engine.decision import Reacting
from bot.engine.tickets import load_routed, own_change, ticket_id_of
from bot.engine.tracker_tickets import is_tracker, tracker_actor
from bot.tables.mirror import Ticket
from bot.tables.workflow import TicketState


async def commented(r: Reacting, event: CommentCreated, commands: Commands) -> None:
    """A new comment's commands, on the issue itself or on its PR's conversation."""
    session, engine = r.session, r.engine
    comment = event.comment
    if not comment.body:
        return
    ticket_ids = await _tickets_commented(session, event.ticket)
    commanding = "/" in comment.body
    if not commanding:  # no commands: of interest only as an answer the agent waits for
        ticket_ids = await _waiting_for_answer(session, ticket_ids)
    author = Actor(comment.author_login or "ghost", comment.author_type)
    wanted = any(line.strip().startswith("/run") for line in comment.body.splitlines())
    for ticket_id in ticket_ids:
        loaded = await load_routed(session, engine, ticket_id, wanted=wanted)
        if loaded is None or loaded.repo is None:
            continue
        if is_tracker(loaded.ticket):
            if await own_change(engine, loaded, None, comment.author_id):
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
        ran = await run_commands(r, loaded, source, commands) if commanding else 0
        if not ran:
            # While the agent waits, a writer's plain comment is the answer it waits for.
            await answer_from_comment(r, loaded, source)


async def body_commands(r: Reacting, loaded: Loaded, info: TicketInfo, commands: Commands) -> None:
    """A new issue's body may carry commands too (`/run` in an issue template)."""
    engine = r.engine
    if not info.body or "/" not in info.body:
        return
    if is_tracker(loaded.ticket):
        tracker = loaded.ticket.tracker or {}
        creator_id = tracker.get("creator_id") or tracker.get("reporter_id")
        creator_email = tracker.get("creator_email") or tracker.get("reporter_email")
        if await own_change(engine, loaded, None, creator_id):
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
        await run_commands(r, loaded, source, commands)
        return
    login = info.author_login or "ghost"
    author = Actor(login, BOT if login.endswith("[bot]") else "User")
    source = Source(info.body, author, None, f"i{loaded.ticket.id}")
    await run_commands(r, loaded, source, commands)


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
) -> Source:
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


async def _tickets_commented(session: AsyncSession, info: TicketInfo) -> list[int]:
    """The ticket commented on, or the tickets whose PR the conversation is."""
    own = await ticket_id_of(session, info)
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


async def _waiting_for_answer(session: AsyncSession, ticket_ids: list[int]) -> list[int]:
    if not ticket_ids:
        return []
    waiting = await session.scalars(
        select(TicketState.ticket_id).where(
            TicketState.ticket_id.in_(ticket_ids), TicketState.needs_input.is_(True)
        )
    )
    return list(waiting.all())


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None
