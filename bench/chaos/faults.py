"""The faults, one coroutine each: inject, hold for the configured time, end. Each returns
what it did in words; the fault counts as ended when it returns."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from bench.chaos.cluster import MACHINES, Cluster
from bench.chaos.load import Load


@dataclass(frozen=True)
class FaultTimes:
    outage: float  # Postgres and Redis away
    github: float  # the fake GitHub answering 502
    cut: float  # the network to Redis cut
    cut_scope: str  # "runner" (one runner machine's link) or "all"


Fault = Callable[[Cluster, Load, FaultTimes], Awaitable[str]]
REPLACE_AFTER = 1.0  # seconds between a crash and its replacement's start
BURST = 300  # webhooks offered at once before a worker is killed


async def _busy_machine(cluster: Cluster, within: float = 20) -> str:
    """A machine running a run right now (waiting a little for one), else the first."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await asyncpg.connect(cluster.postgres.url, timeout=5)
            try:
                machine = await conn.fetchval(
                    "select machine from runs where state = 'running' and machine is not null "
                    "order by started_at desc limit 1"
                )
            finally:
                await conn.close()
            if machine in MACHINES:
                return str(machine)
        await asyncio.sleep(0.2)
    return MACHINES[0]


async def postgres(cluster: Cluster, load: Load, times: FaultTimes) -> str:
    cluster.postgres.kill()
    await asyncio.sleep(times.outage)
    await asyncio.to_thread(cluster.postgres.start)
    return f"PostgreSQL stopped (immediate) for {times.outage:g} s, then started again"


async def redis(cluster: Cluster, load: Load, times: FaultTimes) -> str:
    cluster.redis.kill()
    await asyncio.sleep(times.outage)
    await asyncio.to_thread(cluster.redis.start)
    return f"Redis SIGKILLed for {times.outage:g} s, then started again empty"


async def worker(cluster: Cluster, load: Load, times: FaultTimes) -> str:
    # worker-2 frozen for a moment, so that worker-1 alone takes the burst's jobs and
    # dies holding some: a crash mid-ingest, every time.
    cluster.signal("worker-2", signal.SIGSTOP)
    try:
        load.burst(BURST)
        held = await _jobs_in_progress(cluster, within=5)
        cluster.kill("worker-1")
    finally:
        cluster.signal("worker-2", signal.SIGCONT)
    await asyncio.sleep(REPLACE_AFTER)
    cluster.start("worker-1")
    return (
        f"worker-1 SIGKILLed holding {held} jobs (a burst of {BURST} webhooks), a replacement "
        "started a second later"
    )


async def _jobs_in_progress(cluster: Cluster, within: float) -> int:
    """How many arq jobs are in progress, once there are any (or `within` seconds passed)."""
    redis = Redis.from_url(cluster.redis.url)
    deadline = time.monotonic() + within
    try:
        while True:
            held = len(await redis.keys("arq:in-progress:*"))
            if held or time.monotonic() > deadline:
                return held
            await asyncio.sleep(0.01)
    finally:
        await redis.aclose()


async def runner(cluster: Cluster, load: Load, times: FaultTimes) -> str:
    machine = await _busy_machine(cluster)
    cluster.kill(f"runner-{machine}")
    await asyncio.sleep(REPLACE_AFTER)
    cluster.start(f"runner-{machine}")
    return f"runner {machine} SIGKILLed with a run in flight, a replacement started"


async def github(cluster: Cluster, load: Load, times: FaultTimes) -> str:
    cluster.github.failing = True
    try:
        await asyncio.sleep(times.github)
    finally:
        cluster.github.failing = False
    return f"GitHub answering 502 to everything for {times.github:g} s"


async def redis_cut(cluster: Cluster, load: Load, times: FaultTimes) -> str:
    if times.cut_scope == "all":
        names, whom = list(cluster.proxies), "every process"
    else:
        machine = await _busy_machine(cluster)
        names, whom = [machine], f"runner {machine} (running a run)"
    for name in names:
        cluster.proxies[name].cut()
    try:
        await asyncio.sleep(times.cut)
    finally:
        for name in names:
            cluster.proxies[name].restore()
    return f"network from {whom} to Redis cut for {times.cut:g} s"


FAULTS: dict[str, Fault] = {
    "postgres": postgres,
    "redis": redis,
    "worker": worker,
    "runner": runner,
    "github": github,
    "redis-cut": redis_cut,
}
