"""One scale session: the processes up, the mirror seeded, a batch of runs measured, then a
second worker and a third web process joining and a second batch measured."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench.scale import measures
from bench.scale.cluster import WRITES_PER_HOUR, Cluster, cluster
from bench.scale.cpu import cpu_seconds, spent
from bench.scale.load import Load
from bench.scale.report import (
    CONTENT_PER_HOUR,
    CONTENT_PER_MINUTE,
    Report,
    Row,
    cpu_rows,
    lag_rows,
    rss_rows,
    tick_rows,
    twice_rows,
)
from bench.scale.sampler import Sampler

INGEST_BEFORE = "about 200 deliveries/s (make bench)"


@dataclass(frozen=True)
class ScaleOptions:
    tickets: int = 10_000
    runs: int = 200
    more_runs: int | None = None  # the second batch; None: as many as --runs
    # End a batch once its runs are done, not once the paced outbox drained (minutes more):
    # for trying an engine change quickly; the GitHub side is then not all out.
    runs_only: bool = False
    runners: int = 20
    slots: int = 10
    agent_seconds: float = 60.0
    root: Path | None = None

    @property
    def second_batch(self) -> int:
        return self.runs if self.more_runs is None else self.more_runs


@dataclass
class Batch:
    numbers: list[int]
    labelled_at: float  # epoch
    cpu_before: dict[str, float]  # each role's CPU seconds so far, as the labels went out
    cpu: dict[str, float] | None = None  # ... used from the labels to the last run in review
    runs_done_at: float | None = None  # every ticket in review, no run open
    done_at: float | None = None  # ... and no effect of theirs pending in the outbox
    runs_only: bool = False  # done_at: when the runs were done (the outbox not waited for)

    @property
    def per_minute(self) -> float | None:
        """Runs finished a minute: from the labels to the last ticket in review."""
        if self.runs_done_at is None:
            return None
        return 60 * len(self.numbers) / (self.runs_done_at - self.labelled_at)


async def _start(here: Cluster, role: str, count: int) -> None:
    started = [here.start(role) for _ in range(count)]  # type: ignore[arg-type]
    for process in started:
        if process.role == "serve":
            await here.wait_serving(process)


async def _run_batch(
    here: Cluster, load: Load, numbers: list[int], within: float, *, runs_only: bool = False
) -> Batch:
    """Label `numbers` at once and wait until all are done (or `within` seconds pass):
    their runs, and (unless `runs_only`) their effects in the outbox."""
    batch = Batch(numbers, time.time(), cpu_seconds(here), runs_only=runs_only)
    await load.label(numbers)
    print(f"  {len(numbers)} labelled in {time.time() - batch.labelled_at:.1f} s", flush=True)
    all_running_seen = False
    last_note = 0.0
    while time.time() - batch.labelled_at < within:
        in_review, running, open_runs, effects = await measures.batch_progress(here, numbers)
        if in_review == len(numbers) and open_runs == 0 and batch.runs_done_at is None:
            batch.runs_done_at = time.time()
            batch.cpu = spent(batch.cpu_before, cpu_seconds(here))
            print(f"  all in review after {batch.runs_done_at - batch.labelled_at:.1f} s")
        if batch.runs_done_at is not None and (effects == 0 or runs_only):
            batch.done_at = time.time()
            break
        if running == len(numbers) and not all_running_seen:
            all_running_seen = True
            print(f"  all {running} running after {time.time() - batch.labelled_at:.1f} s")
        if time.monotonic() - last_note > 15:
            last_note = time.monotonic()
            print(
                f"  {time.time() - batch.labelled_at:5.0f} s: {in_review} in review, "
                f"{running} running, {open_runs - running} queued, {effects} effects pending",
                flush=True,
            )
        if here.dead():
            names = ", ".join(p.name for p in here.dead())
            raise RuntimeError(f"{names} exited; see {here.root}/logs")
        await asyncio.sleep(1)
    if batch.done_at is None:
        print("  NOT done within the time", flush=True)
    elif runs_only:
        print("  the outbox not waited for (--runs-only)", flush=True)
    else:
        print(f"  outbox drained after {batch.done_at - batch.labelled_at:.1f} s", flush=True)
    return batch


async def _measure_phase(
    report: Report, here: Cluster, sampler: Sampler, label: str, batch: Batch
) -> None:
    ended = batch.done_at or time.time()
    tick_rows(report, label, measures.ticks(here, batch.labelled_at, ended))
    left = None if batch.runs_done_at is None else await measures.unpersisted(here, batch.numbers)
    lag_rows(report, label, [lag for phase, lag in sampler.samples.lags if phase == label], left)
    requests = sampler.samples.requests
    most = measures.content_per_minute(requests, batch.labelled_at, ended)
    for installation, count in sorted(most.items()):
        report.add(
            Row(
                f"content-creating requests/min, inst. {installation}",
                str(count),
                f"<= {CONTENT_PER_MINUTE}",
                count <= CONTENT_PER_MINUTE,
            )
        )
    rss_rows(report, sampler.samples, label)
    if batch.cpu is not None and batch.runs_done_at is not None:
        took = batch.runs_done_at - batch.labelled_at
        cpu_rows(report, label, batch.cpu, took, len(batch.numbers))
    report.add(
        Row(
            f"throughput ({label})",
            "-" if batch.per_minute is None else f"{batch.per_minute:.1f} runs/min",
        )
    )
    drained = (
        "not in time"
        if batch.done_at is None
        else "not waited for (--runs-only)"
        if batch.runs_only
        else f"{batch.done_at - batch.labelled_at:.0f} s"
    )
    report.add(Row(f"  labels -> outbox drained ({label})", drained))


async def session(options: ScaleOptions) -> tuple[Report, Path]:
    """The report, and the working directory (every process's log is in its logs/)."""
    report = Report()
    labelled = options.runs + options.second_batch
    plain = max(0, options.tickets - labelled)
    concurrency = max(options.runs, options.second_batch, options.runners * options.slots)
    async with cluster(
        agent_seconds=options.agent_seconds,
        concurrency=concurrency,
        slots=options.slots,
        root=options.root,
    ) as here:
        print(f"working directory {here.root} (logs in {here.root / 'logs'})", flush=True)
        print(
            f"the outbox's budget raised to {WRITES_PER_HOUR:,} content-creating requests an "
            f"hour (OPENASE_GITHUB_WRITES_PER_HOUR; GitHub allows {CONTENT_PER_HOUR}): the "
            "bench's ~5 per ticket would otherwise take hours; the minute's "
            f"{CONTENT_PER_MINUTE} stays",
            flush=True,
        )
        sampler = Sampler(here)
        stop = asyncio.Event()
        sampling = asyncio.create_task(sampler.run(stop))
        try:
            began = time.monotonic()
            await _start(here, "serve", 2)
            await _start(here, "worker", 1)
            await _start(here, "runner", options.runners)
            await here.wait_registered()
            print(f"{len(here.processes)} processes up in {time.monotonic() - began:.1f} s\n")

            print(f"phase 1: {plain} mirrored tickets through `issues.opened` webhooks")
            sampler.samples.phase = "seed"
            load = Load(here)
            sent = await load.seed(plain)
            ids = [o.delivery_id for o in load.offered]
            ingested = await measures.wait_ingested(here, ids, within=600 + plain / 10)
            report.add(Row("webhooks acknowledged", f"{plain / sent:.0f}/s", was=INGEST_BEFORE))
            total = sent + (ingested or 0)
            report.add(
                Row(
                    f"{plain} tickets mirrored (sent + ingested)",
                    "not in time"
                    if ingested is None
                    else f"{total:.0f} s, {plain / max(total, 1e-9):.0f}/s",
                )
            )
            print()

            within = 600 + 4 * options.agent_seconds + 2 * labelled
            print(f"phase 2: {options.runs} tickets labelled at once (1 worker, 2 web processes)")
            sampler.samples.phase = "phase 2"

            first = await _run_batch(
                here, load, list(range(1, options.runs + 1)), within, runs_only=options.runs_only
            )
            await _measure_phase(report, here, sampler, "phase 2", first)
            print()

            numbers: list[int] = []
            if options.second_batch:
                numbers = await _phase_three(report, here, sampler, load, options, first, within)
            twice = await measures.done_twice(
                here, first.numbers + numbers, [o.delivery_id for o in load.offered]
            )
            twice_rows(report, twice)
            performed, superseded = await measures.status_edits(here)
            report.add(Row("status-comment updates performed", str(performed)))
            report.add(Row("  superseded before sending (coalesced)", str(superseded)))
            totals = measures.content_total(sampler.samples.requests)
            minutes = (time.time() - first.labelled_at) / 60
            for installation, count in sorted(totals.items()):
                report.add(
                    Row(
                        f"content-creating requests, inst. {installation}",
                        f"{count} in {minutes:.0f} min",
                        f"<= {CONTENT_PER_HOUR}/hour",
                        count <= CONTENT_PER_HOUR,
                    )
                )
            load_average = " ".join(f"{x:.1f}" for x in os.getloadavg())
            report.add(Row("load average at the end", load_average))
        finally:
            stop.set()
            await sampling
    return report, here.root


async def _phase_three(
    report: Report,
    here: Cluster,
    sampler: Sampler,
    load: Load,
    options: ScaleOptions,
    first: Batch,
    within: float,
) -> list[int]:
    """A second worker and a third web process join, and the second batch is labelled
    through all three; the tickets labelled."""
    print(
        f"phase 3: a second worker and a third web process join; {options.second_batch} "
        "more tickets labelled through all three"
    )
    sampler.samples.phase = "phase 3"
    await _start(here, "worker", 1)
    await _start(here, "serve", 1)
    start = max(i["number"] for i in here.repo.issues) + 1  # PRs took numbers too
    numbers = list(range(start, start + options.second_batch))
    second = await _run_batch(here, load, numbers, within, runs_only=options.runs_only)
    await _measure_phase(report, here, sampler, "phase 3", second)
    before, after = first.per_minute, second.per_minute
    if before is not None and after is not None:
        per_run_before = before / len(first.numbers)
        per_run_after = after / len(second.numbers)
        report.add(
            Row(
                "throughput after / before (per ticket of a batch)",
                f"{per_run_after / per_run_before:.2f}",
                ">= 1.00 (no drop)",
                per_run_after >= per_run_before,
            )
        )
    return numbers
