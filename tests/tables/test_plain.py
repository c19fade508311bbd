"""PlainStatement: SQLAlchemy-built statements run on the transaction's asyncpg connection."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import bindparam, literal_column, select, text
from sqlalchemy.dialects.postgresql import insert

from bot.deps import Deps
from bot.tables.mirror import Installation, Ticket
from bot.tables.plain import PlainStatement
from harness_store.db import transaction

# A JSON parameter (the ticket's tracker), and constants in statements ('deleted', '').
_STORE = PlainStatement(
    insert(Ticket)
    .values(
        source=bindparam("source"),
        external_id=bindparam("external_id"),
        key=bindparam("external_id"),
        title=bindparam("title"),
        body="",  # a constant, not the column's default (which SQLAlchemy's execution computes)
        assignees=bindparam("nobody", type_=Ticket.__table__.c.assignees.type),
        labels=bindparam("nobody", type_=Ticket.__table__.c.labels.type),
        state=bindparam("state"),
        tracker=bindparam("tracker", type_=Ticket.__table__.c.tracker.type),
    )
    .returning(Ticket.id, Ticket.tracker, literal_column("'kept'").label("constant"))
)
_NOT_DELETED = PlainStatement(
    select(Ticket.external_id).where(Ticket.state != "deleted").order_by(Ticket.external_id)
)


def test_refuses_a_statement_whose_defaults_sqlalchemy_would_compute() -> None:
    with pytest.raises(ValueError, match=r"Python-side defaults.*'body', 'assignees', 'labels'"):
        PlainStatement(insert(Ticket).values(source="x", external_id="y", key="z", state="open"))


def _ticket(external_id: str, state: str = "open", **tracker: Any) -> dict[str, Any]:
    return {
        "source": "linear",
        "external_id": external_id,
        "title": "A title",
        "state": state,
        "nobody": [],
        "tracker": tracker or None,
    }


async def test_runs_on_asyncpg_in_the_transaction_with_sqlalchemys_parameter_handling(
    deps: Deps,
) -> None:
    async with transaction(deps.sessions) as session:
        await session.execute(text("SELECT 1"))  # the transaction has begun on the connection
        rows = await _STORE.fetch(session, _ticket("A-1", team="ENG", label_ids={"x": "bug"}))
        await _STORE.fetch(session, _ticket("A-2", state="deleted"))
        assert [row[0] for row in await _NOT_DELETED.fetch(session, {})] == ["A-1"]
    ticket_id, tracker, constant = rows[0]
    assert constant == "kept"
    assert isinstance(tracker, dict)  # JSONB stored as a document, not a JSON string
    async with deps.sessions() as session:
        stored = await session.get(Ticket, ticket_id)
    assert stored is not None
    assert stored.tracker == {"team": "ENG", "label_ids": {"x": "bug"}}


async def test_a_failed_transaction_takes_its_plain_statements_with_it(deps: Deps) -> None:
    class Abandoned(Exception):
        pass

    try:
        async with transaction(deps.sessions) as session:
            await session.execute(text("SELECT 1"))
            await _STORE.fetch(session, _ticket("B-1"))
            raise Abandoned
    except Abandoned:
        pass
    async with deps.sessions() as session:
        assert (await session.execute(select(Ticket))).first() is None


async def test_as_a_sessions_first_statement_it_runs_in_the_sessions_transaction(
    deps: Deps,
) -> None:
    """asyncpg alone would autocommit here; SQLAlchemy begins the transaction instead."""
    async with deps.sessions() as session:
        await _STORE.fetch(session, _ticket("C-1"))
        await session.rollback()
    async with deps.sessions() as session:
        assert (await session.execute(select(Ticket))).first() is None
        await session.execute(insert(Installation).values(id=1, account_login="", account_type=""))
        await _STORE.fetch(session, _ticket("C-2"))
        await session.commit()
    async with deps.sessions() as session:
        assert [t.external_id for t in (await session.execute(select(Ticket))).scalars()] == ["C-2"]
