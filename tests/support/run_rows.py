"""A running run's row on a ticket of its own, as the engine's tests set one up."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.tables.mirror import Ticket
from bot.tables.workflow import Run, RunState


async def add_running_run(session: AsyncSession, run_id: str, *, number: int = 1) -> Run:
    """A run of the coder workflow running on machine m1, on a new open ticket o/r#number."""
    ticket = Ticket(source="github", external_id=run_id, key=f"o/r#{number}", state="open")
    session.add(ticket)
    await session.flush()
    run = Run(
        id=run_id,
        ticket_id=ticket.id,
        workflow="coder",
        attempt=1,
        machine="m1",
        state=RunState.RUNNING,
        spec={},
        queued_at=datetime.now(UTC),
    )
    session.add(run)
    return run
