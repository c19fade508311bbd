"""What PostgreSQL's busy backends are doing, sampled while a benchmark runs.

    .venv/bin/python -m bench.pg_activity                      # the newest benchmark's server
    .venv/bin/python -m bench.pg_activity --dsn postgresql://postgres@127.0.0.1:5433/postgres

Reads `pg_stat_activity` every `--every` seconds for `--seconds` (after `--wait`) and prints
how often each statement (its first 80 characters) was seen active, and on what it was
waiting (`wait_event_type: wait_event`, or "running" when it waited on nothing; for a
lock, behind which statements of the backends holding it: `pg_blocking_pids`). A sample
is where the server's time goes, not the count of statements: a statement that waits
shows up in every sample it waits through. This is how the webhook INSERT's waits on the
notification queue's lock (`Lock: object`) were found (README, "Under `openase up`").

Without `--dsn` it samples the newest server of `make bench`, `make bench-engine`, `make
bench-scale` or `make chaos` running once `--wait` is over (from its
/tmp/oa-*/pg/postmaster.pid: a socket or a port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

# With each waiting backend, what the backends holding it up run (pg_blocking_pids): a
# lock wait's cause, not only its kind.
_ACTIVE = r"""
SELECT a.query, a.wait_event_type, a.wait_event,
       (SELECT string_agg(DISTINCT left(regexp_replace(b.query, '\s+', ' ', 'g'), 50), ' | ')
        FROM pg_stat_activity b WHERE b.pid = ANY(pg_blocking_pids(a.pid))) AS blocked_by
FROM pg_stat_activity a
WHERE a.state = 'active' AND a.pid <> pg_backend_pid()
"""


def _newest_server() -> str | None:
    """A DSN for the newest benchmark server under the temporary directory, if any: read
    from its postmaster.pid (line 4 the port, 5 the socket directory, 6 the address it
    listens on, empty for a socket only)."""
    found: list[tuple[float, str]] = []
    for pid_file in glob.glob("/tmp/oa-*/pg/postmaster.pid"):  # noqa: S108  # the benches' own
        with contextlib.suppress(OSError):
            lines = [*Path(pid_file).read_text().splitlines(), "", "", "", "", "", ""]
            port, sockets, address = (line.strip() for line in lines[3:6])
            if not port.isdigit():
                continue
            if address:
                dsn = f"postgresql://postgres@{address.split(',')[0]}:{port}/postgres"
            elif sockets:
                dsn = f"postgresql://postgres@/postgres?host={sockets}&port={port}"
            else:
                continue
            found.append((os.path.getmtime(pid_file), dsn))
    return max(found)[1] if found else None


def _without_password(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


# What a server stopping mid-sample raises (the benchmark ended): the samples so far stand.
_SERVER_GONE = (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError, asyncpg.PostgresError)


@dataclass
class Sampled:
    taken: int = 0
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)  # (statement, wait)
    cut_short: str | None = None  # why sampling stopped early: the server went away


async def sample(dsn: str, seconds: float, every: float) -> Sampled:
    """How often each (statement, wait) was seen active, in how many samples."""
    sampled = Sampled()
    conn = await asyncpg.connect(dsn)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                rows = await conn.fetch(_ACTIVE)
            except _SERVER_GONE as error:
                if not sampled.taken:
                    raise
                sampled.cut_short = f"{type(error).__name__}: {error}"
                return sampled
            for row in rows:
                query = " ".join(str(row["query"]).split())[:80]
                wait = (
                    f"{row['wait_event_type']}: {row['wait_event']}"
                    if row["wait_event_type"]
                    else "running"
                )
                if row["blocked_by"]:
                    wait += f" behind [{row['blocked_by']}]"
                sampled.seen[(query, wait)] += 1
            sampled.taken += 1
            await asyncio.sleep(every)
    finally:
        conn.terminate()  # no goodbye a stopped server could not answer
    return sampled


async def _main(args: argparse.Namespace) -> int:
    await asyncio.sleep(args.wait)  # the load builds up; the newest server is the one then
    dsn = args.dsn or _newest_server()
    if dsn is None:
        print("no benchmark PostgreSQL found; start one, or pass --dsn", file=sys.stderr)
        return 1
    try:
        sampled = await sample(dsn, args.seconds, args.every)
    except _SERVER_GONE as error:
        print(f"cannot sample {_without_password(dsn)}: {error}", file=sys.stderr)
        return 1
    # The report names the server, never a password a given --dsn may carry.
    print(f"{sampled.taken} samples of {_without_password(dsn)} over {args.seconds:g} s")
    if sampled.cut_short:
        print(f"(cut short: the server went away: {sampled.cut_short})")
    for (query, wait), count in sampled.seen.most_common(args.top):
        print(f"{count:6d}  {query}\n        {wait}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dsn", help="the server (default: the newest benchmark's)")
    parser.add_argument("--wait", type=float, default=12, help="seconds before sampling")
    parser.add_argument("--seconds", type=float, default=10, help="how long to sample")
    parser.add_argument("--every", type=float, default=0.005, help="seconds between samples")
    parser.add_argument("--top", type=int, default=20, help="lines to print")
    return asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
