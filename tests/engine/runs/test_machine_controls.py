"""Pause, Resume and Drain: stored in PostgreSQL, honoured by the machine choice, a drain
that is over stored as paused."""

from __future__ import annotations

from sqlalchemy import select

from bot.config.states import State
from bot.deps import Deps
from bot.engine.runs.machine_controls import controls, set_control, stopped
from bot.engine.runs.machines import Requirements, choose, why_none
from bot.tables.machines import ControlState, MachineAction, MachineControl
from bot.tables.workflow import TicketState
from harness_store.db import transaction
from tests.conftest import OpenWorld
from tests.engine.runs.test_machines import NOW, machine


def test_a_paused_machine_is_never_chosen() -> None:
    machines = [machine("a"), machine("b", running=1)]
    picked = choose(machines, Requirements("command"), stopped={"a": "paused by admin"}, now=NOW)
    assert picked is not None
    assert picked.name == "b"
    everyone = {"a": "paused by admin", "b": "draining (asked by admin)"}
    assert choose(machines, Requirements("command"), stopped=everyone, now=NOW) is None


def test_why_none_names_who_paused_the_machines() -> None:
    needs = Requirements("command")
    assert (
        why_none([machine("a")], needs, NOW, stopped={"a": "paused by admin"})
        == "machine a is paused by admin"
    )
    both = {"a": "paused by admin", "b": "draining (asked by @octocat)"}
    assert why_none([machine("a"), machine("b")], needs, NOW, stopped=both) == (
        "machine a is paused by admin; machine b is draining (asked by @octocat)"
    )
    # Another machine is merely full: that is the reason, not the pause.
    full = [machine("a"), machine("b", running=2)]
    assert why_none(full, needs, NOW, stopped={"a": "paused by admin"}) == (
        "every qualifying runner is at capacity"
    )
    # A paused machine that would not qualify anyway is not the reason.
    assert "labels gpu" in why_none(
        [machine("a")], Requirements("command", frozenset({"gpu"})), NOW, stopped={"a": "x"}
    )


async def test_controls_are_stored_and_a_drain_ends_when_nothing_runs(deps: Deps) -> None:
    async with transaction(deps.sessions) as session:
        await set_control(session, "a", "pause", "admin")
        await set_control(session, "b", "drain", "@octocat")
        await set_control(session, "c", "drain", "admin")
        await set_control(session, "d", "pause", "admin")
    async with transaction(deps.sessions) as session:
        await set_control(session, "d", "resume", "admin")

    # b still runs one; c's heartbeat shows none but a run sent to it is queued.
    machines = [machine("a"), machine("b", running=1), machine("c"), machine("d")]
    async with transaction(deps.sessions) as session:
        found = await controls(session, machines, {"c": 1})
    assert stopped(found) == {
        "a": "paused by admin",
        "b": "draining (asked by @octocat)",
        "c": "draining (asked by admin)",
    }

    async with transaction(deps.sessions) as session:
        found = await controls(session, [machine("b"), machine("c")], {})
    assert found["b"].state == found["c"].state == ControlState.PAUSED
    assert found["b"].changed_by == "@octocat"
    async with deps.sessions() as session:
        rows = {row.name: row.state for row in await session.scalars(select(MachineControl))}
        actions = [
            (row.machine, row.action, row.by)
            for row in await session.scalars(select(MachineAction).order_by(MachineAction.id))
        ]
    assert rows == {"a": "paused", "b": "paused", "c": "paused", "d": "active"}
    assert actions[:5] == [
        ("a", "pause", "admin"),
        ("b", "drain", "@octocat"),
        ("c", "drain", "admin"),
        ("d", "pause", "admin"),
        ("d", "resume", "admin"),
    ]
    assert sorted(actions[5:]) == [("b", "drained", "@octocat"), ("c", "drained", "admin")]


async def test_a_paused_runner_gets_no_run_until_resumed(open_world: OpenWorld) -> None:
    """Through the real dispatcher: the ticket waits naming the pause, then runs on m1."""
    async with open_world() as w:
        async with transaction(w.deps.sessions) as session:
            await set_control(session, "m1", "pause", "admin")
        w.add_issue(1, "Add a PASS file", "Please add it.")
        await w.label(1, "openase")

        async def waiting() -> TicketState | None:
            row = await w.state(1)
            return row if row is not None and "paused" in (row.waiting or "") else None

        row = await w.until(waiting, what="the wait for a runner")
        assert row.waiting == "⏳ Waiting for a runner: machine m1 is paused by admin."
        assert await w.runs(1) == []

        async with transaction(w.deps.sessions) as session:
            await set_control(session, "m1", "resume", "admin")
        await w.reach(1, State.IN_REVIEW)  # the dispatch cron tries again
        assert [run.machine for run in await w.runs(1)] == ["m1"]
