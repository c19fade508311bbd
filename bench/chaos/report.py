"""What a fault did, read back from where the truth is: PostgreSQL (deliveries, runs, the
outbox), the fake GitHub's state (the effects as performed) and the processes' JSON logs
(which worker ingested what, which runner finished which run).

Every number is about the load offered in one phase: from the end of the previous fault
to the end of this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench.chaos.cluster import Cluster
from bench.chaos.load import Load

TARGET_CATCH_UP = 60.0
_MARKER = re.compile(r"<!-- openase:[^>]*-->")
_DELIVERY_DONE = ("done", "ignored")


@dataclass
class PhaseReport:
    fault: str
    description: str
    deliveries_offered: int = 0
    deliveries_acked: int = 0
    deliveries_refused: int = 0  # answered with something else than 2xx at least once
    deliveries_lost: int = 0
    deliveries_twice: int = 0
    tickets: int = 0
    runs_started: int = 0
    runs_finished: int = 0
    runs_declared_lost: int = 0  # by the engine (a dead or cut-off machine), then retried
    tickets_lost: int = 0  # never got a finished run (not in review by the deadline)
    runs_twice: int = 0
    effects_once: int = 0
    effects_twice: int = 0
    effects_never: int = 0
    caught_up: float | None = None  # seconds after the fault ended; None: not in time
    target_catch_up: float = TARGET_CATCH_UP
    exited: list[str] = field(default_factory=list)  # processes that died by themselves
    notes: list[str] = field(default_factory=list)

    def misses(self) -> list[str]:
        """The targets this phase missed, in words."""
        misses = [
            f"{name} {value} (target 0)"
            for name, value in (
                ("deliveries lost", self.deliveries_lost),
                ("deliveries ingested twice", self.deliveries_twice),
                ("deliveries never acknowledged", self.deliveries_offered - self.deliveries_acked),
                ("tickets whose work was lost", self.tickets_lost),
                ("runs run twice", self.runs_twice),
                ("effects performed twice", self.effects_twice),
                ("effects never performed", self.effects_never),
            )
            if value
        ]
        if self.caught_up is None or self.caught_up > self.target_catch_up:
            took = "never" if self.caught_up is None else f"{self.caught_up:.1f} s"
            misses.append(f"caught up: {took} (target <= {self.target_catch_up:.0f} s)")
        misses += [f"{name} exited by itself (target: none)" for name in self.exited]
        return misses

    def table(self) -> str:
        caught = "never" if self.caught_up is None else f"{self.caught_up:.1f} s"
        rows: list[tuple[str, object, str]] = [
            ("deliveries offered", self.deliveries_offered, ""),
            ("  acknowledged", self.deliveries_acked, "= offered"),
            ("  refused at first (5xx, redelivered)", self.deliveries_refused, ""),
            ("  lost", self.deliveries_lost, "0"),
            ("  ingested twice", self.deliveries_twice, "0"),
            ("tickets labelled", self.tickets, ""),
            ("runs started", self.runs_started, ""),
            ("  finished", self.runs_finished, ""),
            ("  declared lost by the engine, retried", self.runs_declared_lost, ""),
            ("  lost (ticket never done)", self.tickets_lost, "0"),
            ("  run twice", self.runs_twice, "0"),
            ("effects performed once", self.effects_once, ""),
            ("  twice", self.effects_twice, "0"),
            ("  never", self.effects_never, "0"),
            ("caught up after the fault ended", caught, f"<= {self.target_catch_up:.0f} s"),
            ("processes exited by themselves", ", ".join(self.exited) or "none", "none"),
        ]
        width = max(len(name) for name, _, _ in rows)
        lines = [f"== {self.fault}: {self.description}"]
        lines += [f"   {'':{width}}  {'measured':>10}  target"]
        lines += [f"   {name:{width}}  {value!s:>10}  {target}" for name, value, target in rows]
        lines += [f"   note: {note}" for note in self.notes]
        misses = self.misses()
        lines.append("   MISSED: " + "; ".join(misses) if misses else "   all targets met")
        return "\n".join(lines)


async def _fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query, *args, timeout=10)
        return rows
    finally:
        await conn.close()


# The phase's tickets are `t` in each query: `join tickets t on ... where` + this.
_PENDING_WORK = """
    with t as (select id from tickets where source = 'github' and number = any($1))
    select
      (select count(*) from ticket_states s join t on t.id = s.ticket_id
        where s.state = 'in_review'),
      (select count(*) from runs r join t on t.id = r.ticket_id
        where r.state in ('queued', 'running')),
      (select count(*) from outbox o join t on t.id = o.ticket_id where o.status = 'pending')
"""
_RUNS = """
    select r.id, t.number, r.state, r.status, r.started_at is not null as started
    from runs r join tickets t on t.id = r.ticket_id
    where t.source = 'github' and t.number = any($1)
"""
_STATES = """
    select t.number, s.state from ticket_states s join tickets t on t.id = s.ticket_id
    where t.source = 'github' and t.number = any($1)
"""
_EFFECTS = """
    select o.status, count(*) from outbox o join tickets t on t.id = o.ticket_id
    where t.source = 'github' and t.number = any($1) group by o.status
"""


async def _pending_work(cluster: Cluster, load: Load, phase: str) -> str | None:
    """What is still to do for the phase's load, in words; None when everything is done."""
    offered = load.of(phase)
    unacked = [o for o in offered if o.acked_at is None]
    if unacked:
        return f"{len(unacked)} deliveries not acknowledged yet"
    url = cluster.postgres.url
    ids = [o.delivery_id for o in offered]
    rows = await _fetch(
        url, "select count(*) from deliveries where source = 'github' and delivery_id = any($1) "
        "and status = any($2)", ids, list(_DELIVERY_DONE),
    )  # fmt: skip
    if rows[0][0] < len(ids):
        return f"{len(ids) - rows[0][0]} deliveries not ingested"
    numbers = load.tickets_of(phase)
    if not numbers:
        return None
    rows = await _fetch(url, _PENDING_WORK, numbers)
    in_review, active, effects = rows[0]
    if in_review < len(numbers):
        return f"{len(numbers) - in_review} tickets not in review"
    if active or effects:
        return f"{active} runs in flight, {effects} effects pending"
    return None


async def wait_caught_up(
    cluster: Cluster, load: Load, phase: str, fault_end: float, within: float
) -> tuple[float | None, str | None]:
    """Seconds from `fault_end` until the phase's load was all done (None: not
    `within` seconds), and what was still missing at the end."""
    deadline = fault_end + within
    missing: str | None = "not checked"
    while True:
        with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
            missing = await _pending_work(cluster, load, phase)
            if missing is None:
                return max(0.0, time.monotonic() - fault_end), None
        if time.monotonic() > deadline:
            return None, missing
        await asyncio.sleep(0.5)


def _log_events(paths: list[Path], names: set[str]) -> list[dict[str, Any]]:
    events = []
    for path in paths:
        with contextlib.suppress(OSError), path.open() as lines:
            for line in lines:
                if not line.startswith("{"):
                    continue
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if event.get("event") in names:
                        events.append(event)
    return events


async def measure(report: PhaseReport, cluster: Cluster, load: Load) -> PhaseReport:
    """Fill `report` for the load offered in its phase."""
    phase, url = report.fault, cluster.postgres.url
    offered = load.of(phase)
    acked = {o.delivery_id for o in offered if o.acked_at is not None}
    report.deliveries_offered = len(offered)
    report.deliveries_acked = len(acked)
    report.deliveries_refused = sum(1 for o in offered if o.refusals)
    rows = await _fetch(
        url, "select delivery_id from deliveries where source = 'github' and "
        "delivery_id = any($1) and status = any($2)", list(acked), list(_DELIVERY_DONE),
    )  # fmt: skip
    report.deliveries_lost = len(acked - {r[0] for r in rows})
    logs = cluster.every_log()
    ingested = Counter(
        delivery
        for line in _log_events(logs, {"deliveries_ingested"})
        for delivery in line.get("delivery_ids", ())
    )
    report.deliveries_twice = sum(1 for d in acked if ingested[d] > 1)

    numbers = load.tickets_of(phase)
    report.tickets = len(numbers)
    runs = await _fetch(url, _RUNS, numbers)
    report.runs_started = sum(1 for r in runs if r["started"])
    report.runs_finished = sum(1 for r in runs if r["state"] == "finished")
    report.runs_declared_lost = sum(1 for r in runs if r["state"] == "lost")
    states = await _fetch(url, _STATES, numbers)
    in_review = {r["number"] for r in states if r["state"] == "in_review"}
    report.tickets_lost = len(set(numbers) - in_review)
    for number in sorted(set(numbers) - in_review):
        report.notes.append(_lost_story(number, runs, states, logs))
    succeeded = Counter(r["number"] for r in runs if r["status"] == "succeeded")
    run_ids = {r["id"] for r in runs}
    finished_by_runners = Counter(
        e.get("run_id")
        for e in _log_events(logs, {"run_finished"})
        if not e.get("handed_back") and e.get("run_id") in run_ids
    )
    report.runs_twice = sum(1 for n in succeeded.values() if n > 1) + sum(
        1 for n in finished_by_runners.values() if n > 1
    )

    effects = await _fetch(url, _EFFECTS, numbers)
    by_status = {r[0]: r[1] for r in effects}
    report.effects_twice = _duplicates(cluster, set(numbers))
    report.effects_once = max(0, by_status.get("done", 0) - report.effects_twice)
    report.effects_never = sum(n for status, n in by_status.items() if status != "done")
    return report


def _lost_story(
    number: int, runs: list[Any], states: list[Any], logs: list[Path], *, limit: int = 40
) -> str:
    """A ticket not in review: its state, its runs, and what every process logged of those
    runs (any level): the logs go with the cluster, so a failure must carry them."""
    state = next((row["state"] for row in states if row["number"] == number), None)
    mine = [row for row in runs if row["number"] == number]
    lines = [f"#{number} is {state}; runs: " + ", ".join(
        f"{row['id']} {row['state']}/{row['status']} started={row['started']}" for row in mine
    )]  # fmt: skip
    ids = [str(row["id"]) for row in mine]
    said: list[str] = []
    for path in logs:
        with contextlib.suppress(OSError), path.open() as log:
            said += [
                f"{path.name}: {line.strip()[:300]}" for line in log if any(i in line for i in ids)
            ]
    lines += [f"     {line}" for line in said[-limit:]]
    return "\n".join(lines)


def _duplicates(cluster: Cluster, numbers: set[int]) -> int:
    """Effects the fake GitHub holds twice for these tickets: two comments with the same
    hidden marker (or body) on an issue, two PRs for a branch, two check runs of one name
    on one commit."""
    fake, repo = cluster.github.fake, cluster.repo
    comments: Counter[tuple[int, str]] = Counter()
    for comment in fake.comments.values():
        number = comment["_on"][1]
        if number in numbers and (comment.get("user") or {}).get("type") == "Bot":
            body = comment.get("body") or ""
            found = _MARKER.search(body)
            comments[(number, found.group(0) if found else body)] += 1
    pulls: Counter[str] = Counter()
    ticket_of_sha: dict[str, int] = {}
    for pull in repo.pulls:
        ref = pull["head"]["ref"]
        number = int(ref.rsplit("/", 1)[1]) if ref.rsplit("/", 1)[-1].isdigit() else -1
        if number in numbers:
            pulls[ref] += 1
            ticket_of_sha[pull["head"]["sha"]] = number
    checks = Counter(
        (run["name"], run["head_sha"])
        for run in fake.check_runs.values()
        if run["head_sha"] in ticket_of_sha
    )
    return sum(n - 1 for counter in (comments, pulls, checks) for n in counter.values() if n > 1)


def trouble(cluster: Cluster, *, limit: int = 40) -> str:
    """The warnings and errors each process logged (counted by event, with one example),
    and the last lines of any process that exited by itself: why a target was missed."""
    lines = []
    for process in [*cluster.retired, *cluster.processes.values()]:
        seen: Counter[str] = Counter()
        example: dict[str, str] = {}
        with contextlib.suppress(OSError), process.log.open() as log:
            for line in log:
                with contextlib.suppress(ValueError):
                    event = json.loads(line) if line.startswith("{") else None
                    if event and event.get("level") in ("warning", "error", "critical"):
                        name = f"{event['level']} {event.get('event')}"
                        seen[name] += 1
                        example.setdefault(name, line.strip()[:400])
        for name, count in seen.most_common(limit):
            lines.append(f"{process.log.name}: {count} x {name}: {example[name]}")
        if process.exited_by_itself:
            tail = process.log.read_text(errors="replace").splitlines()[-15:]
            lines.append(f"{process.log.name} exited ({process.popen.returncode}); its last lines:")
            lines += [f"    {line[:400]}" for line in tail]
    return "\n".join(lines) or "(no warnings or errors)"
