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
"""

from __future__ import annotations

import argparse
import asyncio
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
from pathlib import Path
from typing import Any

import asyncpg

from adapters.github.verify import sign
from bench.services import bench_services

FIXTURE = Path(__file__).parent.parent / "tests/fixtures/github/webhooks/issues.json"
SECRET = "bench-webhook-secret"
# Issue 18, target 1: intake while the worker ingests (not weakened where unmet).
TARGET_ACCEPTED_PER_SECOND = 1_500
TARGET_P99_MS = 25.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _requests(count: int, port: int) -> list[bytes]:
    """Pre-built raw HTTP requests: distinct delivery ids and issues, signed like GitHub."""
    template: dict[str, Any] = next(
        e for e in json.loads(FIXTURE.read_text()) if e["action"] == "opened"
    )
    out = []
    for i in range(count):
        template["issue"]["id"] = 10_000_000 + i
        template["issue"]["number"] = i + 1
        template["issue"]["title"] = f"Bench issue {i}"
        body = json.dumps(template).encode()
        head = (
            f"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nUser-Agent: GitHub-Hookshot/bench\r\n"
            f"X-GitHub-Event: issues\r\nX-GitHub-Delivery: {uuid.uuid4()}\r\n"
            f"X-Hub-Signature-256: {sign(SECRET.encode(), body)}\r\n"
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
    log = open(args.log, "w")  # noqa: SIM115, ASYNC230  # lives as long as the subprocesses
    data_dir = tempfile.mkdtemp(prefix="oa-bench-up-")
    if args.up:  # its runner's workspaces and lock live in the data dir; nothing embedded
        env["OPENASE_DATA_DIR"] = data_dir
    serve = subprocess.Popen([*cli, "up" if args.up else "serve"], env=env, stdout=log, stderr=log)
    worker = None
    try:
        await _wait_http(port, time.monotonic() + 60)
        if not args.worker_after and not args.up:
            worker = subprocess.Popen([*cli, "worker"], env=env, stdout=log, stderr=log)
        requests = _requests(args.deliveries, port)
        print(
            f"sending {len(requests)} signed issues deliveries over {args.connections} connections"
        )
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        started = time.perf_counter()
        await asyncio.gather(
            *(_connection(port, requests, latencies, statuses) for _ in range(args.connections))
        )
        elapsed = time.perf_counter() - started
        if worker is None and not args.up:
            worker = subprocess.Popen([*cli, "worker"], env=env, stdout=log, stderr=log)
        conn = await asyncpg.connect(database_url)
        try:
            while True:
                pending = await conn.fetchval(
                    "select count(*) from deliveries where status='pending'"
                )
                if pending == 0 or time.perf_counter() - started > args.ingest_timeout:
                    break
                await asyncio.sleep(0.05)
            ingested_after = time.perf_counter() - started
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

    n = args.deliveries
    ms = [x * 1000 for x in latencies]
    print(f"accepted:        {statuses.get(202, 0)} of {n} (statuses {statuses})")
    rate, p99 = n / elapsed, _pct(ms, 0.99)
    rate_met = _met(rate >= TARGET_ACCEPTED_PER_SECOND)
    print(
        f"accept rate:     {rate:,.0f} deliveries/s over {elapsed:.2f} s"
        f"   (target >= {TARGET_ACCEPTED_PER_SECOND:,}/s: {rate_met})"
    )
    print(
        f"ack latency ms:  p50 {_pct(ms, 0.5):.1f}  p90 {_pct(ms, 0.9):.1f}  "
        f"p99 {p99:.1f}  max {max(ms):.1f}"
        f"   (target p99 <= {TARGET_P99_MS:.0f} ms: {_met(p99 <= TARGET_P99_MS)})"
    )
    print(
        f"all ingested:    {ingested_after:.2f} s after the first send "
        f"({n / ingested_after:,.0f} deliveries/s end to end)"
    )
    print(f"stored {stored}, distinct {distinct}, done {done}, tickets {tickets}, links {links}")
    ok = statuses.get(202, 0) == n and stored == distinct == done == tickets == links == n
    print("no delivery lost or duplicated" if ok else "MISMATCH: deliveries lost or duplicated")
    return 0 if ok else 1


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--ingest-timeout", type=float, default=600)
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
    with bench_services() as services:
        return asyncio.run(run(args, services.database_url, services.redis_url))


if __name__ == "__main__":
    sys.exit(main())
