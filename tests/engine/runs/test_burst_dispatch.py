"""A burst of tickets on fewer runner slots, decided by two control workers at once: each
ticket starts once, no machine is ever sent more runs than it has slots, the waiting
tickets start as slots free, and the registry shows the slots free again (issue #18)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from bot.config.states import State
from bot.deps import Deps
from bot.engine.runs.machine_controls import free_slots_now
from bot.engine.runs.machines import registered
from bot.tables.workflow import Run, RunState, TicketState
from tests.conftest import OpenWorld

TICKETS = 8


async def test_two_workers_fill_the_slots_a_burst_leaves_and_never_overfill_one(
    open_world: OpenWorld, deps: Deps
) -> None:
    # Two runners of one slot each: the machines, not a workflow limit, hold the burst back.
    async with open_world(runners=2, workers=2, max_runs=1, agent_sleep=0.5) as w:
        for number in range(1, TICKETS + 1):
            w.add_issue(number, f"Ticket {number}", "[slow] add PASS")
        await asyncio.gather(*(w.label(number, "openase") for number in range(1, TICKETS + 1)))

        most_per_machine = 0
        most_in_progress = 0

        async def all_in_review() -> bool:
            nonlocal most_per_machine, most_in_progress
            async with deps.sessions() as session:
                sent = (
                    await session.execute(
                        select(Run.machine, func.count())
                        .where(Run.state.in_((RunState.QUEUED, RunState.RUNNING)))
                        .group_by(Run.machine)
                    )
                ).all()
                states = (await session.scalars(select(TicketState.state))).all()
            most_per_machine = max([most_per_machine, *(count for _, count in sent)])
            most_in_progress = max(
                most_in_progress, sum(state == State.IN_PROGRESS for state in states)
            )
            return len(states) == TICKETS and all(state == State.IN_REVIEW for state in states)

        await w.until(all_in_review, within=180, what=f"all {TICKETS} in review")
        assert most_per_machine == 1
        assert most_in_progress <= 2
        async with deps.sessions() as session:
            runs = (await session.scalars(select(Run))).all()
        assert sorted(run.ticket_id for run in runs) == sorted({run.ticket_id for run in runs})
        assert len(runs) == TICKETS
        assert {run.machine for run in runs} == {"m1", "m2"}
        assert all(run.status == "succeeded" and run.attempt == 1 for run in runs)
        # Nothing runs now: both slots are free again, as the registry and the runs say.
        assert await free_slots_now(deps.redis, deps.sessions) == 2
        assert sum(machine.running for machine in await registered(deps.redis)) == 0
