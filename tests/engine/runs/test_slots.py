"""A claim takes its machine under that machine's lock (bot/engine/runs/slots.py): claims
going to different machines do not wait for each other, a machine is never given more
runs than it has slots, and a claim that waited for a machine counts its runs again."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.deps import Deps
from bot.engine.runs.machines import Machine, Requirements
from bot.engine.runs.slots import take_slot
from bot.tables.mirror import Ticket
from bot.tables.workflow import Run
from tests.engine.runs.test_machines import machine

NEEDS = Requirements("command")


def live(name: str, capacity: int) -> Machine:
    """A machine whose heartbeat is now, with `capacity` slots."""
    return replace(machine(name, capacity=capacity), heartbeat_at=time.time())


async def _give_run(session: AsyncSession, chosen: Machine, run_id: str) -> None:
    ticket = Ticket(source="github", external_id=run_id, key=f"o/r#{run_id}", state="open")
    session.add(ticket)
    await session.flush()
    session.add(
        Run(
            id=run_id,
            ticket_id=ticket.id,
            workflow="coder",
            attempt=1,
            machine=chosen.name,
            spec={},
        )
    )
    await session.flush()


async def test_claims_going_to_different_machines_do_not_wait_for_each_other(
    deps: Deps,
) -> None:
    machines = [live("a", 2), live("b", 2)]
    async with deps.sessions() as first, first.begin():
        taken = await take_slot(first, machines, NEEDS)
        assert taken is not None
        assert taken.name == "a"  # the best: as many free slots, first by name
        async with deps.sessions() as second, second.begin():
            # "a" is being given a run by the open transaction: "b", at once.
            other = await asyncio.wait_for(take_slot(second, machines, NEEDS), 2)
            assert other is not None
            assert other.name == "b"


async def test_a_claim_waits_for_the_machine_being_filled_then_counts_its_runs_again(
    deps: Deps,
) -> None:
    machines = [live("only", 2)]
    async with deps.sessions() as first, first.begin():
        taken = await take_slot(first, machines, NEEDS)
        assert taken is not None
        await _give_run(first, taken, "r1")
        async with deps.sessions() as second, second.begin():
            waiting = asyncio.create_task(take_slot(second, machines, NEEDS))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # it waits for the machine's lock
            await first.commit()  # "only" has one run now, and one slot left
            second_taken = await asyncio.wait_for(waiting, 5)
            assert second_taken is not None
            await _give_run(second, second_taken, "r2")
    async with deps.sessions() as third, third.begin():
        assert await take_slot(third, machines, NEEDS) is None  # both slots taken


async def test_many_claims_at_once_never_overfill_a_machine(deps: Deps) -> None:
    machines = [live("a", 2), live("b", 2), live("c", 3)]

    async def claim(n: int) -> str | None:
        async with deps.sessions() as session, session.begin():
            taken = await take_slot(session, machines, NEEDS)
            if taken is None:
                return None
            await _give_run(session, taken, f"run-{n}")
            await asyncio.sleep(0.01)  # the rest of a claim's transaction
            return taken.name

    chosen = await asyncio.gather(*(claim(n) for n in range(12)))
    assert Counter(name for name in chosen if name) == {"a": 2, "b": 2, "c": 3}
    async with deps.sessions() as session:
        stored = Counter((await session.scalars(select(Run.machine))).all())
    assert stored == {"a": 2, "b": 2, "c": 3}
