"""What PostgreSQL's busy backends are doing, sampled while a benchmark runs.

    .venv/bin/python -m bench.pg_activity                      # the newest benchmark's server
    .venv/bin/python -m bench.pg_activity --dsn postgresql://postgres@127.0.0.1:5433/postgres

Reads `pg_stat_activity` every `--every` seconds for `--seconds` (after `--wait`) and prints
how often each statement (its first 80 characters) was seen active, and on what it was
waiting (`wait_event_type: wait_event`, or "running" when it waited on nothing). A sample
is where the server's time goes, not the count of statements: a statement that waits
shows up in every sample it waits through. This is how the webhook INSERT's waits on the
notification queue's lock (`Lock: object`) were found (README, "Under `openase up`").

Without `--dsn` it finds the newest embedded server of `make bench`/`make bench-engine`
(a socket in /tmp/oa-bench-*/pg) or of `make bench-scale`/`make chaos` (its port in
/tmp/oa-scale-*/pg or /tmp/oa-chaos-*/pg/postmaster.pid), waiting up to `--wait` for one.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import time
from collections import Counter
from pathlib import Path

import asyncpg

_ACTIVE = """
SELECT query, wait_event_type, wait_event FROM pg_stat_activity
WHERE state = 'active' AND pid <> pg_backend_pid()
"""


def _newest_server() -> str | None:
    """A DSN for the newest benchmark server under the temporary directory, if any."""
    found: list[tuple[float, str]] = []
    for sock in glob.glob("/tmp/oa-bench-*/pg/.s.PGSQL.*"):  # noqa: S108  # the benches' own
        found.append(
            (os.path.getmtime(sock), f"postgresql://postgres@/postgres?host={Path(sock).parent}")
        )
    for pid_file in glob.glob("/tmp/oa-*-*/pg/postmaster.pid"):  # noqa: S108
        lines = Path(pid_file).read_text().splitlines()
        if len(lines) > 3 and lines[3].strip().isdigit():
            dsn = f"postgresql://postgres@127.0.0.1:{lines[3].strip()}/postgres"
            found.append((os.path.getmtime(pid_file), dsn))
    return max(found)[1] if found else None


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
        print("no benchmark PostgreSQL found; start one, or pass --dsn")
        return 1
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))  # let the load build up
    taken, seen = await sample(dsn, args.seconds, args.every)
    print(f"{taken} samples of {dsn} over {args.seconds:g} s")
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
