"""What PostgreSQL's busy backends are doing, sampled while a benchmark runs.

    .venv/bin/python -m bench.pg_activity                      # the newest benchmark's server
    .venv/bin/python -m bench.pg_activity --dsn postgresql://postgres@127.0.0.1:5433/postgres

Reads `pg_stat_activity` every `--every` seconds for `--seconds` (after `--wait`) and prints
how often each statement (its first 80 characters) was seen active, and on what it was
waiting (`wait_event_type: wait_event`, or "running" when it waited on nothing). A sample
is where the server's time goes, not the count of statements: a statement that waits
shows up in every sample it waits through. This is how the webhook INSERT's waits on the
notification queue's lock (`Lock: object`) were found (README, "Under `openase up`").

Without `--dsn` it finds the newest server of `make bench`, `make bench-engine`, `make
bench-scale` or `make chaos` (from its /tmp/oa-*/pg/postmaster.pid: a socket or a port),
waiting up to `--wait` for one.
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
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

_ACTIVE = """
SELECT query, wait_event_type, wait_event FROM pg_stat_activity
WHERE state = 'active' AND pid <> pg_backend_pid()
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


async def sample(dsn: str, seconds: float, every: float) -> tuple[int, Counter[tuple[str, str]]]:
    """(samples taken, how often each (statement, wait) was seen active)."""
    seen: Counter[tuple[str, str]] = Counter()
    taken = 0
    conn = await asyncpg.connect(dsn)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for row in await conn.fetch(_ACTIVE):
                query = " ".join(str(row["query"]).split())[:80]
                wait = (
                    f"{row['wait_event_type']}: {row['wait_event']}"
                    if row["wait_event_type"]
                    else "running"
                )
                seen[(query, wait)] += 1
            taken += 1
            await asyncio.sleep(every)
    finally:
        await conn.close()
    return taken, seen


async def _main(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.wait
    dsn = args.dsn or _newest_server()
    while dsn is None and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        dsn = _newest_server()
    if dsn is None:
        print("no benchmark PostgreSQL found; start one, or pass --dsn", file=sys.stderr)
        return 1
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))  # let the load build up
    try:
        taken, seen = await sample(dsn, args.seconds, args.every)
    except (OSError, asyncpg.PostgresError) as error:
        print(f"cannot sample {_without_password(dsn)}: {error}", file=sys.stderr)
        return 1
    # The report names the server, never a password a given --dsn may carry.
    print(f"{taken} samples of {_without_password(dsn)} over {args.seconds:g} s")
    for (query, wait), count in seen.most_common(args.top):
        print(f"{count:6d}  {wait:<24}  {query}")
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
