"""One chaos session: the cluster up, a warm-up ticket, then each fault in turn under the
steady load, each followed by waiting until everything offered up to its end is done."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.chaos.cluster import Cluster, cluster
from bench.chaos.faults import FAULTS, FaultTimes
from bench.chaos.load import Load
from bench.chaos.report import PhaseReport, measure, wait_caught_up
from bot.engine.runs.tracking import LOST_AFTER

WARM_UP_TIMEOUT = 120.0


@dataclass(frozen=True)
class ChaosOptions:
    faults: tuple[str, ...] = tuple(FAULTS)
    outage_seconds: float = 6.0
    github_outage_seconds: float = 60.0
    # Longer than the lost-run window: the engine must give the cut-off machine's run up.
    cut_seconds: float = LOST_AFTER.total_seconds() + 10
    cut_scope: str = "runner"
    webhook_rate: float = 20.0
    ticket_every: float = 4.0
    agent_seconds: float = 3.0
    settle_seconds: float = 5.0  # load before each fault
    catch_up_timeout: float = 120.0
    target_catch_up: float = 60.0
    root: Path | None = None

    @property
    def times(self) -> FaultTimes:
        return FaultTimes(
            self.outage_seconds, self.github_outage_seconds, self.cut_seconds, self.cut_scope
        )


@dataclass
class Session:
    """A running cluster under load, ready to take faults one after another."""

    cluster: Cluster
    load: Load
    options: ChaosOptions

    async def fault(self, name: str) -> PhaseReport:
        """Inject fault `name` under load; the report of what it did."""
        self.heal()
        self.load.phase = name
        await asyncio.sleep(self.options.settle_seconds)
        description = await FAULTS[name](self.cluster, self.load, self.options.times)
        fault_end = time.monotonic()
        self.load.phase = f"after {name}"
        report = PhaseReport(name, description, target_catch_up=self.options.target_catch_up)
        report.caught_up, missing = await wait_caught_up(
            self.cluster, self.load, name, fault_end, self.options.catch_up_timeout
        )
        if missing:
            report.notes.append(f"at the deadline: {missing}")
        try:
            await measure(report, self.cluster, self.load)
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:  # PostgreSQL gone again
            report.notes.append(f"could not measure: {type(error).__name__}: {error}")
            report.caught_up = None
        report.exited = [p.name for p in self.cluster.dead()]
        if name == "github" and self.cluster.github.refused:
            report.notes.append(f"the fake GitHub refused {self.cluster.github.refused} requests")
            self.cluster.github.refused = 0
        return report

    def heal(self) -> None:
        """Start again what died by itself (already reported): each fault starts whole."""
        for process in self.cluster.dead():
            self.cluster.start(process.name)


@contextlib.asynccontextmanager
async def session(options: ChaosOptions) -> AsyncIterator[Session]:
    """The cluster up under load, past a warm-up ticket (the runners' first clone)."""
    async with cluster(agent_seconds=options.agent_seconds, root=options.root) as here:
        load = Load(here, options.webhook_rate, options.ticket_every)
        load.ticket_now()
        caught_up, missing = await wait_caught_up(
            here, load, "warm-up", time.monotonic(), WARM_UP_TIMEOUT
        )
        if caught_up is None:
            raise RuntimeError(
                f"the warm-up ticket was not done within {WARM_UP_TIMEOUT:g} s ({missing}); "
                f"see the logs in {here.root / 'logs'}"
            )
        stop = asyncio.Event()
        offering = asyncio.create_task(load.run(stop))
        try:
            yield Session(here, load, options)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(offering, 30)
