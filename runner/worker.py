"""`openase runner --machine NAME`: an arq worker on `openase:runs:<NAME>` that executes runs.

It needs Redis and git remotes only: no database, no tracker credentials. It registers the
machine in Redis (`openase:machine:<NAME>`, a hash that expires unless heartbeats keep it)
with its capacity, labels, agent CLIs and free resources.

Stopping: a run is canceled when `openase:run:<id>:cancel` appears (the control plane's
/cancel) or when its arq job is aborted; the agent's process group is stopped, the work so
far committed and pushed, and the result says `canceled`. On SIGTERM/SIGINT the runner
takes no new runs, lets running ones finish for `drain_seconds`, then stops them the same
way and hands their jobs back to the queue (arq runs them again when a runner is back).

Redis outages, of any length: the runner waits for Redis instead of ending
(runner/redis_outage.py). Runs go on; their events wait in memory (bounded) and their
results on disk (runner/delivery.py). When Redis is back, empty or not, the machine
registers again, heartbeats resume, buffered events are written and waiting results
delivered. A run the control plane declared lost meanwhile finds its cancel signal and
stops like a canceled one, its work pushed. Nothing runs twice: a run this machine is
running or has a result for is not started again when Redis forgot its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from arq.connections import ArqRedis
from arq.worker import Worker, func
from redis.exceptions import RedisError

from runner.contract import (
    MACHINES_SET,
    REMOVE_WORKTREE_JOB,
    RUN_JOB,
    ContractMismatch,
    RunResult,
    RunSpec,
    RunStatus,
    machine_key,
    run_cancel_key,
    run_queue,
)
from runner.delivery import Results, store
from runner.events import RedisEventSink
from runner.execute import Cancellation, execute
from runner.git import GitError
from runner.machine import MachineFacts, disk_free, find_clis, memory_available
from runner.redis_outage import OutlastingWorker, RedisOutage, stop_if_cancelled
from runner.sandbox import bwrap
from runner.sandbox.confine import Sandbox, remove_stale_socket_dirs
from runner.wakeup import Wakeup
from runner.workspace import Workspace

log = structlog.get_logger(__name__)

HEARTBEAT_SECONDS = 5.0
# A machine that missed this many seconds of heartbeats disappears from the registry.
MACHINE_TTL_SECONDS = 30
CANCEL_POLL_SECONDS = 0.5
# arq's own timeout is a backstop only: the runner enforces each run's wall-time limit.
JOB_TIMEOUT_SECONDS = 2 * 24 * 3600


@dataclass(frozen=True)
class RunnerConfig:
    machine: str
    redis_url: str
    workspace_root: Path
    labels: tuple[str, ...] = ()
    max_runs: int = 2
    drain_seconds: float = 60.0
    # Shown read-only inside every run's sandbox besides the system and the agent CLI's own
    # installation: where `command` agents' scripts or extra tools live.
    sandbox_read: tuple[Path, ...] = ()


@dataclass
class RunnerState:
    """Shared by every job: arq hands each job a shallow copy of the worker's ctx."""

    shutting_down: bool = False
    events_dropped: int = 0  # by runs whose events are all written (or given up)


async def execute_run(ctx: dict[str, Any], spec_wire: object) -> dict[str, Any]:
    """The arq job: one RunSpec (wire dict) in, one RunResult (wire dict) out."""
    config: RunnerConfig = ctx["config"]
    redis: ArqRedis = ctx["redis"]
    results: Results = ctx["results"]
    try:
        spec = RunSpec.from_wire(spec_wire)
    except ContractMismatch as error:
        log.error("run_refused", error=str(error))
        run_id = spec_wire.get("run_id") if isinstance(spec_wire, dict) else None
        now = time.time()
        refused = _refusal(str(run_id or "unknown"), str(error), config.machine, now)
        # Through our result key like any other (arq keeps no results): the control plane
        # finishes the run as refused instead of sending it again.
        results.keep(refused)
        await results.deliver(refused)
        return refused.to_wire()
    runs: dict[str, Cancellation] = ctx["runs"]
    # Redis came back empty and the control plane sent the run again: never twice.
    if spec.run_id in runs:
        log.warning("run_already_running", run_id=spec.run_id)
        return {"run_id": spec.run_id, "duplicate": True}
    earlier = results.earlier(spec.run_id)
    if earlier is not None:
        log.warning("run_already_finished", run_id=spec.run_id)
        await results.deliver(earlier)
        return earlier.to_wire()
    structlog.contextvars.bind_contextvars(run_id=spec.run_id, machine=config.machine)
    cancellation = Cancellation()
    outage: RedisOutage = ctx["outage"]
    sink = RedisEventSink(redis, spec.run_id, outage=outage)
    await sink.start()
    ctx["sinks"][spec.run_id] = sink
    runs[spec.run_id] = cancellation
    watcher = asyncio.create_task(_watch_cancel(redis, spec.run_id, cancellation, outage))
    task = asyncio.create_task(
        execute(
            spec,
            workspace=ctx["workspace"],
            sink=sink,
            cancellation=cancellation,
            machine=config.machine,
            sandbox=ctx["sandbox"],
        )
    )
    handed_back = False
    try:
        try:
            await _announce(ctx)  # while the run gets going: the machine choice sees it
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            # arq abort or runner shutdown: stop the agent, keep its work, then let arq
            # record the abort (or re-queue the job, on shutdown).
            shutting_down = ctx["state"].shutting_down
            handed_back = shutting_down
            if shutting_down:
                cancellation.cancel(
                    "the runner is shutting down; the run goes back to the queue",
                    "runner_shutdown",
                )
            else:
                cancellation.cancel("the run's job was aborted", "aborted")
            result = await task
            if handed_back:  # not the run's result: the job runs again, nothing to keep
                await sink.close()
                with contextlib.suppress(RedisError, OSError):
                    await store(redis, result)
            else:
                await _finish(ctx, result, sink)
            raise
        await _finish(ctx, result, sink)
        return result.to_wire()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        runs.pop(spec.run_id, None)
        await sink.close()
        if sink.done:
            _retire(ctx, spec.run_id)
        log.info("run_finished", handed_back=handed_back)
        structlog.contextvars.unbind_contextvars("run_id", "machine")


async def _finish(ctx: dict[str, Any], result: RunResult, sink: RedisEventSink) -> None:
    """Deliver the result after the run's events; with Redis away, it waits on disk."""
    results: Results = ctx["results"]
    results.keep(result)  # from here a second start of the run finds it finished
    # Its slot is free: the registry says so before the result goes out, so the control
    # plane, taking the result, sends the next run here at once, not after a heartbeat.
    ctx["runs"].pop(result.run_id, None)
    await _announce(ctx)
    await sink.close()
    if sink.done and await results.deliver(result):
        return
    results.wake()  # the courier delivers it once the events are written


def _retire(ctx: dict[str, Any], run_id: str) -> None:
    """The run's events are all written (or given up): count what it dropped."""
    sink: RedisEventSink | None = ctx["sinks"].pop(run_id, None)
    if sink is not None:
        ctx["state"].events_dropped += sink.dropped


async def remove_worktree(ctx: dict[str, Any], repo_full_name: str, work_branch: str) -> str:
    """The arq job: a ticket is finished, its worktree and local branch can go."""
    workspace: Workspace = ctx["workspace"]
    try:
        await workspace.remove(repo_full_name, work_branch)
    except (GitError, ValueError) as error:
        log.warning(
            "worktree_not_removed", repo=repo_full_name, branch=work_branch, error=str(error)
        )
        return f"not removed: {error}"
    return "removed"


def _refusal(run_id: str, error: str, machine: str, now: float) -> RunResult:
    at = datetime.fromtimestamp(now, UTC)
    return RunResult(
        run_id=run_id,
        status=RunStatus.REFUSED,
        error_class="contract_mismatch",
        error=error,
        machine=machine,
        started_at=at,
        finished_at=at,
    )


async def _watch_cancel(
    redis: ArqRedis, run_id: str, cancellation: Cancellation, outage: RedisOutage
) -> None:
    """Stop the run when asked: by /cancel, or by the control plane having declared it
    lost while this machine was cut off from Redis (a zombie, whose work is kept)."""
    key = run_cancel_key(run_id)
    while not cancellation.requested:
        stop_if_cancelled()
        try:
            reason = await redis.get(key)
        except (RedisError, OSError) as error:
            stop_if_cancelled(error)
            if outage.noticed(error):
                await outage.until_back()
                continue
            reason = None
        if reason is not None:
            text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
            cancellation.cancel(text or "canceled")
            return
        await asyncio.sleep(CANCEL_POLL_SECONDS)


async def _register(ctx: dict[str, Any]) -> None:
    config: RunnerConfig = ctx["config"]
    facts: MachineFacts = ctx["facts"]
    outage: RedisOutage = ctx["outage"]
    sinks: dict[str, RedisEventSink] = ctx["sinks"]
    facts.running = len(ctx["runs"])
    facts.disk_free_bytes = disk_free(config.workspace_root)
    facts.memory_available_bytes = memory_available()
    facts.heartbeat_at = time.time()
    facts.redis_outage_seconds = outage.last_seconds
    facts.redis_back_at = outage.back_at
    facts.events_dropped = ctx["state"].events_dropped + sum(s.dropped for s in sinks.values())
    redis: ArqRedis = ctx["redis"]
    key = machine_key(config.machine)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=facts.to_redis())
        pipe.expire(key, MACHINE_TTL_SECONDS)
        pipe.sadd(MACHINES_SET, config.machine)
        await pipe.execute()


async def _announce(ctx: dict[str, Any]) -> None:
    """Register now, between heartbeats (a run started or ended); with Redis away, the
    heartbeat will once it is back."""
    outage: RedisOutage = ctx["outage"]
    if outage.away:
        return
    try:
        await _register(ctx)
    except (RedisError, OSError) as error:
        stop_if_cancelled(error)
        outage.noticed(error)


async def _heartbeat(ctx: dict[str, Any]) -> None:
    outage: RedisOutage = ctx["outage"]
    while True:
        stop_if_cancelled()
        await asyncio.sleep(HEARTBEAT_SECONDS)
        try:
            await _register(ctx)
        except (RedisError, OSError) as error:
            stop_if_cancelled(error)
            if not outage.noticed(error):
                log.warning("machine_heartbeat_failed", error=str(error))


def make_runner(config: RunnerConfig, *, burst: bool = False) -> Worker:
    """The arq worker of one machine; signals are the caller's (see `serve_runner`)."""

    async def probe() -> None:
        await worker.pool.ping()

    outage = RedisOutage(probe)

    async def flushed(run_id: str) -> None:
        sink: RedisEventSink | None = worker.ctx["sinks"].get(run_id)
        if sink is not None:
            await sink.flushed()
            _retire(worker.ctx, run_id)

    async def back(_seconds: float) -> None:
        # Redis may have come back empty: the machine registers again at once (its runs'
        # liveness keys and events come back through their sinks), and results go out.
        await _register(worker.ctx)
        worker.ctx["results"].wake()

    async def on_startup(ctx: dict[str, Any]) -> None:
        if "config" not in ctx:  # not when starting again after Redis went away
            ctx["config"] = config
            ctx["workspace"] = Workspace(config.workspace_root)
            stale = remove_stale_socket_dirs()
            if stale:
                log.info("sandbox_stale_sockets_removed", count=stale)
            support = await bwrap.probe()
            if not support.available:
                log.warning("sandbox_unavailable", problem=support.problem)
            ctx["sandbox"] = Sandbox(support, read_only=config.sandbox_read)
            ctx["facts"] = MachineFacts(
                name=config.machine,
                labels=list(config.labels),
                capacity=config.max_runs,
                clis=await find_clis(),
                sandbox=support.tool if support.available else "",
                sandbox_problem=support.problem,
            )
            results = Results(config.workspace_root, ctx["redis"], outage)
            ctx["results"] = results
            ctx["courier"] = asyncio.create_task(results.courier(flushed))
            results.wake()  # what a previous runner process here finished but never delivered
            outage.on_back.append(back)
        await _register(ctx)
        wakeup.start(ctx["redis"])
        if "heartbeat" not in ctx:
            ctx["heartbeat"] = asyncio.create_task(_heartbeat(ctx))
        log.info(
            "runner_registered",
            machine=config.machine,
            queue=run_queue(config.machine),
            clis=ctx["facts"].clis,
            capacity=config.max_runs,
        )

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await wakeup.stop()
        for name in ("heartbeat", "courier"):
            task: asyncio.Task[None] | None = ctx.pop(name, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # Events still waiting for Redis die with the process; results wait on disk.
        for run_id, sink in list(ctx["sinks"].items()):
            await sink.abandon()
            _retire(ctx, run_id)
        redis: ArqRedis | None = ctx.get("redis")  # None: Redis never answered
        if redis is None or outage.away:  # the entry expires by itself
            return
        with contextlib.suppress(RedisError, OSError):
            async with redis.pipeline(transaction=True) as pipe:
                pipe.delete(machine_key(config.machine))
                pipe.srem(MACHINES_SET, config.machine)
                await pipe.execute()

    wakeup = Wakeup(config.machine)
    worker = OutlastingWorker(
        functions=[
            func(execute_run, name=RUN_JOB, timeout=JOB_TIMEOUT_SECONDS, max_tries=3),
            func(remove_worktree, name=REMOVE_WORKTREE_JOB, timeout=600),
        ],
        queue_name=run_queue(config.machine),
        redis_url=config.redis_url,
        outage=outage,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        burst=burst,
        max_jobs=config.max_runs,
        job_timeout=JOB_TIMEOUT_SECONDS,
        # No arq results: arq keeps a job's arguments with its result, and a run's are its
        # spec, git token and provider keys included. A run's result travels under
        # `openase:run:<id>:result` (runner/delivery.py); a job that failed before its
        # function ran (expired, aborted, refused by arq) is stored under this setting,
        # not the function's.
        keep_result=0,
        allow_abort_jobs=True,
        handle_signals=False,
        # The poll itself waits for a run's wake-up (runner/wakeup.py), or at most
        # IDLE_POLL_SECONDS: a run is taken the moment it is sent, an idle runner is idle.
        poll_delay=0,
        wakeup=wakeup,
        ctx={"state": RunnerState(), "outage": outage, "runs": {}, "sinks": {}},
    )
    return worker


async def serve_runner(config: RunnerConfig, stop: asyncio.Event) -> None:
    """Run until `stop` is set, then drain: no new runs, `drain_seconds` for running ones,
    then cancel and hand back the rest."""
    worker = make_runner(config)
    main = asyncio.create_task(worker.async_run())
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if main in done:  # the worker ended on its own (an error: it outlasts Redis outages)
        stopper.cancel()
        await worker.close()
        main.result()
        return
    worker.allow_pick_jobs = False
    log.info("runner_draining", running=len(worker.tasks), seconds=config.drain_seconds)
    deadline = time.monotonic() + config.drain_seconds
    while worker.tasks and any(not t.done() for t in worker.tasks.values()):
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.1)
    worker.ctx["state"].shutting_down = True
    await worker.close()  # cancels what still runs (handed back) and waits for it
    main.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await main


def run(config: RunnerConfig) -> int:
    """Blocking entry point for `openase runner`."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve_runner(config, stop)
        return 0

    return asyncio.run(main())
