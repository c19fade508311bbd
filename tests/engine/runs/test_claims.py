"""Claims: exactly one winner per ticket, and concurrency limits that hold when many
workers claim at the same instant."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from bot.config.states import State
from bot.deps import Deps
from bot.engine.runs.claims import Limits, claim, room
from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import TicketState

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


async def seed(deps: Deps, count: int, *, repositories: int = 1) -> list[tuple[int, int]]:
    """`count` tickets in todo, spread over `repositories`; (ticket id, repository id)."""
    out = []
    async with deps.sessions() as session, session.begin():
        repos = []
        for r in range(repositories):
            repo = Repository(id=1000 + r, full_name=f"acme/r{r}", installation_id=None)
            session.add(repo)
            repos.append(repo.id)
        await session.flush()
        for n in range(count):
            repo_id = repos[n % repositories]
            ticket = Ticket(
                source="github",
                external_id=str(n),
                key=f"acme/r#{n}",
                state="open",
                repository_id=repo_id,
            )
            session.add(ticket)
            await session.flush()
            session.add(TicketState(ticket_id=ticket.id, state=State.TODO))
            out.append((ticket.id, repo_id))
    return out


async def try_claim(
    deps: Deps, ticket_id: int, repository_id: int, limits: Limits, run_id: str
) -> bool:
    async with deps.sessions() as session, session.begin():
        claimed = await claim(
            session,
            ticket_id=ticket_id,
            repository_id=repository_id,
            workflow="coder",
            pickup=State.TODO,
            run_id=run_id,
            limits=limits,
            now=NOW,
        )
        return claimed is not None


async def in_progress(deps: Deps) -> int:
    async with deps.sessions() as session:
        count = await session.scalar(
            select(func.count()).where(TicketState.state == State.IN_PROGRESS)
        )
        return int(count or 0)


async def test_a_ticket_is_claimed_once_whoever_asks(deps: Deps) -> None:
    [(ticket_id, repo_id)] = await seed(deps, 1)
    wins = await asyncio.gather(
        *(try_claim(deps, ticket_id, repo_id, Limits(), f"run-{n}") for n in range(8))
    )
    assert sum(wins) == 1
    async with deps.sessions() as session:
        state = await session.get(TicketState, ticket_id)
    assert state is not None
    assert (state.state, state.attempt, state.version) == (State.IN_PROGRESS, 1, 1)


async def test_twenty_tickets_at_once_honour_the_repository_limit(deps: Deps) -> None:
    tickets = await seed(deps, 20)
    wins = await asyncio.gather(
        *(
            try_claim(deps, ticket_id, repo_id, Limits(repo=3), f"run-{ticket_id}")
            for ticket_id, repo_id in tickets
        )
    )
    assert sum(wins) == 3
    assert await in_progress(deps) == 3


async def test_the_workflow_limit_spans_repositories(deps: Deps) -> None:
    tickets = await seed(deps, 20, repositories=4)
    wins = await asyncio.gather(
        *(
            try_claim(deps, ticket_id, repo_id, Limits(workflow=5, repo=2), f"run-{ticket_id}")
            for ticket_id, repo_id in tickets
        )
    )
    assert sum(wins) == 5
    async with deps.sessions() as session:
        per_repo = (
            await session.execute(
                select(Ticket.repository_id, func.count())
                .join(TicketState, TicketState.ticket_id == Ticket.id)
                .where(TicketState.state == State.IN_PROGRESS)
                .group_by(Ticket.repository_id)
            )
        ).all()
    assert all(count <= 2 for _, count in per_repo)


async def test_held_tickets_and_backoff_wait(deps: Deps) -> None:
    (held, repo_id), (backing_off, _), (due, _) = await seed(deps, 3)
    async with deps.sessions() as session, session.begin():
        held_state = await session.get(TicketState, held)
        waiting = await session.get(TicketState, backing_off)
        ready = await session.get(TicketState, due)
        assert held_state is not None
        assert waiting is not None
        assert ready is not None
        held_state.held = True
        waiting.next_attempt_at = NOW + timedelta(minutes=2)
        ready.next_attempt_at = NOW - timedelta(seconds=1)
    assert not await try_claim(deps, held, repo_id, Limits(), "a")
    assert not await try_claim(deps, backing_off, repo_id, Limits(), "b")
    assert await try_claim(deps, due, repo_id, Limits(), "c")


async def room_for(deps: Deps, repo_id: int, limits: Limits) -> bool:
    async with deps.sessions() as session:
        return await room(session, repository_id=repo_id, workflow="coder", limits=limits)


async def test_room_foretells_the_claim_and_a_ticket_awaiting_an_answer_holds_no_slot(
    deps: Deps,
) -> None:
    """Dispatch asks `room` before it mints a token and builds a spec: where it says no,
    the claim would refuse as well."""
    (first, repo_id), (second, _), (third, _) = await seed(deps, 3)
    limits = Limits(repo=1)
    assert await room_for(deps, repo_id, limits)
    assert await try_claim(deps, first, repo_id, limits, "run-1")
    assert not await room_for(deps, repo_id, limits)
    assert not await try_claim(deps, second, repo_id, limits, "run-2")
    assert await room_for(deps, repo_id, Limits())  # no limit, always room
    async with deps.sessions() as session, session.begin():
        asking = await session.get(TicketState, first)
        assert asking is not None
        asking.needs_input = True  # its run ended with a question: it waits, holding nothing
    assert await room_for(deps, repo_id, limits)
    assert await try_claim(deps, third, repo_id, limits, "run-3")
    assert not await room_for(deps, repo_id, Limits(workflow=1))
