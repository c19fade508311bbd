"""The runner's CPU priority: a runner sharing its machine with the control plane (the
runner `openase up` starts, or any runner beside a control worker) yields the CPU to it,
so webhooks are answered and runs followed while agents compile and test suites run.

A niceness is Linux's per-thread priority (0 normal, 19 lowest), and threads and child
processes inherit it from the thread that starts them: `yield_cpu` is called as the runner
starts, before any thread or agent is, and everything it starts runs at that niceness.
Lowering it needs no privileges; raising it back does, and is never tried.
"""

from __future__ import annotations

import os

import structlog

log = structlog.get_logger(__name__)

NICEST = 19  # the lowest priority there is


def yield_cpu(niceness: int) -> int:
    """Run this process (and what it starts from now on) at `niceness` at least; the
    niceness it runs at."""
    if not 0 <= niceness <= NICEST:
        raise ValueError(f"a niceness is 0 to {NICEST}, not {niceness}")
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if niceness <= current:
        return current  # as low already (`nice openase runner`): never raised
    os.setpriority(os.PRIO_PROCESS, 0, niceness)
    log.info("runner_niceness", niceness=niceness)
    return niceness
