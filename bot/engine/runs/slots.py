"""Taking a machine's slot for a claim: the machine is chosen under its own lock.

A claim's run counts against its machine once committed (`in_flight`), so two claims
choosing at once could both count the same free slot and pile onto one machine while
another stands idle. One lock for every claim prevented that, but every claim of every
repository then waited for the one before to commit: at 200 tickets at once, up to 18
dispatches queued 1-5 s on it. Each machine has a lock of its own now, held until the
claim commits; a claim takes the best machine whose lock is free, so claims going to
different machines do not wait for each other, and it counts that machine's runs again
once it holds the lock.

No deadlock: a claim waits for a machine's lock only while it holds none (otherwise it
only tries them), and it takes the claim locks (bot.engine.runs.claims) only after.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.engine.runs.machine_controls import in_flight
from bot.engine.runs.machines import Machine, Requirements, has_free_slot, ranked
from bot.tables.workflow import Run, RunState

# Advisory lock namespace of the machines' locks (bot.engine.runs.claims' are 1 and 2; 3
# was the one lock all claims shared).
MACHINE_LOCK = 0x0A5E0004

_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(:space, :key)")
_LOCK = text("SELECT pg_advisory_xact_lock(:space, :key)")


def _key(machine: Machine) -> int:
    return zlib.crc32(machine.name.encode()) - 2**31


async def take_slot(
    session: AsyncSession, candidates: Sequence[Machine], needs: Requirements
) -> Machine | None:
    """The machine this transaction's run goes to, its lock held until the transaction
    ends; None when none has a free slot (by the runs committed so far)."""
    best = ranked(candidates, needs, in_flight=await in_flight(session))
    holding = False
    for machine in best:
        if await _try(session, machine):
            holding = True
            if await _has_room(session, machine):
                return machine
    if holding or not best:
        return None  # every machine locked was full: those not locked are being filled
    # Every machine with a free slot is taking a run right now: wait for the best one.
    await session.execute(_LOCK, {"space": MACHINE_LOCK, "key": _key(best[0])})
    if await _has_room(session, best[0]):
        return best[0]
    # It was filled meanwhile; another may still have room (tried, not waited for: this
    # transaction holds a machine's lock now).
    again = ranked(candidates, needs, in_flight=await in_flight(session))
    for machine in again:
        if (
            machine.name != best[0].name
            and await _try(session, machine)
            and await _has_room(session, machine)
        ):
            return machine
    return None


async def _try(session: AsyncSession, machine: Machine) -> bool:
    locked = await session.scalar(_TRY_LOCK, {"space": MACHINE_LOCK, "key": _key(machine)})
    return bool(locked)


async def _has_room(session: AsyncSession, machine: Machine) -> bool:
    """Whether the machine has a free slot by the runs committed now (read under its lock,
    so no other claim is adding one)."""
    sent = await session.scalar(
        select(func.count()).where(
            Run.machine == machine.name, Run.state.in_((RunState.QUEUED, RunState.RUNNING))
        )
    )
    return has_free_slot(machine, int(sent or 0))
