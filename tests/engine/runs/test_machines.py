"""Choosing a machine for a run, from the registry a real runner writes to Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.engine.runs.machines import (
    FRESH_SECONDS,
    Machine,
    Requirements,
    choose,
    free_slots,
    parse_machine,
    registered,
    why_none,
)
from runner.contract import MACHINES_SET, SCHEMA_VERSION, machine_key
from runner.machine import MachineFacts
from tests.conftest import Services

NOW = 1_800_000_000.0


def machine(
    name: str,
    *,
    labels: tuple[str, ...] = (),
    capacity: int = 2,
    running: int = 0,
    clis: tuple[str, ...] = ("command", "claude_code"),
    age: float = 1.0,
    schema_version: int = SCHEMA_VERSION,
    sandbox: str = "bubblewrap 0.8.0",
) -> Machine:
    return Machine(
        name=name,
        labels=frozenset(labels),
        capacity=capacity,
        running=running,
        clis=dict.fromkeys(clis, "1.0"),
        heartbeat_at=NOW - age,
        schema_version=schema_version,
        sandbox=sandbox,
        sandbox_problem="" if sandbox else "bubblewrap (bwrap) is not on PATH: install it",
    )


@pytest.mark.parametrize(
    ("machines", "needs", "in_flight", "chosen"),
    [
        ([machine("a"), machine("b", running=1)], Requirements("command"), {}, "a"),
        ([machine("a", running=2), machine("b", running=1)], Requirements("command"), {}, "b"),
        ([machine("a"), machine("b")], Requirements("command"), {"a": 1}, "b"),
        (
            [machine("a"), machine("b", labels=("gpu",))],
            Requirements("command", frozenset({"gpu"})),
            {},
            "b",
        ),
        ([machine("a", clis=("command",)), machine("b")], Requirements("claude_code"), {}, "b"),
        (
            [machine("a", age=FRESH_SECONDS + 1), machine("b", running=1)],
            Requirements("command"),
            {},
            "b",
        ),
        ([machine("a", schema_version=SCHEMA_VERSION + 1)], Requirements("command"), {}, None),
        ([machine("a", running=2)], Requirements("command"), {}, None),
        (
            [machine("a", capacity=4, running=1), machine("b", capacity=2)],
            Requirements("command"),
            {},
            "a",
        ),
        ([], Requirements("command"), {}, None),
        # A runner that cannot confine runs takes only runs allowed to go unconfined.
        ([machine("a", sandbox=""), machine("b", running=1)], Requirements("command"), {}, "b"),
        ([machine("a", sandbox="")], Requirements("command"), {}, None),
        ([machine("a", sandbox="")], Requirements("command", sandboxed=False), {}, "a"),
        # A resumed run goes where its agent's session is, even to the busier machine ...
        (
            [machine("a"), machine("b", running=1)],
            Requirements("command", prefer="b"),
            {},
            "b",
        ),
        # ... unless that machine cannot take it: then anywhere (a new session).
        (
            [machine("a"), machine("b", running=2)],
            Requirements("command", prefer="b"),
            {},
            "a",
        ),
    ],
)
def test_choose(
    machines: list[Machine], needs: Requirements, in_flight: dict[str, int], chosen: str | None
) -> None:
    picked = choose(machines, needs, in_flight=in_flight, now=NOW)
    assert (picked.name if picked else None) == chosen


@pytest.mark.parametrize(
    ("machines", "in_flight", "stopped", "free"),
    [
        ([machine("a"), machine("b", running=1)], {}, {}, 3),
        # Sent but not yet counted by the heartbeat, and the other way round.
        ([machine("a"), machine("b", running=1)], {"a": 2, "b": 0}, {}, 1),
        ([machine("a", running=2)], {"a": 3}, {}, 0),  # over full counts as full, not less
        ([machine("a"), machine("b", age=60)], {}, {}, 2),  # b's heartbeat is stale
        ([machine("a"), machine("b")], {}, {"b": "paused by admin"}, 2),
        ([machine("a", schema_version=SCHEMA_VERSION - 1)], {}, {}, 0),
        ([], {}, {}, 0),
    ],
)
def test_free_slots_count_what_any_run_could_take(
    machines: list[Machine], in_flight: dict[str, int], stopped: dict[str, str], free: int
) -> None:
    assert free_slots(machines, in_flight=in_flight, stopped=stopped, now=NOW) == free


@pytest.mark.parametrize(
    ("machines", "needs", "reason"),
    [
        ([], Requirements("command"), "no runner is registered"),
        ([machine("a", age=60)], Requirements("command"), "no runner has sent a heartbeat"),
        ([machine("a", clis=("command",))], Requirements("codex"), "no live runner has the codex"),
        ([machine("a")], Requirements("command", frozenset({"gpu"})), "has the labels gpu"),
        ([machine("a", running=2)], Requirements("command"), "at capacity"),
        (
            [machine("a", sandbox="")],
            Requirements("command"),
            "no qualifying runner can sandbox runs (bubblewrap (bwrap) is not on PATH: install "
            "it); install bubblewrap there, or let the workflow run unconfined with "
            "`sandbox: off`",
        ),
    ],
)
def test_why_no_machine_qualifies(
    machines: list[Machine], needs: Requirements, reason: str
) -> None:
    assert reason in why_none(machines, needs, now=NOW)


@pytest.fixture
async def redis(services: Services) -> AsyncIterator[Redis]:
    client = Redis.from_url(services.redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


async def test_the_registry_reads_what_runners_write(redis: Redis) -> None:
    facts = MachineFacts(
        name="m1", labels=["gpu"], capacity=3, clis={"command": "any"}, sandbox="bubblewrap 0.8.0"
    )
    await redis.hset(machine_key("m1"), mapping=facts.to_redis())  # type: ignore[misc]  # redis-py's union return
    await redis.sadd(MACHINES_SET, "m1", "gone")  # type: ignore[misc]  # "gone" expired already
    await redis.hset(machine_key("broken"), mapping={"name": "broken"})  # type: ignore[misc]
    await redis.sadd(MACHINES_SET, "broken")  # type: ignore[misc]

    machines = await registered(redis)

    assert [m.name for m in machines] == ["m1"]
    assert machines[0].labels == {"gpu"}
    assert machines[0].capacity == 3
    assert machines[0].fresh(time.time())


async def test_a_runner_back_from_a_redis_outage_says_so(redis: Redis) -> None:
    now = time.time()
    facts = MachineFacts(
        name="m2", labels=[], capacity=1, clis={"command": "any"}, sandbox="bubblewrap 0.8.0"
    )
    facts.redis_outage_seconds, facts.redis_back_at, facts.events_dropped = 42.0, now - 5, 3
    await redis.hset(machine_key("m2"), mapping=facts.to_redis())  # type: ignore[misc]  # redis-py's union return
    await redis.sadd(MACHINES_SET, "m2")  # type: ignore[misc]

    [machine_] = await registered(redis)

    assert (machine_.redis_outage_seconds, machine_.events_dropped) == (42.0, 3)
    assert machine_.condition(now) == (
        "reconnected 5 s ago after a 42 s Redis outage; 3 run events dropped"
    )
    assert machine_.condition(now + 3600).endswith("(cut off or stopped)")


def test_a_healthy_machine_has_no_condition_and_one_without_a_sandbox_says_so() -> None:
    assert machine("a").condition(NOW) == ""
    old = {
        b"name": b"m3",
        b"labels": b"[]",
        b"capacity": b"1",
        b"running": b"0",
        b"clis": b'{"command": "any"}',
        b"heartbeat_at": str(NOW).encode(),
        b"schema_version": str(SCHEMA_VERSION).encode(),
    }
    parsed = parse_machine(old)
    assert parsed is not None
    assert (parsed.redis_back_at, parsed.events_dropped) == (0.0, 0)
    # An entry that does not say it can confine runs (an older runner's) cannot.
    assert parsed.condition(NOW) == (
        "cannot sandbox runs (takes only workflows with `sandbox: off`)"
    )
    unable = machine("b", sandbox="")
    assert unable.condition(NOW) == (
        "cannot sandbox runs: bubblewrap (bwrap) is not on PATH: install it (takes only "
        "workflows with `sandbox: off`)"
    )
