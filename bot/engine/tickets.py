"""Which ticket an event is about, and whether the engine works on it: a Linear or Jira
ticket is the engine's only when config routes it to a repository the App can reach; a
change coming back from the bot itself is recognised so it is not acted on again."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.base import TicketInfo
from bot.engine.context import BOT, Engine, Loaded, load
from bot.engine.tracker_tickets import is_tracker, route_ticket, unreachable_route
from bot.tables.mirror import Ticket


async def ticket_id_of(session: AsyncSession, info: TicketInfo) -> int | None:
    """The mirrored ticket's id (None: the mirror does not have it)."""
    found: int | None = await session.scalar(
        select(Ticket.id).where(
            Ticket.source == info.source, Ticket.external_id == info.external_id
        )
    )
    return found


async def load_event_ticket(
    session: AsyncSession, engine: Engine, info: TicketInfo
) -> Loaded | None:
    """The ticket an event is about, if the engine works on it (see `load_routed`)."""
    ticket_id = await ticket_id_of(session, info)
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
            return None  # mirrored only; the worker warned at start
        current = loaded.state.state if loaded.state is not None else None
        route = await route_ticket(session, engine.control, engine.github, loaded.ticket, current)
        if route is None:
            await unreachable_route(session, engine, loaded, wanted=wanted)
            return None
        loaded = await load(session, ticket_id)
    if loaded is None or loaded.repo is None or loaded.repo.installation_id is None:
        return None
    return loaded


async def own_change(
    engine: Engine, loaded: Loaded, actor_type: str | None, actor_id: str | None
) -> bool:
    """Whether a change coming back is the bot's own (GitHub says Bot; Linear and Jira
    name the API key's user, which the engine compares with its own)."""
    if actor_type == BOT:
        return True
    return is_tracker(loaded.ticket) and await engine.trackers.is_self(
        loaded.ticket.source, actor_id
    )
