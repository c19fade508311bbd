"""Check runs in progress while a run's gates work (DESIGN §5): the runner pushes its
commit and says `gating` (with the sha and the blocking hooks) before it runs them; the
engine's tick then shows each gate, and `openase` for the ticket, as in progress on that
commit. The result's completed check runs supersede these (same scope, newer revision).

The run row is locked while they are added and must still be running: a result taken in
meanwhile commits its completed check runs after, never before, these.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Select, select, text

from bot.effects.kinds import EffectKind
from bot.effects.outbox import add_effect, revision_key
from bot.engine.context import Engine, Followups, load
from bot.tables.workflow import OutboxEffect, Run, RunEvent, RunState
from harness_store.db import reading
from runner.contract import EventKind

GATING = "gating"
# Said with literals, exactly as the partial index ix_run_events_gating (bot/tables/
# workflow.py): a bound value's generic plan could not use it, and read every event of
# every running run instead (37 ms of PostgreSQL's CPU a tick with 200 runs).
_GATING_EVENT = text(
    f"run_events.kind = '{EventKind.PHASE.value}' AND (run_events.event ->> 'text') = '{GATING}'"
)


async def unreported_gating(engine: Engine) -> list[str]:
    """Running runs that reached their gates (pushed) whose check runs are not reported."""
    return [run_id for run_id, _ in await _unreported(engine)]


async def report_gating(engine: Engine, run_ids: Collection[str] | None = None) -> list[Followups]:
    """In-progress check runs for every running run (of `run_ids`, or all) that reached its
    gates: what follows each run's new ones (so their count is how many runs were
    reported). The tick hands each run to a job of its own (bot/engine/jobs.py)."""
    reported: list[Followups] = []
    for run_id, data in await _unreported(engine, run_ids):
        followups = await _report(engine, run_id, data)
        if followups.outbox:
            reported.append(followups)
    return reported


def gating_events() -> Select[tuple[str, dict[str, Any]]]:
    """The running runs' gating events (their data: the commit and the gates)."""
    return (
        select(RunEvent.run_id, RunEvent.event)
        .join(Run, Run.id == RunEvent.run_id)
        .where(Run.state == RunState.RUNNING, _GATING_EVENT)
    )


async def _unreported(
    engine: Engine, run_ids: Collection[str] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    query = gating_events()
    if run_ids is not None:
        query = query.where(Run.id.in_(list(run_ids)))
    async with reading(engine.deps.sessions) as session:
        rows = (await session.execute(query)).all()
    pushed: list[tuple[str, dict[str, Any]]] = []
    for run_id, event in rows:
        data = event.get("data") or {}
        if isinstance(data.get("head_sha"), str) and data.get("pushed"):
            pushed.append((run_id, data))
    if not pushed:
        return []
    # Reported already: the `openase` check run is added last, in the same transaction as
    # the gates'. One query for all, rather than a locked transaction per run every tick
    # (200 runs at their gates made ticks of many seconds).
    last_keys = [_key(data["head_sha"], "openase", run_id) for run_id, data in pushed]
    async with reading(engine.deps.sessions) as session:
        reported_keys = select(OutboxEffect.key).where(OutboxEffect.key.in_(last_keys))
        done = set(await session.scalars(reported_keys))
    return [
        (run_id, data)
        for run_id, data in pushed
        if _key(data["head_sha"], "openase", run_id) not in done
    ]


async def _report(engine: Engine, run_id: str, data: dict[str, Any]) -> Followups:
    sha, hooks = data["head_sha"], data.get("hooks") or []
    followups = Followups(decision=f"gating:{run_id}")
    async with engine.deps.sessions() as session, session.begin():
        # NO KEY UPDATE: the run's events are stored meanwhile (their foreign key's share
        # lock waits for FOR UPDATE, not for this).
        run = await session.get(Run, run_id, with_for_update={"key_share": True})
        if run is None or run.state != RunState.RUNNING:
            return followups
        loaded = await load(session, run.ticket_id, lock=False)
        if loaded is None or loaded.repo is None:
            return followups
        repo = loaded.repo
        gates = [hook for hook in hooks if isinstance(hook, str)]
        checks = [(f"openase/{gate}", gate) for gate in gates] + [("openase", "openase")]
        for name, hook in checks:
            added = await add_effect(
                session,
                key=_key(sha, name, run_id),
                kind=EffectKind.CHECK_RUN,
                payload={
                    "repo": repo.full_name,
                    "head_sha": sha,
                    "name": name,
                    "external_id": f"{run_id}:{hook}",  # as the completed one
                    "status": "in_progress",
                    "title": "Running" if name != "openase" else "Gates running",
                    "summary": f"Attempt {run.attempt} of `{run.workflow}`: gates running.",
                    "details_url": engine.run_url(run_id),
                },
                ticket_id=run.ticket_id,
                installation_id=repo.installation_id,
            )
            if added:
                followups.outbox.add(repo.installation_id)
    return followups


def _key(sha: str, check: str, run_id: str) -> str:
    """The outbox key of a run's in-progress check run `check` on `sha`."""
    return revision_key(f"check:{sha}:{check}", f"{run_id}.gating")
