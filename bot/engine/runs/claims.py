"""Claiming a ticket for a run: one conditional UPDATE that checks every limit, inside a
transaction that holds the claim lock of the ticket's repository (DESIGN §3.7).

Under READ COMMITTED two transactions could each count the runs in progress, both see room
for one more, and both claim. A transaction-scoped advisory lock per repository makes the
count-and-claim of one repository serial across every worker; workflow limits span
repositories, so their lock is taken too (always in the same order: no deadlock).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import ScalarSelect

from bot.config.states import State
from bot.tables.mirror import Ticket
from bot.tables.workflow import TicketState

# Advisory lock namespaces (the first key of the two-int form), so our locks never collide
# with another use of advisory locks in the same database.
_REPO_LOCK = 0x0A5E0001
_WORKFLOW_LOCK = 0x0A5E0002


@dataclass(frozen=True)
class Limits:
    """Runs in progress allowed at once; None means no limit at that scope."""

    workflow: int | None = None
    repo: int | None = None


@dataclass(frozen=True)
class Claimed:
    ticket_id: int
    run_id: str
    attempt: int  # this run's attempt number in the stage
    version: int  # the ticket state's version after the claim


def _key(text_: str) -> int:
    """A stable 32-bit signed key for an advisory lock."""
    return zlib.crc32(text_.encode()) - 2**31


async def lock_claims(
    session: AsyncSession, repository_id: int | None, workflow: str, limits: Limits
) -> None:
    """Serialise claims for this workflow and repository until the transaction ends, each
    only when it has a limit: without one nothing is counted, and the claim's conditional
    UPDATE of the ticket's own row is all that keeps one ticket from starting twice."""
    if limits.workflow is not None:
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :key)"),
            {"space": _WORKFLOW_LOCK, "key": _key(workflow)},
        )
    if limits.repo is not None and repository_id is not None:
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :key)"),
            {"space": _REPO_LOCK, "key": _key(str(repository_id))},
        )


def _in_progress(
    workflow: str | None = None, repository_id: int | None = None
) -> ScalarSelect[int]:
    # A ticket waiting for a person's answer has no run: it holds no slot meanwhile.
    query = (
        select(func.count())
        .select_from(TicketState)
        .where(TicketState.state == State.IN_PROGRESS, TicketState.needs_input.is_(False))
    )
    if workflow is not None:
        query = query.where(TicketState.workflow == workflow)
    if repository_id is not None:
        query = query.join(Ticket, Ticket.id == TicketState.ticket_id).where(
            Ticket.repository_id == repository_id
        )
    return query.scalar_subquery()


async def room(
    session: AsyncSession, *, repository_id: int | None, workflow: str, limits: Limits
) -> bool:
    """Whether the limits leave room for one more run by what is committed now, without the
    locks: no means `claim` would refuse too, so the caller spares itself the work before it
    (a git token, a spec); yes is only a hint, `claim` decides."""
    checks = []
    if limits.workflow is not None:
        checks.append(_in_progress(workflow=workflow) < limits.workflow)
    if limits.repo is not None and repository_id is not None:
        checks.append(_in_progress(repository_id=repository_id) < limits.repo)
    if not checks:
        return True
    return bool(await session.scalar(select(and_(*checks))))


async def claim(
    session: AsyncSession,
    *,
    ticket_id: int,
    repository_id: int | None,
    workflow: str,
    pickup: str,
    run_id: str,
    limits: Limits,
    now: datetime,
) -> Claimed | None:
    """Move the ticket from `pickup` to in_progress for `run_id`, if every condition holds
    at this instant: still in `pickup`, not held, its backoff over, and room under each
    limit. None when it could not be claimed (someone else did, or no room)."""
    await lock_claims(session, repository_id, workflow, limits)
    conditions = [
        TicketState.ticket_id == ticket_id,
        TicketState.state == pickup,
        TicketState.held.is_(False),
        or_(TicketState.next_attempt_at.is_(None), TicketState.next_attempt_at <= now),
    ]
    if limits.workflow is not None:
        conditions.append(_in_progress(workflow=workflow) < limits.workflow)
    if limits.repo is not None and repository_id is not None:
        conditions.append(_in_progress(repository_id=repository_id) < limits.repo)
    result = await session.execute(
        update(TicketState)
        .where(and_(*conditions))
        .values(
            state=State.IN_PROGRESS,
            workflow=workflow,
            run_id=run_id,
            attempt=TicketState.attempt + 1,
            version=TicketState.version + 1,
            next_attempt_at=None,
        )
        .returning(TicketState.attempt, TicketState.version)
    )
    row = result.first()
    if row is None:
        return None
    return Claimed(ticket_id=ticket_id, run_id=run_id, attempt=row.attempt, version=row.version)
