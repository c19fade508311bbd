"""Printing: every number beside its target (issue #18, target 5), whether it is met, and the
figure it replaced."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench.scale.measures import TICK_EVERY, Ticks, Twice
from bench.scale.sampler import Lag, Samples
from bot.engine.jobs import SLOW_TICK_SECONDS

# Issue #18's targets.
TICK_P99_SECONDS = 0.100
LAG_SECONDS = 2 * TICK_EVERY  # persisted events at most two engine ticks behind
CONTENT_PER_MINUTE = 80  # GitHub's secondary limit: content-creating requests a minute
CONTENT_PER_HOUR = 500  # ... and an hour
RSS_MB = {"worker": 250, "serve": 150, "runner": 100}
# Targets without a figure of their own before this bench: its first full-size run (commit
# 9eecbac, a loaded machine) and each run since are in the README's Scale section.
EARLIER = "before: README, Scale"


@dataclass
class Row:
    name: str
    measured: str
    target: str = ""
    met: bool | None = None  # None: no target, a figure for the record
    was: str = ""  # the figure this replaced; a target's without one points to the README

    def __str__(self) -> str:
        verdict = "" if self.met is None else ("met" if self.met else "NOT met")
        target = f"target {self.target}" if self.target else ""
        line = f"  {self.name:<44} {self.measured:>16}  {target:<24} {verdict:<8}"
        if self.was:
            return f"{line} (was {self.was})"
        return (f"{line} ({EARLIER})" if self.met is not None else line).rstrip()


class Report:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(row, flush=True)
        return row

    def missed(self) -> list[Row]:
        return [row for row in self.rows if row.met is False]


def _ms(value: float | None) -> str:
    return f"< {1000 * SLOW_TICK_SECONDS:.0f} ms" if value is None else f"{1000 * value:.0f} ms"


def tick_rows(report: Report, label: str, ticks: Ticks) -> None:
    p50, p99 = ticks.quantile(0.5), ticks.quantile(0.99)
    worst = max(ticks.slow, default=None)
    report.add(Row(f"engine tick p50 ({label})", _ms(p50)))
    report.add(
        Row(
            f"engine tick p99 ({label})",
            _ms(p99),
            f"<= {1000 * TICK_P99_SECONDS:.0f} ms",
            p99 is None or p99 <= TICK_P99_SECONDS,
        )
    )
    report.add(
        Row(
            f"engine tick max ({label})",
            _ms(worst if worst is not None and worst >= SLOW_TICK_SECONDS else None),
        )
    )
    if worst is not None and ticks.slowest_cpu is not None:
        report.add(Row("    its own CPU (the tick's thread)", _ms(ticks.slowest_cpu)))
    report.add(
        Row(
            f"  ticks due / logged (unlogged: < {1000 * SLOW_TICK_SECONDS:.0f} ms)",
            f"{ticks.slots} / {len(ticks.slow)}",
        )
    )
    report.add(
        Row("  ticks cut short by arq's timeout", str(ticks.timed_out), "0", not ticks.timed_out)
    )
    report.add(
        Row("  most ticks running at once", str(ticks.most_at_once), "1", ticks.most_at_once <= 1)
    )


def lag_rows(report: Report, label: str, lags: list[Lag], left: int | None) -> None:
    """How far behind the persisted run events were; `left`: how many of the batch's
    were not persisted once its runs were over (None: some still running then)."""
    if not lags:
        report.add(Row(f"run events behind ({label})", "no samples"))
        return
    oldest = max(lag.oldest for lag in lags)
    backlog = max(lag.backlog for lag in lags)
    busy = max(lag.open_runs for lag in lags)
    report.add(
        Row(
            f"persisted events behind, worst ({label})",
            f"{oldest:.1f} s",
            f"<= {LAG_SECONDS:.0f} s",
            oldest <= LAG_SECONDS,
        )
    )
    report.add(Row("  most events not yet persisted", f"{backlog} ({busy} open runs)"))
    report.add(
        Row(
            "  not persisted once the batch's runs were over",
            "runs still open" if left is None else str(left),
            "0",
            left == 0,
        )
    )


def rss_rows(report: Report, samples: Samples, phase: str) -> None:
    peaks: dict[str, list[tuple[int, str]]] = {}
    for (seen_in, name), kb in samples.rss.items():
        if seen_in == phase:
            role = name.split("-")[0]
            peaks.setdefault(role, []).append((kb, name))
    for role, limit in RSS_MB.items():
        found = sorted(peaks.get(role, []), reverse=True)
        if not found:
            continue
        kb, name = found[0]
        each = "" if len(found) == 1 else f" (highest of {len(found)}: {name})"
        report.add(
            Row(
                f"peak RSS {role}{each}",
                f"{kb / 1024:.0f} MB",
                f"<= {limit} MB",
                kb / 1024 <= limit,
            )
        )


# How each role of `bench.scale.cpu` is named in the report, the control plane's first.
CPU_ROLES = {
    "worker": "control workers",
    "serve": "web processes",
    "postgres": "PostgreSQL",
    "redis": "Redis",
    "runner": "runners (their git, hooks and agents)",
    "orphans": "orphans reaped by init (run sandboxes)",
    "bench": "the bench (load, fake GitHub, sampler)",
    "other": "the rest of the machine",
}
CONTROL_PLANE = ("worker", "serve", "postgres", "redis")


def cpu_rows(report: Report, phase: str, used: dict[str, float], seconds: float, runs: int) -> None:
    """Where the CPU went from the labels to the last run in review: a profile of the
    machine, to say what bounds the phase's throughput."""
    cores = os.cpu_count() or 1
    total = sum(used.values())
    report.add(
        Row(
            f"CPU, labels -> all in review ({phase})",
            f"{total:.0f} of {cores * seconds:.0f} core-s",
        )
    )
    for role, name in CPU_ROLES.items():
        report.add(Row(f"  {name}", f"{used.get(role, 0.0):.1f} s"))
    control = sum(used.get(role, 0.0) for role in CONTROL_PLANE)
    report.add(Row("  control plane a run (the first four)", f"{1000 * control / runs:.0f} ms"))


def twice_rows(report: Report, twice: Twice) -> None:
    rows = [
        ("tickets without exactly one run", twice.runs_not_one),
        ("tickets without exactly one status comment", twice.status_comments_not_one),
        ("duplicate pull requests", twice.duplicate_pulls),
        ("duplicate check runs (name, commit)", twice.duplicate_checks),
        ("deliveries acknowledged, not ingested", twice.deliveries_missing),
        ("deliveries ingested twice", twice.deliveries_ingested_twice),
    ]
    for name, value in rows:
        report.add(Row(name, str(value), "0", value == 0))
