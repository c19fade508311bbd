"""Where the machine's CPU went: each process's user + system time from /proc, counted for
the cluster process whose session it is in, else the one it descends from (a runner's
git, hooks and agents are its own, PostgreSQL's backends are PostgreSQL's), for one phase
of the bench.

A process's time includes its children that ended and were reaped (cutime, cstime), so a
git process of a few milliseconds, gone between two readings, is still counted: in the
runner that waited for it. A process whose parent ended first is reaped by init, and its
time counts as init's: bubblewrap's sandbox process outlives, by a moment, the bwrap
process the runner started, so a run's sandbox (its agent or hook, inner.py, the
forwarder) ends up there unless it is read while still alive (then the runner's session
claims it). Those are reported apart, as "orphans".
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from bench.scale.cluster import Cluster

_TICKS = os.sysconf("SC_CLK_TCK")


class _Stat(NamedTuple):
    parent: int
    session: int
    own: float  # seconds of CPU of the process itself
    reaped: float  # ... of its children that ended and that it waited for


def _stat(pid: str) -> _Stat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # ended while we looked
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    parent, session = int(fields[1]), int(fields[3])
    return _Stat(parent, session, (utime + stime) / _TICKS, (cutime + cstime) / _TICKS)


def roles(here: Cluster) -> dict[int, str]:
    """The cluster's own processes: pid -> what it is counted as. Each leads a session of
    its own, so its pid is also its session's id."""
    found: dict[int, str] = {p.popen.pid: p.role for p in here.processes.values()}
    for pid, role in ((here.postgres.pid, "postgres"), (here.redis.pid, "redis")):
        if pid is not None:
            found[pid] = role
    found[os.getpid()] = "bench"  # the load, the fake GitHub and its git, the sampler
    return found


def cpu_seconds(here: Cluster) -> dict[str, float]:
    """CPU seconds used so far by each role, with all its descendants."""
    known = roles(here)
    stats: dict[int, _Stat] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(entry)) is not None:
            stats[int(entry)] = stat
    used: defaultdict[str, float] = defaultdict(float)
    for pid, stat in stats.items():
        if pid == 1:
            used["other"] += stat.own
            used["orphans"] += stat.reaped
            continue
        used[known.get(stat.session) or _role_of(pid, known, stats)] += stat.own + stat.reaped
    return dict(used)


def _role_of(pid: int, known: dict[int, str], stats: dict[int, _Stat]) -> str:
    """The role of the nearest of `pid` and its ancestors that is a cluster process."""
    while pid > 1:
        if pid in known:
            return known[pid]
        pid = stats[pid].parent if pid in stats else 0
    return "other"


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What each role used between two readings (a role that appeared: all of it)."""
    return {role: seconds - before.get(role, 0.0) for role, seconds in after.items()}
