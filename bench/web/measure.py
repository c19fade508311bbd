"""Timing pages through the app, counting their SQL statements, and the verdict table."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import event

from bot.deps import Deps


@dataclass(frozen=True)
class Page:
    """A path to time; pages of one `group` must send the same number of statements (a
    small ticket's page and the busiest one's, a rare search and a common one)."""

    group: str
    path: str


@dataclass
class Measured:
    page: Page
    seconds: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    sql_seconds: list[float] = field(default_factory=list)
    full_collections: int = 0  # the garbage collector's generation-2 passes while timed
    size: int = 0
    statuses: set[int] = field(default_factory=set)
    sql: list[str] = field(default_factory=list)  # the last request's statements


class Probe:
    """What one request cost besides its wall time: the statements the engine sent and the
    time spent in them (until their rows were fetched), and full garbage collections."""

    def __init__(self, deps: Deps) -> None:
        self.sql: list[str] = []
        self.sql_seconds = 0.0
        self.full_collections = 0
        self._started = 0.0
        engine = deps.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        gc.callbacks.append(self._collected)

    def reset(self) -> None:
        self.sql, self.sql_seconds, self.full_collections = [], 0.0, 0

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.sql.append(statement)
        self._started = time.perf_counter()

    def _after(self, *_: Any) -> None:
        self.sql_seconds += time.perf_counter() - self._started

    def _collected(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            self.full_collections += 1


async def measure(
    client: httpx.AsyncClient, probe: Probe, page: Page, warmup: int, repeat: int
) -> Measured:
    for _ in range(warmup):
        await client.get(page.path)
    out = Measured(page)
    for _ in range(repeat):
        probe.reset()
        started = time.perf_counter()
        response = await client.get(page.path)
        out.seconds.append(time.perf_counter() - started)
        out.statements.append(len(probe.sql))
        out.sql_seconds.append(probe.sql_seconds)
        out.full_collections += probe.full_collections
        out.statuses.add(response.status_code)
        out.size = len(response.content)
        out.sql = probe.sql
    return out


def _q(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _problems(row: Measured, target_ms: float, group_counts: set[int]) -> list[str]:
    problems = []
    if row.statuses != {200}:
        problems.append(f"answered {','.join(map(str, sorted(row.statuses)))}, not 200")
    p50 = 1000 * statistics.median(row.seconds)
    if p50 > target_ms:
        problems.append(f"p50 {p50:.1f} ms > {target_ms:.0f} ms")
    if len(set(row.statements)) > 1:
        problems.append(f"statements vary between requests: {sorted(set(row.statements))}")
    elif len(group_counts) > 1:
        problems.append(f"statements vary within {row.page.group!r}: {sorted(group_counts)} (N+1?)")
    return problems


def report(rows: list[Measured], target_ms: float, show_sql: bool) -> list[str]:
    """Print the table; the problems found, one line each ("" when every page is fine)."""
    groups: dict[str, set[int]] = {}
    for row in rows:
        groups.setdefault(row.page.group, set()).update(row.statements)
    width = max([44, *(len(row.page.path) + 4 for row in rows)])
    print(
        f"{'page':<{width}} {'p50':>6} {'p90':>6} {'max':>6} {'target':>6}  {'SQL/req':>7}"
        f" {'SQL p50':>7} {'GCs':>3} {'KB':>5}  verdict"
    )
    found: list[str] = []
    for row in rows:
        ms = [1000 * s for s in row.seconds]
        low, high = min(row.statements), max(row.statements)
        count = str(low) if low == high else f"{low}-{high}"
        sql_ms = 1000 * statistics.median(row.sql_seconds)
        problems = _problems(row, target_ms, groups[row.page.group])
        verdict = "OK"
        if problems:
            verdict = "SLOW" if any(p.startswith("p50") for p in problems) else ""
            if any("vary" in p for p in problems):
                verdict = (verdict + " VARIES").strip()
            if any("answered" in p for p in problems):
                verdict = (verdict + " ERROR").strip()
        found += [f"GET {row.page.path}: {problem}" for problem in problems]
        print(
            f"GET {row.page.path:<{width - 4}} {statistics.median(ms):6.1f} {_q(ms, 0.9):6.1f}"
            f" {max(ms):6.1f} {target_ms:6.0f}  {count:>7} {sql_ms:7.1f}"
            f" {row.full_collections:3} {row.size / 1024:5.0f}  {verdict}"
        )
    if show_sql:
        for row in rows:
            print(f"\n-- GET {row.page.path}: {len(row.sql)} statements")
            for statement in row.sql:
                print("   " + " ".join(statement.split()))
    return found
