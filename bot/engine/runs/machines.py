"""Which machine takes a run: the registry runners keep in Redis, and the choice by
required labels, the agent CLI, heartbeat freshness and free capacity (DESIGN §3.7)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from runner.contract import MACHINES_SET, SCHEMA_VERSION, machine_key

# A runner heartbeats every 5 s; one that missed three is not given new work.
FRESH_SECONDS = 15.0
# How long a runner's return from a Redis outage is worth mentioning.
RECOVERY_NOTED_SECONDS = 600.0


@dataclass(frozen=True)
class Machine:
    name: str
    labels: frozenset[str]
    capacity: int
    running: int
    clis: Mapping[str, str]  # agent cli -> version
    heartbeat_at: float
    schema_version: int
    # The last Redis outage the runner rode out, and the run events it dropped so far
    # (older runners do not say: zeros).
    redis_outage_seconds: float = 0.0
    redis_back_at: float = 0.0
    events_dropped: int = 0
    # The runner's sandbox ("bubblewrap 0.8.0"), or why it has none (with the fix).
    sandbox: str = ""
    sandbox_problem: str = ""
    # For the machines page.
    disk_free_bytes: int = 0
    memory_available_bytes: int = 0
    hostname: str = ""

    def fresh(self, now: float) -> bool:
        return now - self.heartbeat_at <= FRESH_SECONDS

    def condition(self, now: float) -> str:
        """'' for a healthy machine, else a few words for the machines view."""
        if not self.fresh(now):
            return f"no heartbeat for {now - self.heartbeat_at:.0f} s (cut off or stopped)"
        notes = []
        if self.redis_back_at and now - self.redis_back_at <= RECOVERY_NOTED_SECONDS:
            notes.append(
                f"reconnected {now - self.redis_back_at:.0f} s ago after a "
                f"{self.redis_outage_seconds:.0f} s Redis outage"
            )
        if self.events_dropped:
            notes.append(f"{self.events_dropped} run events dropped")
        if not self.sandbox:
            notes.append(
                "cannot sandbox runs"
                + (f": {self.sandbox_problem}" if self.sandbox_problem else "")
                + " (takes only workflows with `sandbox: off`)"
            )
        return "; ".join(notes)


def parse_machine(fields: Mapping[bytes, bytes]) -> Machine | None:
    """A registry hash as written by `runner.machine.MachineFacts`; None when malformed."""
    try:
        text = {key.decode(): value.decode() for key, value in fields.items()}
        labels: Any = json.loads(text["labels"])
        clis: Any = json.loads(text["clis"])
        if not isinstance(labels, list) or not isinstance(clis, dict):
            return None
        return Machine(
            name=text["name"],
            labels=frozenset(str(label) for label in labels),
            capacity=int(text["capacity"]),
            running=int(text["running"]),
            clis={str(key): str(value) for key, value in clis.items()},
            heartbeat_at=float(text["heartbeat_at"]),
            schema_version=int(text["schema_version"]),
            redis_outage_seconds=float(text.get("redis_outage_seconds", 0)),
            redis_back_at=float(text.get("redis_back_at", 0)),
            events_dropped=int(text.get("events_dropped", 0)),
            sandbox=text.get("sandbox", ""),
            sandbox_problem=text.get("sandbox_problem", ""),
            disk_free_bytes=int(text.get("disk_free_bytes", 0)),
            memory_available_bytes=int(text.get("memory_available_bytes", 0)),
            hostname=text.get("hostname", ""),
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


async def registered(redis: Redis) -> list[Machine]:
    """Every machine whose registry entry still exists (expired ones drop out on their own)."""
    names = sorted(name.decode() for name in await redis.smembers(MACHINES_SET))  # type: ignore[misc]  # redis-py's union return
    if not names:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(machine_key(name))
        rows: list[dict[bytes, bytes]] = await pipe.execute()
    machines = [parse_machine(row) for row in rows if row]
    return [machine for machine in machines if machine is not None]


@dataclass(frozen=True)
class Requirements:
    cli: str
    labels: frozenset[str] = frozenset()
    sandboxed: bool = True  # only a runner that can confine the run may take it
    # The machine holding the agent's session a resumed run continues (its HOME keeps it):
    # chosen when it qualifies and has a free slot, else the run starts a new session.
    prefer: str | None = None


def _free(machine: Machine, in_flight: Mapping[str, int]) -> int:
    """Slots the machine has for a new run: its heartbeat's count of running runs may lag
    behind the runs sent to it (`in_flight`), or count one the engine thinks over."""
    return machine.capacity - max(machine.running, in_flight.get(machine.name, 0))


def _taking(machine: Machine, stopped: Mapping[str, str], now: float) -> bool:
    """Alive, of this schema, and not paused or draining."""
    return (
        machine.fresh(now)
        and machine.name not in stopped
        and machine.schema_version == SCHEMA_VERSION
    )


def free_slots(
    machines: Sequence[Machine],
    *,
    in_flight: Mapping[str, int],
    stopped: Mapping[str, str],
    now: float | None = None,
) -> int:
    """New runs all machines together could take now, whatever each run needs: while it is
    0, no waiting ticket can start and trying them is wasted work."""
    now = time.time() if now is None else now
    return sum(
        max(0, _free(machine, in_flight)) for machine in machines if _taking(machine, stopped, now)
    )


def choose(
    machines: Sequence[Machine],
    needs: Requirements,
    *,
    in_flight: Mapping[str, int] | None = None,
    stopped: Mapping[str, str] | None = None,
    now: float | None = None,
) -> Machine | None:
    """The machine with the most free slots among those that qualify (`needs.prefer` first
    when it qualifies); None if none does.

    `in_flight` counts runs already sent to each machine that its last heartbeat may not
    show yet, so a burst of dispatches does not overfill one machine. `stopped` names the
    machines an admin paused or is draining (bot.engine.runs.machine_controls): none of
    them takes a new run.
    """
    best = ranked(machines, needs, in_flight=in_flight, stopped=stopped, now=now)
    return best[0] if best else None


def ranked(
    machines: Sequence[Machine],
    needs: Requirements,
    *,
    in_flight: Mapping[str, int] | None = None,
    stopped: Mapping[str, str] | None = None,
    now: float | None = None,
) -> list[Machine]:
    """The machines that qualify and have a free slot, best first (as `choose` picks)."""
    now = time.time() if now is None else now
    in_flight = in_flight or {}
    stopped = stopped or {}

    def free(machine: Machine) -> int:
        return _free(machine, in_flight)

    candidates = [
        machine
        for machine in machines
        if _taking(machine, stopped, now)
        and needs.cli in machine.clis
        and needs.labels <= machine.labels
        and (machine.sandbox or not needs.sandboxed)
        and free(machine) > 0
    ]
    return sorted(
        candidates,
        key=lambda machine: (
            machine.name != needs.prefer,
            -free(machine),
            machine.running,
            machine.name,
        ),
    )


def has_free_slot(machine: Machine, sent: int) -> bool:
    """Whether the machine can take one more run, with `sent` runs sent to it and not over."""
    return _free(machine, {machine.name: sent}) > 0


def why_none(
    machines: Sequence[Machine],
    needs: Requirements,
    now: float | None = None,
    *,
    stopped: Mapping[str, str] | None = None,
) -> str:
    """A sentence for the status comment when no machine qualifies (`stopped` as for
    `choose`: machine name -> "paused by admin")."""
    now = time.time() if now is None else now
    stopped = stopped or {}
    if not machines:
        return "no runner is registered (start one with `openase runner --machine NAME`)"
    alive = [machine for machine in machines if machine.fresh(now)]
    if not alive:
        return "no runner has sent a heartbeat in the last 15 s"
    with_cli = [machine for machine in alive if needs.cli in machine.clis]
    if not with_cli:
        return f"no live runner has the {needs.cli} agent CLI"
    labelled = [machine for machine in with_cli if needs.labels <= machine.labels]
    if not labelled:
        return f"no live runner with {needs.cli} has the labels {', '.join(sorted(needs.labels))}"
    if needs.sandboxed and not any(machine.sandbox for machine in labelled):
        problems = sorted({machine.sandbox_problem for machine in labelled} - {""})
        why = f" ({problems[0]})" if len(problems) == 1 else ""
        return (
            f"no qualifying runner can sandbox runs{why}; install bubblewrap there, or let "
            "the workflow run unconfined with `sandbox: off`"
        )
    able = [machine for machine in labelled if machine.sandbox or not needs.sandboxed]
    if all(machine.name in stopped for machine in able):
        return "; ".join(f"machine {machine.name} is {stopped[machine.name]}" for machine in able)
    return "every qualifying runner is at capacity"
