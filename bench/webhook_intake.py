"""Benchmark: webhook intake throughput, ack latency, and time until everything is ingested.

    make bench                       # defaults: 20,000 deliveries, 16 connections
    make bench BENCH_ARGS="--deliveries 5000 --connections 32 --worker-after"
    make bench BENCH_ARGS="--up"     # `openase up` instead of `serve` + `worker`

Starts real PostgreSQL and Redis (embedded, or OPENASE_BENCH_DATABASE_URL /
OPENASE_BENCH_REDIS_URL — the database must be a throwaway one), `openase serve` and
`openase worker` as separate processes (or, with --up, `openase up` on those servers: its
web app, control worker and runner, ingesting while it accepts), then sends signed `issues`
deliveries over keep-alive HTTP/1.1 connections from this process and prints:
  accepted/s, ack latency p50/p90/p99/max beside issue 18's targets, seconds until all are
  ingested, and a check that every delivery was stored exactly once and ingested into its
  own ticket.
Unless --no-probot, the deliveries go in rounds (--rounds, default 3), each also sent to a
minimal Probot app (bench/probot_rival.py; needs node and npm, else skipped), ours first
and probot first in turn, our ingest drained before probot's turn; it prints both rates
per round and overall, and ours as a ratio of probot's (issue 18: >= 0.3x).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from adapters.github.verify import sign
from bench import probot_rival
from bench.probot_rival import WEBHOOK_PATH
from bench.services import bench_services

FIXTURE = Path(__file__).parent.parent / "tests/fixtures/github/webhooks/issues.json"
SECRET = "bench-webhook-secret"
# Issue 18, target 1: intake while the worker ingests (not weakened where unmet).
TARGET_ACCEPTED_PER_SECOND = 1_500
TARGET_P99_MS = 25.0
# Issue 18, target 2: ingest alone (--worker-after), end to end.
TARGET_INGESTED_PER_SECOND = 1_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _bodies(count: int) -> list[tuple[bytes, str]]:
    """Distinct issues, each with the signature GitHub would send."""
    template: dict[str, Any] = next(
        e for e in json.loads(FIXTURE.read_text()) if e["action"] == "opened"
    )
    out = []
    for i in range(count):
        template["issue"]["id"] = 10_000_000 + i
        template["issue"]["number"] = i + 1
        template["issue"]["title"] = f"Bench issue {i}"
        body = json.dumps(template).encode()
        out.append((body, sign(SECRET.encode(), body)))
    return out


def _requests(bodies: list[tuple[bytes, str]], port: int, path: str) -> list[bytes]:
    """Pre-built raw HTTP requests of `bodies`, each with a fresh delivery id."""
    out = []
    for body, signature in bodies:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nUser-Agent: GitHub-Hookshot/bench\r\n"
            f"X-GitHub-Event: issues\r\nX-GitHub-Delivery: {uuid.uuid4()}\r\n"
            f"X-Hub-Signature-256: {signature}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


async def _read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def _connection(
    port: int, queue: list[bytes], latencies: list[float], statuses: dict[int, int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while queue:
            request = queue.pop()
            started = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _wait_http(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            if await _read_response(reader) == 200:
                writer.close()
                return
            writer.close()
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("openase serve did not become healthy")


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


async def _send(
    port: int, requests: list[bytes], connections: int
) -> tuple[float, list[float], dict[int, int]]:
    """Send `requests` over `connections` keep-alive connections: seconds, latencies, statuses."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    await asyncio.gather(
        *(_connection(port, requests, latencies, statuses) for _ in range(connections))
    )
    return time.perf_counter() - started, latencies, statuses


async def _drain(conn: asyncpg.Connection, deadline: float) -> None:
    """Wait until no delivery is pending (or the deadline passes)."""
    pending = "select count(*) from deliveries where status='pending'"
    while time.perf_counter() < deadline:
        if not await conn.fetchval(pending):
            return
        await asyncio.sleep(0.05)


async def _turn(
    port: int,
    requests: list[bytes],
    connections: int,
    statuses: dict[int, int],
    latencies: list[float],
) -> probot_rival.Round:
    """One server's turn in a round; its statuses and latencies are added to the totals."""
    count, started = len(requests), time.perf_counter()
    seconds, got_latencies, got = await _send(port, requests, connections)
    for status, times in got.items():
        statuses[status] = statuses.get(status, 0) + times
    latencies += got_latencies
    p99 = _pct([x * 1000 for x in got_latencies], 0.99)
    return probot_rival.Round(count, seconds, p99, started)


async def run(args: argparse.Namespace, database_url: str, redis_url: str) -> int:
    port = _free_port()
    env = {
        **os.environ,
        "OPENASE_DATABASE_URL": database_url,
        "OPENASE_REDIS_URL": redis_url,
        "OPENASE_GITHUB_WEBHOOK_SECRET": SECRET,
        "OPENASE_PORT": str(port),
        "OPENASE_HOST": "127.0.0.1",
    }
    cli = [sys.executable, "-m", "bot.processes.cli"]
    n = args.deliveries
    rounds = args.rounds or min(n, 1 if args.no_probot else 3)
    # Round r sends deliveries offsets[r]:offsets[r + 1]; the same bodies go to probot.
    offsets = [n * r // rounds for r in range(rounds + 1)]
    bodies = _bodies(n)
    log = open(args.log, "w")  # noqa: SIM115, ASYNC230  # lives as long as the subprocesses
    data_dir = tempfile.mkdtemp(prefix="oa-bench-up-")
    if args.up:  # its runner's workspaces and lock live in the data dir; nothing embedded
        env["OPENASE_DATA_DIR"] = data_dir
    serve = subprocess.Popen([*cli, "up" if args.up else "serve"], env=env, stdout=log, stderr=log)
    worker = None
    alone: IngestAlone | None = None
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    ours: list[probot_rival.Round] = []
    theirs: list[probot_rival.Round] = []
    their_statuses: dict[int, int] = {}
    ingest_seconds = 0.0  # each of our rounds from its first send until none is pending
    try:
        with contextlib.ExitStack() as rival:
            probot_port = None
            if not args.no_probot:
                probot_port = await probot_rival.start(
                    rival, _free_port(), SECRET, log, bodies[0][0]
                )
            await _wait_http(port, time.monotonic() + 60)
            if not args.worker_after and not args.up:
                worker = subprocess.Popen([*cli, "worker"], env=env, stdout=log, stderr=log)
            # Every request is built before the first round; the same bodies go to both.
            mine = _requests(bodies, port, "/webhooks/github")
            our_rounds = [mine[offsets[r] : offsets[r + 1]] for r in range(rounds)]
            their_rounds = [
                _requests(bodies[offsets[r] : offsets[r + 1]], probot_port, WEBHOOK_PATH)
                for r in range(rounds)
                if probot_port is not None
            ]
            against = " alternating with probot's" if probot_port is not None else ""
            print(
                f"sending {n} signed issues deliveries over {args.connections} connections"
                f" in {rounds} round(s){against}"
            )
            conn = await asyncpg.connect(database_url)
            try:
                for r in range(rounds):
                    # Ours first in rounds 1, 3, ...; probot first in rounds 2, 4, ...
                    for side in ("ours", "probot") if r % 2 == 0 else ("probot", "ours"):
                        if side == "ours":
                            turn = await _turn(
                                port, our_rounds[r], args.connections, statuses, latencies
                            )
                            ours.append(turn)
                            # Drained before whatever comes next, so our ingesting takes no
                            # CPU from probot's turn; the rates count sending time only.
                            if worker is not None or args.up:
                                await _drain(conn, turn.started + args.ingest_timeout)
                            ingest_seconds += time.perf_counter() - turn.started
                        elif probot_port is not None:
                            turn = await _turn(
                                probot_port, their_rounds[r], args.connections, their_statuses, []
                            )
                            theirs.append(turn)
                if worker is None and not args.up:
                    started = time.perf_counter()
                    worker = subprocess.Popen([*cli, "worker"], env=env, stdout=log, stderr=log)
                    alone = await _ingest_alone(conn, worker.pid, started + args.ingest_timeout)
                    ingest_seconds += time.perf_counter() - started
                stored = await conn.fetchval("select count(*) from deliveries")
                distinct = await conn.fetchval("select count(distinct delivery_id) from deliveries")
                done = await conn.fetchval("select count(*) from deliveries where status='done'")
                tickets = await conn.fetchval("select count(*) from tickets")
                links = await conn.fetchval("select count(*) from delivery_tickets")
            finally:
                await conn.close()
    finally:
        for proc in (worker, serve):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)

    elapsed = sum(r.seconds for r in ours)
    ms = [x * 1000 for x in latencies]
    print(f"accepted:        {statuses.get(202, 0)} of {n} (statuses {statuses})")
    rate, p99 = n / elapsed, _pct(ms, 0.99)
    rate_met = _met(rate >= TARGET_ACCEPTED_PER_SECOND)
    print(
        f"accept rate:     {rate:,.0f} deliveries/s over {elapsed:.2f} s of sending"
        f"   (target >= {TARGET_ACCEPTED_PER_SECOND:,}/s: {rate_met})"
    )
    print(
        f"ack latency ms:  p50 {_pct(ms, 0.5):.1f}  p90 {_pct(ms, 0.9):.1f}  "
        f"p99 {p99:.1f}  max {max(ms):.1f}"
        f"   (target p99 <= {TARGET_P99_MS:.0f} ms: {_met(p99 <= TARGET_P99_MS)})"
    )
    print(
        f"all ingested:    {ingest_seconds:.2f} s from first send to none pending, over our"
        f" {rounds} round(s) ({n / ingest_seconds:,.0f} deliveries/s end to end)"
    )
    if alone is not None:
        alone.report()
    print(f"stored {stored}, distinct {distinct}, done {done}, tickets {tickets}, links {links}")
    ok = statuses.get(202, 0) == n and stored == distinct == done == tickets == links == n
    print("no delivery lost or duplicated" if ok else "MISMATCH: deliveries lost or duplicated")
    if theirs:
        answered = sum(c for s, c in their_statuses.items() if 200 <= s < 300)
        print(f"probot answered: {answered} of {n} with 2xx (statuses {their_statuses})")
        probot_rival.report(ours, theirs)
    return 0 if ok else 1


@dataclass(frozen=True)
class IngestAlone:
    """Ingest with nothing else sending (--worker-after): issue 18's target 2."""

    deliveries: int
    seconds: float
    worker_cpu: float  # seconds of the worker process's CPU meanwhile
    postgres_cpu: float  # seconds of the embedded PostgreSQL's processes' CPU meanwhile

    def report(self) -> None:
        rate = self.deliveries / self.seconds
        print(
            f"ingest alone:    {self.deliveries} deliveries in {self.seconds:.2f} s: "
            f"{rate:,.0f}/s   (target >= {TARGET_INGESTED_PER_SECOND:,}/s: "
            f"{_met(rate >= TARGET_INGESTED_PER_SECOND)}; was 294-334/s on this machine at de710b4)"
        )
        print(
            f"  CPU per delivery: worker {1000 * self.worker_cpu / self.deliveries:.2f} ms, "
            f"PostgreSQL {1000 * self.postgres_cpu / self.deliveries:.2f} ms "
            f"(what bounds the rate on {os.cpu_count()} cores, whatever else runs)"
        )


async def _ingest_alone(conn: asyncpg.Connection, worker_pid: int, deadline: float) -> IngestAlone:
    """Time ingest from the worker's first batch (its start-up excluded) to none pending."""
    pending_sql = "select count(*) from deliveries where status='pending'"
    initial = await conn.fetchval(pending_sql)
    postmaster = await _postmaster(conn)
    began: tuple[float, int, float, float] | None = None
    pending = initial
    while pending and time.perf_counter() < deadline:
        await asyncio.sleep(0.02)
        pending = await conn.fetchval(pending_sql)
        if began is None and pending < initial:
            began = (time.perf_counter(), pending, _cpu(worker_pid), _postgres_cpu(postmaster))
    if began is None:
        raise SystemExit("the worker ingested nothing before the deadline")
    at, left, worker_cpu, postgres_cpu = began
    return IngestAlone(
        deliveries=left - pending,
        seconds=time.perf_counter() - at,
        worker_cpu=_cpu(worker_pid) - worker_cpu,
        postgres_cpu=_postgres_cpu(postmaster) - postgres_cpu,
    )


_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> list[str]:
    """/proc/PID/stat's fields after the command name (Linux); [] once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()
    except OSError:
        return []


def _cpu(pid: int | str) -> float:
    """CPU seconds (user + system) the process has used so far."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS if fields else 0.0


async def _postmaster(conn: asyncpg.Connection) -> str:
    """The PostgreSQL server's process id, from its data directory's postmaster.pid."""
    data = await conn.fetchval("select setting from pg_settings where name = 'data_directory'")
    return Path(data, "postmaster.pid").read_text().split()[0]  # noqa: ASYNC240  # a few bytes


def _postgres_cpu(postmaster: str) -> float:
    """CPU seconds the server has used so far: its postmaster, the backends it reaped (in its
    children's times) and the ones alive."""
    fields = _stat(postmaster)
    if not fields:
        return 0.0
    total = sum(int(field) for field in fields[11:15]) / _TICKS
    for pid in filter(str.isdigit, os.listdir("/proc")):
        child = _stat(pid)
        if child and child[1] == postmaster:
            total += _cpu(pid)
    return total


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--ingest-timeout",
        type=float,
        default=600,
        help="seconds each of our rounds may take from its first send until none is pending",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="split the deliveries into this many rounds (default 3, or 1 with --no-probot)",
    )
    parser.add_argument(
        "--no-probot",
        action="store_true",
        help="skip the rounds against a minimal Probot app (bench/probot/)",
    )
    parser.add_argument(
        "--worker-after", action="store_true", help="start the worker only after all are accepted"
    )
    parser.add_argument(
        "--up",
        action="store_true",
        help="run `openase up` (web app, control worker and runner) instead of serve + worker",
    )
    parser.add_argument("--log", default=os.path.join(tempfile.gettempdir(), "openase-bench.log"))
    args = parser.parse_args()
    if args.rounds is not None and not 1 <= args.rounds <= args.deliveries:
        parser.error("--rounds must be between 1 and --deliveries")
    with bench_services() as services:
        return asyncio.run(run(args, services.database_url, services.redis_url))


if __name__ == "__main__":
    sys.exit(main())
