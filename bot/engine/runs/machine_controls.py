"""Pause, Resume and Drain of a runner machine (the machines page): stored in PostgreSQL
(bot.tables.machines) and read once per dispatch, so a paused machine stays paused across
restarts of the control plane and of the runner.

Draining ends lazily: a draining machine that runs nothing — its heartbeat counts no run
and no run sent to it is queued or running — is stored as paused the next time the
dispatcher or the page looks. Nothing has to watch for the moment the last run ends, and
a machine that is not looked at is not taking runs either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.engine.runs.machines import Machine, free_slots, registered
from bot.tables.machines import ControlState, MachineAction, MachineControl
from bot.tables.workflow import Run, RunState

# The form's action -> the state it leaves the machine in.
ACTIONS: Mapping[str, ControlState] = {
    "pause": ControlState.PAUSED,
    "resume": ControlState.ACTIVE,
    "drain": ControlState.DRAINING,
}


@dataclass(frozen=True)
class Control:
    state: ControlState
    changed_by: str
    changed_at: datetime

    @property
    def reason(self) -> str:
        """Why the machine takes no run, for `why_none`: "paused by admin"."""
        if self.state == ControlState.DRAINING:
            return f"draining (asked by {self.changed_by})"
        return f"{self.state.value} by {self.changed_by}"


async def controls(
    session: AsyncSession,
    machines: Sequence[Machine],
    in_flight: Mapping[str, int],
) -> dict[str, Control]:
    """Every machine not taking runs; drains that are over are stored as paused, in the
    caller's transaction (which the caller commits)."""
    rows = (
        await session.scalars(
            select(MachineControl).where(MachineControl.state != ControlState.ACTIVE)
        )
    ).all()
    found = {
        row.name: Control(ControlState(row.state), row.changed_by, row.changed_at) for row in rows
    }
    running = {machine.name: machine.running for machine in machines}
    drained = [
        name
        for name, control in found.items()
        if control.state == ControlState.DRAINING
        and running.get(name) == 0
        and not in_flight.get(name)
    ]
    for name in drained:
        changed = await session.execute(
            update(MachineControl)
            .where(MachineControl.name == name, MachineControl.state == ControlState.DRAINING)
            .values(state=ControlState.PAUSED, changed_at=func.now())
            .returning(MachineControl.changed_at)
        )
        at = changed.scalar_one_or_none()
        if at is not None:  # not resumed meanwhile
            session.add(MachineAction(machine=name, action="drained", by=found[name].changed_by))
            found[name] = Control(ControlState.PAUSED, found[name].changed_by, at)
    return found


def stopped(found: Mapping[str, Control]) -> dict[str, str]:
    """`choose`'s and `why_none`'s `stopped`: machine name -> why it takes no run."""
    return {name: control.reason for name, control in found.items()}


async def set_control(session: AsyncSession, name: str, action: str, by: str) -> ControlState:
    """Apply the form's `action` to machine `name` and log it (in the caller's transaction)."""
    state = ACTIONS[action]
    row = await session.get(MachineControl, name, with_for_update=True)
    if row is None:
        session.add(MachineControl(name=name, state=state, changed_by=by))
    else:
        row.state, row.changed_by, row.changed_at = state, by, datetime.now(UTC)
    session.add(MachineAction(machine=name, action=action, by=by))
    return state


async def in_flight(session: AsyncSession) -> dict[str, int]:
    """Runs sent to each machine and not finished (its heartbeat may not count them yet)."""
    rows = await session.execute(
        select(Run.machine, func.count())
        .where(Run.state.in_((RunState.QUEUED, RunState.RUNNING)), Run.machine.is_not(None))
        .group_by(Run.machine)
    )
    return {str(machine): int(count) for machine, count in rows.all()}


async def free_slots_now(redis: Redis, sessions: async_sessionmaker[AsyncSession]) -> int:
    """New runs the registered machines could take at this moment (`free_slots`), paused
    and draining ones left out."""
    machines = await registered(redis)
    if not machines:
        return 0
    async with sessions() as session:
        sent = await in_flight(session)
        not_taking = stopped(await controls(session, machines, sent))
        await session.commit()  # a drain found over is stored as paused
    return free_slots(machines, in_flight=sent, stopped=not_taking)
