"""A ticket's first moments (labelled, PR, done) are stamped on its state row by the move
into each state, once, at the clock of the activity row logging the move; a ticket reopened
and done again keeps its first ones."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.config.states import State
from bot.deps import Deps
from bot.engine.context import Engine, Followups, ensure_state, load
from bot.engine.decision import Decision
from bot.registry import TrackerClients
from bot.tables.workflow import Activity, TicketState
from harness_store.db import transaction
from tests.support.board import add_ticket
from tests.support.lifecycle import control_config

Moments = tuple[datetime | None, datetime | None, datetime | None]


@pytest.fixture
def engine(deps: Deps, tmp_path: Path) -> Engine:
    return Engine(
        deps=deps,
        github=deps.github_app(),
        control=control_config(tmp_path / "agent.py"),
        trackers=TrackerClients(),
    )


async def decide(deps: Deps, engine: Engine, ticket_id: int, *states: str) -> None:
    """Move the ticket through `states` in one transaction (no repository: nothing to
    publish)."""
    async with transaction(deps.sessions) as session:
        loaded = await load(session, ticket_id)
        assert loaded is not None
        decision = Decision(session, engine, loaded, None, Followups())
        for state in states:
            await decision.transition(state, reason="test")


async def moments(deps: Deps, ticket_id: int) -> Moments:
    async with deps.sessions() as session:
        row = await session.get(TicketState, ticket_id)
        assert row is not None
        return row.labelled_at, row.pr_at, row.done_at


async def logged_at(deps: Deps, ticket_id: int, new: str) -> list[datetime]:
    """When the activity log says the ticket moved to `new`, oldest first."""
    async with deps.sessions() as session:
        rows = await session.scalars(
            select(Activity.at)
            .where(Activity.ticket_id == ticket_id, Activity.kind == "state")
            .where(Activity.data["new"].astext == new)
            .order_by(Activity.id)
        )
        return list(rows)


async def test_each_moment_is_stamped_once_by_the_first_move_into_its_state(
    deps: Deps, engine: Engine
) -> None:
    ticket = await add_ticket(deps, "acme/api#1", state=None)
    await decide(deps, engine, ticket, State.BACKLOG)
    assert await moments(deps, ticket) == (None, None, None)  # the backlog is not labelled

    await decide(deps, engine, ticket, State.TODO)
    [labelled] = await logged_at(deps, ticket, State.TODO)
    assert await moments(deps, ticket) == (labelled, None, None)

    await decide(deps, engine, ticket, State.IN_PROGRESS, State.IN_REVIEW)
    [pr] = await logged_at(deps, ticket, State.IN_REVIEW)
    assert await moments(deps, ticket) == (labelled, pr, None)

    await decide(deps, engine, ticket, State.MERGING, State.DONE)
    [done] = await logged_at(deps, ticket, State.DONE)
    assert labelled < pr < done
    assert await moments(deps, ticket) == (labelled, pr, done)

    # Reopened, a second PR, done again: lead time stays the first one's.
    await decide(deps, engine, ticket, State.TODO)
    await decide(deps, engine, ticket, State.IN_PROGRESS, State.IN_REVIEW)
    await decide(deps, engine, ticket, State.DONE)
    assert len(await logged_at(deps, ticket, State.DONE)) == 2
    assert await moments(deps, ticket) == (labelled, pr, done)


async def test_a_ticket_done_straight_away_has_no_pr_moment(deps: Deps, engine: Engine) -> None:
    ticket = await add_ticket(deps, "acme/api#2", state=None)
    await decide(deps, engine, ticket, State.TODO, State.DONE)
    [labelled] = await logged_at(deps, ticket, State.TODO)
    assert await moments(deps, ticket) == (labelled, None, labelled)  # one transaction


async def test_a_state_row_created_out_of_the_backlog_is_labelled(deps: Deps) -> None:
    waiting = await add_ticket(deps, "acme/api#3", state=None)
    asked = await add_ticket(deps, "acme/api#4", state=None)
    async with transaction(deps.sessions) as session:
        for ticket, state in ((waiting, State.TODO), (asked, State.BACKLOG)):
            loaded = await load(session, ticket)
            assert loaded is not None
            await ensure_state(session, loaded, state)
    labelled, pr, done = await moments(deps, waiting)
    assert labelled is not None
    assert (pr, done) == (None, None)
    assert await moments(deps, asked) == (None, None, None)
