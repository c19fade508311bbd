"""Watching the running system once a second, from the outside:

- resident memory (VmRSS in /proc/PID/status) of each product process: its own, not its
  agents' (children are processes of their own);
- the fake GitHub's request log: each new request stamped with the second it was seen;
- every other second, how far the persisted run events (PostgreSQL's `run_events`) are
  behind what the runners produced (their Redis streams `openase:run:<id>:events`): per
  open run, the produced events not yet persisted, and how long the oldest of them has
  waited in its stream: the time in the stream id of the first entry past the run's
  cursor (`run_event_cursors`, moved in the transaction that stores the events). Before,
  it was the age of the newest persisted event, which counted a run's silence as lag: a
  gate running for seconds after the agent's last line, then one event, read as seconds
  behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field

import asyncpg
from redis.asyncio import Redis

from bench.scale.cluster import Cluster
from bot.engine.runs.events import stream_start
from runner.contract import run_events_stream
from tests.fakes.github_api import ARRIVED

CONTENT_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@dataclass(frozen=True)
class Request:
    at: float  # epoch seconds, when it reached the fake GitHub
    method: str
    path: str
    installation: int | None
    content: bool  # content-creating, as GitHub's secondary limits count them


@dataclass(frozen=True)
class Lag:
    at: float
    open_runs: int
    backlog: int  # events produced, not yet persisted, over all open runs
    oldest: float  # seconds: the oldest such event's age (0 when none)


@dataclass
class Samples:
    phase: str = "start"
    rss: dict[tuple[str, str], int] = field(default_factory=dict)  # (phase, process) -> peak kB
    requests: list[Request] = field(default_factory=list)
    lags: list[tuple[str, Lag]] = field(default_factory=list)


def _rss_kb(pid: int) -> int | None:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def _content(method: str, path: str, body: bytes) -> bool:
    if method not in CONTENT_METHODS:
        return False
    if path.endswith("/access_tokens"):
        return False  # minting a token creates nothing on GitHub
    if path.endswith("/graphql"):
        with contextlib.suppress(ValueError):
            return str(json.loads(body).get("query", "")).lstrip().startswith("mutation")
        return False
    return True


class Sampler:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.samples = Samples()
        self._seen = 0
        self._tick = 0

    def _sample_processes(self) -> None:
        phase = self.samples.phase
        for process in list(self.cluster.processes.values()):
            kb = _rss_kb(process.pid)
            if kb is not None:
                key = (phase, process.name)
                self.samples.rss[key] = max(kb, self.samples.rss.get(key, 0))

    def _sample_requests(self) -> None:
        fake = self.cluster.github.fake
        for request in fake.requests[self._seen :]:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            owner = fake.tokens.get(token) if scheme.lower() in ("token", "bearer") else None
            path = request.url.path
            self.samples.requests.append(
                Request(
                    request.extensions[ARRIVED],
                    request.method,
                    path,
                    owner[0] if owner else None,
                    _content(request.method, path, request.content),
                )
            )
        self._seen = len(fake.requests)

    async def _sample_lag(self, db: asyncpg.Connection, redis: Redis) -> None:
        open_runs = [
            r[0] for r in await db.fetch("select id from runs where state in ('queued', 'running')")
        ]
        persisted = {
            r[0]: r[1]
            for r in await db.fetch(
                "select run_id, max(seq) from run_events where run_id = any($1) group by run_id",
                open_runs,
            )
        }
        cursors = {
            r[0]: r[1]
            for r in await db.fetch(
                "select run_id, entry_id from run_event_cursors where run_id = any($1)", open_runs
            )
        }
        async with redis.pipeline(transaction=False) as pipe:
            for run_id in open_runs:
                pipe.xrevrange(run_events_stream(run_id), count=1)
                pipe.xrange(
                    run_events_stream(run_id), min=stream_start(cursors.get(run_id)), count=1
                )
            answers = await pipe.execute()
        now_ms = time.time() * 1000
        backlog, oldest = 0, 0.0
        for index, run_id in enumerate(open_runs):
            last, first_unread = answers[2 * index], answers[2 * index + 1]
            if not last:
                continue
            produced = int(json.loads(last[0][1][b"event"])["seq"])
            backlog += max(0, produced - persisted.get(run_id, 0))
            if first_unread:  # its id: the Redis server's milliseconds when it was added
                added_ms = int(first_unread[0][0].split(b"-")[0])
                oldest = max(oldest, (now_ms - added_ms) / 1000)
        self.samples.lags.append(
            (self.samples.phase, Lag(time.time(), len(open_runs), backlog, oldest))
        )

    async def run(self, stop: asyncio.Event) -> None:
        db = await asyncpg.connect(self.cluster.postgres.url)
        redis = Redis.from_url(self.cluster.redis.url)
        try:
            while not stop.is_set():
                began = time.monotonic()
                self._sample_processes()
                self._sample_requests()
                self._tick += 1
                if self._tick % 2 == 0 and self.samples.phase != "seed":
                    with contextlib.suppress(OSError, asyncpg.PostgresError, ValueError):
                        await self._sample_lag(db, redis)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.05, 1 - (time.monotonic() - began)))
            self._sample_requests()
        finally:
            await redis.aclose()
            await db.close()
