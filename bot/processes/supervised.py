"""The child's side of `openase up`'s supervision (bot/processes/supervisor.py).

`up` starts its web app, control worker and runner as `openase serve|worker|runner`
processes and tells them so through the environment: the supervisor's pid, the name
their log lines carry, and for the web app the listening socket it inherited. Secrets and
URLs come the same way (OPENASE_DATABASE_URL, ...), never on a command line `ps` shows.

A child must not outlive its supervisor, even one killed with SIGKILL, which runs no code
of its own: the kernel sends the child SIGTERM when the supervisor dies (Linux's
PR_SET_PDEATHSIG), so it stops as gracefully as on `up`'s own stop. That was chosen over a
pipe each child watches because it needs no code in the child's event loops (a worker, a
web app and a runner would each watch), and works while a child is busy or stuck at
start-up. Elsewhere than Linux there is no such call: a child there outlives a killed `up`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys

SUPERVISOR_PID = "OPENASE_SUPERVISOR_PID"
PROCESS_NAME = "OPENASE_PROCESS_NAME"
LISTEN_FD = "OPENASE_LISTEN_FD"

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def process_name() -> str | None:
    """The name `up` gave this process for its log lines (None when not started by `up`)."""
    return os.environ.get(PROCESS_NAME) or None


def die_with_supervisor() -> None:
    """When `up` started this process: be sent SIGTERM when it dies, and stop at once if it
    died already (between its fork and this call)."""
    supervisor = os.environ.pop(SUPERVISOR_PID, None)  # not for what this process starts
    if not supervisor:
        return
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if str(os.getppid()) != supervisor:
        raise SystemExit(0)  # orphaned before the kernel could be told: nothing to stop


def inherited_socket() -> socket.socket | None:
    """The listening socket `up` bound and passed down, or None."""
    fd = os.environ.pop(LISTEN_FD, None)
    if not fd:
        return None
    return socket.socket(fileno=int(fd))
