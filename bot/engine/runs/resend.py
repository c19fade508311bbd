"""Sending again the runs committed as queued that no runner picked up: the send was lost,
Redis forgot it, or the job expired with its token (the engine tick, bot/engine/jobs.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from arq.constants import job_key_prefix
from pydantic import SecretStr
from sqlalchemy import select

from bot.engine.context import Engine
from bot.engine.runs.lookups import answers, ask_existing, ask_values
from bot.engine.runs.sending import send
from bot.engine.runs.spec import GATES_ONLY_AGENT, PROVIDER_KEY
from bot.engine.runs.tracking import HANDED_BACK, parse_result
from bot.tables.mirror import Repository, Ticket
from bot.tables.workflow import Run, RunState
from harness_store.db import reading
from runner.contract import RunSpec, run_result_key

log = structlog.get_logger(__name__)

# A queued run not seen by its runner this long after it was sent is sent again.
RESEND_AFTER = timedelta(seconds=20)


async def resend_queued(engine: Engine, *, older_than: timedelta = RESEND_AFTER) -> int:
    """Send again the runs committed as queued that no runner has picked up (the send was
    lost, Redis forgot it, or the job expired with its token); the secrets a stored spec
    lacks are filled in anew, with a new token."""
    now = datetime.now(UTC)
    redis = engine.deps.redis
    async with reading(engine.deps.sessions) as session:
        waiting = (
            await session.execute(
                select(Run.id, Repository.installation_id, Repository.full_name)
                .join(Ticket, Ticket.id == Run.ticket_id)
                .join(Repository, Repository.id == Ticket.repository_id)
                .where(
                    Run.state == RunState.QUEUED,
                    Run.queued_at < now - older_than,
                    Run.started_at.is_(None),
                    Run.machine.is_not(None),
                    Repository.installation_id.is_not(None),
                )
            )
        ).all()
    if not waiting:
        return 0
    # Each run's job and result in one round trip: 200 runs waiting for slots made a
    # round trip or two each, every tick.
    pipe = redis.pipeline(transaction=False)
    ask_existing(pipe, [job_key_prefix + run_id for run_id, *_ in waiting])
    ask_values(pipe, [run_result_key(run_id) for run_id, *_ in waiting])
    queued, results = await answers(pipe)
    lost: dict[str, tuple[int, str]] = {}
    for (run_id, installation_id, full_name), job_queued, raw in zip(
        waiting, queued, results, strict=True
    ):
        if job_queued or installation_id is None:
            continue  # still queued (or just taken), its token alive: no new one
        result = parse_result(run_id, raw)
        if result is not None and result.error_class != HANDED_BACK:
            continue  # it ran; the sweep takes its result in
        lost[run_id] = (installation_id, full_name)
    if not lost:
        return 0
    async with reading(engine.deps.sessions) as session:
        rows = [
            (run, *lost[run.id])
            for run in await session.scalars(select(Run).where(Run.id.in_(lost)))
        ]
    sent = 0
    for run, installation_id, full_name in rows:
        if run.machine is None or run.state != RunState.QUEUED or run.started_at is not None:
            continue  # taken meanwhile
        # `_provider`, `_ask`: what the engine keeps beside the spec, not part of it.
        stored = {key: value for key, value in run.spec.items() if not key.startswith("_")}
        provider = engine.control.providers.get(str(run.spec.get(PROVIDER_KEY, "")))
        spec = RunSpec.model_validate(stored)
        if provider is not None and spec.agent.argv != GATES_ONLY_AGENT.argv:
            agent = spec.agent.model_copy(update={"env": dict(provider.env)})
            spec = spec.model_copy(update={"agent": agent})
        token = await engine.github.run_token(installation_id, full_name, write=spec.push)
        spec = spec.model_copy(update={"git_token": SecretStr(token.value)})
        if await send(redis, spec, run.machine, token.expires_at):
            sent += 1
            log.info("run_resent", run_id=run.id, machine=run.machine)
    return sent
