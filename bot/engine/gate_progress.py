"""Check runs in progress while a run's gates work (DESIGN §5): the runner pushes its
commit and says `gating` (with the sha and the blocking hooks) before it runs them; the
engine's tick then shows each gate, and `openase` for the ticket, as in progress on that
commit. The result's completed check runs supersede these (same scope, newer revision).

The run row is locked while they are added and must still be running: a result taken in
meanwhile commits its completed check runs after, never before, these.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.effects.kinds import EffectKind
from bot.effects.outbox import add_effect, revision_key
from bot.engine.context import Engine, Followups, load
from bot.tables.workflow import Run, RunEvent, RunState
from runner.contract import EventKind

GATING = "gating"


async def report_gating(engine: Engine) -> list[Followups]:
    """In-progress check runs for every running run that reached its gates: what follows
    each run's new ones (so their count is how many runs were reported)."""
    async with engine.deps.sessions() as session:
        rows = (
            await session.execute(
                select(RunEvent.run_id, RunEvent.event)
                .join(Run, Run.id == RunEvent.run_id)
                .where(
                    Run.state == RunState.RUNNING,
                    RunEvent.kind == EventKind.PHASE,
                    RunEvent.event["text"].astext == GATING,
                )
            )
        ).all()
    reported: list[Followups] = []
    for run_id, event in rows:
        data: dict[str, Any] = event.get("data") or {}
        sha, hooks = data.get("head_sha"), data.get("hooks") or []
        if not isinstance(sha, str) or not data.get("pushed"):
            continue
        followups = Followups(decision=f"gating:{run_id}")
        async with engine.deps.sessions() as session, session.begin():
            run = await session.get(Run, run_id, with_for_update=True)
            if run is None or run.state != RunState.RUNNING:
                continue
            loaded = await load(session, run.ticket_id, lock=False)
            if loaded is None or loaded.repo is None:
                continue
            repo = loaded.repo
            gates = [hook for hook in hooks if isinstance(hook, str)]
            checks = [(f"openase/{gate}", gate) for gate in gates] + [("openase", "openase")]
            for name, hook in checks:
                added = await add_effect(
                    session,
                    key=revision_key(f"check:{sha}:{name}", f"{run_id}.gating"),
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
        if followups.outbox:
            reported.append(followups)
    return reported
