"""`openase runner --machine NAME`: an arq worker on `openase:runs:<NAME>` that executes runs.

It needs Redis and git remotes only: no database, no tracker credentials. It registers the
machine in Redis (`openase:machine:<NAME>`, a hash that expires unless heartbeats keep it)
with its capacity, labels, agent CLIs and free resources.

Stopping: a run is canceled when `openase:run:<id>:cancel` appears (the control plane's
/cancel) or when its arq job is aborted; the agent's process group is stopped, the work so
far committed and pushed, and the result says `canceled`. On SIGTERM/SIGINT the runner
takes no new runs, lets running ones finish for `drain_seconds`, then stops them the same
way and hands their jobs back to the queue (arq runs them again when a runner is back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker, func
from redis.exceptions import RedisError

from runner.contract import (
    CONTROL_QUEUE,
    MACHINES_SET,
    REMOVE_WORKTREE_JOB,
    RUN_FINISHED_JOB,
    RUN_JOB,
    ContractMismatch,
    RunResult,
    RunSpec,
    RunStatus,
    machine_key,
    run_cancel_key,
    run_queue,
    run_result_key,
)
from runner.events import RedisEventSink
from runner.execute import Cancellation, execute
from runner.git import GitError
from runner.machine import MachineFacts, disk_free, find_clis, memory_available
from runner.workspace import Workspace

log = structlog.get_logger(__name__)

HEARTBEAT_SECONDS = 5.0
# A machine that missed this many seconds of heartbeats disappears from the registry.
MACHINE_TTL_SECONDS = 30
RESULT_TTL_SECONDS = 7 * 24 * 3600
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


@dataclass
class RunnerState:
    """Shared by every job: arq hands each job a shallow copy of the worker's ctx."""

    shutting_down: bool = False


async def execute_run(ctx: dict[str, Any], spec_wire: object) -> dict[str, Any]:
    """The arq job: one RunSpec (wire dict) in, one RunResult (wire dict) out."""
    config: RunnerConfig = ctx["config"]
    redis: ArqRedis = ctx["redis"]
    try:
        spec = RunSpec.from_wire(spec_wire)
    except ContractMismatch as error:
        log.error("run_refused", error=str(error))
        run_id = spec_wire.get("run_id") if isinstance(spec_wire, dict) else None
        now = time.time()
        refused = _refusal(str(run_id or "unknown"), str(error), config.machine, now)
        return refused
    structlog.contextvars.bind_contextvars(run_id=spec.run_id, machine=config.machine)
    cancellation = Cancellation()
    sink = RedisEventSink(redis, spec.run_id)
    await sink.start()
    runs: dict[str, Cancellation] = ctx["runs"]
    runs[spec.run_id] = cancellation
    watcher = asyncio.create_task(_watch_cancel(redis, spec.run_id, cancellation))
    task = asyncio.create_task(
        execute(
            spec,
            workspace=ctx["workspace"],
            sink=sink,
            cancellation=cancellation,
            machine=config.machine,
        )
    )
    handed_back = False
    try:
        try:
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
            await _store_result(redis, result)
            if not handed_back:
                await _announce(redis, result.run_id)
            raise
        await _store_result(redis, result)
        await _announce(redis, result.run_id)
        return result.to_wire()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        runs.pop(spec.run_id, None)
        await sink.close()
        log.info("run_finished", handed_back=handed_back)
        structlog.contextvars.unbind_contextvars("run_id", "machine")


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


def _refusal(run_id: str, error: str, machine: str, now: float) -> dict[str, Any]:
    at = datetime.fromtimestamp(now, UTC)
    return RunResult(
        run_id=run_id,
        status=RunStatus.REFUSED,
        error_class="contract_mismatch",
        error=error,
        machine=machine,
        started_at=at,
        finished_at=at,
    ).to_wire()


async def _store_result(redis: ArqRedis, result: RunResult) -> None:
    """Also keep the result beside the run's events: an aborted job has no arq result."""
    try:
        await redis.set(
            run_result_key(result.run_id), json.dumps(result.to_wire()), ex=RESULT_TTL_SECONDS
        )
    except (RedisError, OSError) as error:
        log.warning("run_result_unstored", error=str(error))


async def _announce(redis: ArqRedis, run_id: str) -> None:
    """Tell the control plane the result is there (its sweep finds it anyway, later)."""
    try:
        await redis.enqueue_job(
            RUN_FINISHED_JOB, run_id, _job_id=f"run-finished:{run_id}", _queue_name=CONTROL_QUEUE
        )
    except (RedisError, OSError) as error:
        log.warning("run_finish_unannounced", error=str(error))


async def _watch_cancel(redis: ArqRedis, run_id: str, cancellation: Cancellation) -> None:
    key = run_cancel_key(run_id)
    while not cancellation.requested:
        try:
            reason = await redis.get(key)
        except (RedisError, OSError):
            reason = None
        if reason is not None:
            text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
            cancellation.cancel(text or "canceled")
            return
        await asyncio.sleep(CANCEL_POLL_SECONDS)


async def _register(ctx: dict[str, Any]) -> None:
    config: RunnerConfig = ctx["config"]
    facts: MachineFacts = ctx["facts"]
    facts.running = len(ctx["runs"])
    facts.disk_free_bytes = disk_free(config.workspace_root)
    facts.memory_available_bytes = memory_available()
    facts.heartbeat_at = time.time()
    redis: ArqRedis = ctx["redis"]
    key = machine_key(config.machine)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=facts.to_redis())
        pipe.expire(key, MACHINE_TTL_SECONDS)
        pipe.sadd(MACHINES_SET, config.machine)
        await pipe.execute()


async def _heartbeat(ctx: dict[str, Any]) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        try:
            await _register(ctx)
        except (RedisError, OSError) as error:
            log.warning("machine_heartbeat_failed", error=str(error))


def make_runner(config: RunnerConfig, *, burst: bool = False) -> Worker:
    """The arq worker of one machine; signals are the caller's (see `serve_runner`)."""
    state = RunnerState()

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["config"] = config
        ctx["runs"] = {}
        ctx["workspace"] = Workspace(config.workspace_root)
        ctx["facts"] = MachineFacts(
            name=config.machine,
            labels=list(config.labels),
            capacity=config.max_runs,
            clis=await find_clis(),
        )
        await _register(ctx)
        ctx["heartbeat"] = asyncio.create_task(_heartbeat(ctx))
        log.info(
            "runner_registered",
            machine=config.machine,
            queue=run_queue(config.machine),
            clis=ctx["facts"].clis,
            capacity=config.max_runs,
        )

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        heartbeat: asyncio.Task[None] | None = ctx.get("heartbeat")
        if heartbeat is not None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        with contextlib.suppress(RedisError, OSError):
            redis: ArqRedis = ctx["redis"]
            async with redis.pipeline(transaction=True) as pipe:
                pipe.delete(machine_key(config.machine))
                pipe.srem(MACHINES_SET, config.machine)
                await pipe.execute()

    worker = Worker(
        functions=[
            func(execute_run, name=RUN_JOB, timeout=JOB_TIMEOUT_SECONDS, max_tries=3),
            func(remove_worktree, name=REMOVE_WORKTREE_JOB, timeout=600),
        ],
        queue_name=run_queue(config.machine),
        redis_settings=RedisSettings.from_dsn(config.redis_url),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        burst=burst,
        max_jobs=config.max_runs,
        job_timeout=JOB_TIMEOUT_SECONDS,
        keep_result=RESULT_TTL_SECONDS,
        allow_abort_jobs=True,
        handle_signals=False,
        poll_delay=0.05,
        ctx={"state": state},
    )
    return worker


async def serve_runner(config: RunnerConfig, stop: asyncio.Event) -> None:
    """Run until `stop` is set, then drain: no new runs, `drain_seconds` for running ones,
    then cancel and hand back the rest."""
    worker = make_runner(config)
    main = asyncio.create_task(worker.async_run())
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if main in done:  # the worker ended on its own (lost Redis at start, say)
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
