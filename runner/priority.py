"""The runner's CPU priority: a runner sharing its machine with the control plane (the
runner `openase up` starts, or any runner beside a control worker) yields the CPU to it,
so webhooks are answered and runs followed while agents compile and test suites run.

A niceness is Linux's per-thread priority (0 normal, 19 lowest), and threads and child
processes inherit it from the thread that starts them: `yield_cpu` is called as the runner
starts, before any thread or agent is, and everything it starts runs at that niceness.
Lowering it needs no privileges; raising it back does, and is never tried.

A niceness alone is not enough where Linux schedules by *autogroup* (CONFIG_SCHED_AUTOGROUP,
on by default in most distributions, for processes outside a CPU cgroup): the CPU is shared
between sessions first, and a niceness only weighs against processes of the same session.
PostgreSQL, Redis, the control worker and the web app each run in a session of their own
(`up` starts them so), and so did every agent, hook and git process the runner started:
under `make bench-scale`'s 200 agents each weighed as much as all of PostgreSQL, and the
runner's niceness changed nothing. So the runner leading its session gives the session's
autogroup its niceness too, and starts its children in process groups of their own inside
that session (`child_group`), where they share it.
"""

from __future__ import annotations

import errno
import functools
import os
import time
from pathlib import Path
from typing import TypedDict

import structlog

log = structlog.get_logger(__name__)

NICEST = 19  # the lowest priority there is
AUTOGROUP = Path("/proc/self/autogroup")
# The kernel takes one unprivileged autogroup change a tenth of a second, machine-wide:
# twenty runners starting at once wait their turn.
AUTOGROUP_TRIES_FOR = 5.0
AUTOGROUP_RETRY_SECONDS = 0.1


class ChildGroup(TypedDict):
    """The `subprocess` arguments that start a child of the runner in a group of its own."""

    start_new_session: bool
    process_group: int | None


def yield_cpu(niceness: int) -> int:
    """Run this process (and what it starts from now on) at `niceness` at least; the
    niceness it runs at."""
    if not 0 <= niceness <= NICEST:
        raise ValueError(f"a niceness is 0 to {NICEST}, not {niceness}")
    current = os.getpriority(os.PRIO_PROCESS, 0)
    held = max(niceness, current)  # as low already (`nice openase runner`): never raised
    if niceness > current:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
        log.info("runner_niceness", niceness=niceness)
    if held > 0:
        nice_own_autogroup(held)
    return held


def nice_own_autogroup(niceness: int) -> bool:
    """Give this process's session (its autogroup) `niceness`, when it leads the session
    (as `up` and service managers start it); whether it was set. A runner started in a
    terminal shares the terminal's session, which is the user's, not the runner's, to slow."""
    if os.getsid(0) != os.getpid():
        return False
    give_up = time.monotonic() + AUTOGROUP_TRIES_FOR
    while True:
        try:
            descriptor = os.open(AUTOGROUP, os.O_WRONLY)
        except FileNotFoundError:
            return False  # a kernel without autogroups: the niceness is all there is
        except OSError as error:
            log.warning("runner_autogroup_not_niced", error=os.strerror(error.errno or 0))
            return False
        try:
            os.write(descriptor, str(niceness).encode())
        except OSError as error:
            if error.errno == errno.EAGAIN and time.monotonic() < give_up:
                time.sleep(AUTOGROUP_RETRY_SECONDS)
                continue
            log.warning("runner_autogroup_not_niced", error=os.strerror(error.errno or 0))
            return False
        finally:
            os.close(descriptor)
        log.info("runner_autogroup_niceness", niceness=niceness)
        return True


def child_group() -> ChildGroup:
    """How the runner starts a child (agent, hook, git): in a process group of its own, so
    that stopping it reaches everything it spawned. The group stays in the runner's
    session, and so in its autogroup and niceness (see the module's docstring), unless
    the runner has a controlling terminal: a child in the terminal's session could type
    into it (TIOCSTI), so it then gets a session of its own, without the terminal."""
    if _has_controlling_terminal():
        return ChildGroup(start_new_session=True, process_group=None)
    return ChildGroup(start_new_session=False, process_group=0)


@functools.cache
def _has_controlling_terminal() -> bool:
    # Once: a process without a terminal never gains one unless it opens one to that end.
    try:
        descriptor = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    os.close(descriptor)
    return True
