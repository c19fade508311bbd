"""The name of every arq job and queue of the control plane, in one place: producers enqueue
by these names and the composition root (bot/processes/worker.py) registers the functions
under them, so no room imports another room's job module just to name its job."""

from __future__ import annotations

from runner.contract import (
    CONTROL_QUEUE,
    REMOVE_WORKTREE_JOB,
    RUN_FINISHED_JOB,
    RUN_JOB,
    run_queue,
)

__all__ = [
    "BACKFILL_JOB",
    "CONTROL_QUEUE",
    "DISPATCH_JOB",
    "ENGINE_TICK_CRON",
    "GATING_JOB",
    "MERGE_RECHECK_JOB",
    "PERFORM_OUTBOX_CRON",
    "PERFORM_OUTBOX_JOB",
    "RECONCILE_CRON",
    "RECOVER_DELIVERIES_CRON",
    "REMOVE_WORKTREE_JOB",
    "RUN_FINISHED_JOB",
    "RUN_JOB",
    "SCHEDULES_CRON",
    "TICKET_ACTION_JOB",
    "action_job_id",
    "gating_job_id",
    "run_queue",
]

# On the control queue (CONTROL_QUEUE), run by `openase worker` (which also ingests stored
# deliveries, claimed from PostgreSQL: bot/intake/pump.py):
BACKFILL_JOB = "backfill_repository"  # a repository's open issues and PRs, by its row id
DISPATCH_JOB = "dispatch_ticket"  # try to start a ticket (deferred to its backoff)
PERFORM_OUTBOX_JOB = "perform_outbox"  # an installation's (or tracker's) due effects
TICKET_ACTION_JOB = "ticket_action"  # an action pressed on a ticket's web page, by row id
GATING_JOB = "report_gating"  # a run reached its gates: in-progress check runs for them
MERGE_RECHECK_JOB = "recheck_merges"  # every reviewed ticket's merge gate looked at again
# RUN_FINISHED_JOB: a runner announces a run's result.


def action_job_id(action_id: int) -> str:
    """The arq job id of a web action: the same action is never queued twice at once."""
    return f"ticket-action:{action_id}"


def gating_job_id(run_id: str) -> str:
    """The arq job id of reporting a run's gates: queued once however many ticks see it."""
    return f"gating:{run_id}"


# Crons of the control worker (unique across workers).
PERFORM_OUTBOX_CRON = "perform_outbox_cron"  # effects due again, jobs Redis lost
ENGINE_TICK_CRON = "engine_tick"  # results, lost runs and due tickets an event missed
RECOVER_DELIVERIES_CRON = "recover_deliveries"  # ask GitHub again for deliveries we missed
RECONCILE_CRON = "reconcile"  # read back issues and PRs changed while webhooks were missed
SCHEDULES_CRON = "schedules"  # scheduled tickets: each slot files one issue

# On a machine's queue (run_queue(machine)), run by `openase runner`: RUN_JOB executes a
# run, REMOVE_WORKTREE_JOB drops a finished ticket's worktree.
