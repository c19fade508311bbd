"""The system at scale on loopback: PostgreSQL and Redis of its own, `openase serve` on a
port each, `openase worker`s and `openase runner`s as real processes, and the recording
fake GitHub API over HTTP with one repository whose remote is a local bare git repository.

Unlike bench/chaos/cluster.py (which it borrows from) nothing stands between the processes
and Redis, and the number of each kind of process is the benchmark's to choose.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
from redis.asyncio import Redis

from bench.chaos.cluster import APP_ID, CLI, REPO_ROOT, SECRET
from bench.chaos.stores import PostgresServer, RedisServer, free_port
from bot.engine.runs.machines import registered
from bot.settings import Settings
from tests.fakes.github_api import FakeRepo
from tests.fakes.github_graphql import FakeGitHubGraphQL
from tests.fakes.github_http import ServedGitHub, served_github
from tests.support.helpers import test_private_key
from tests.support.lifecycle import FULL_NAME, INSTALLATION, REPO_ID, WRITER, make_remote
from tests.support.lifecycle import repo_config as lifecycle_repo_config

Role = Literal["serve", "worker", "runner"]
# Plenty for the runs a scale run makes (each ticket costs some 13-25 requests); GitHub grants
# an installation of a large organisation up to 15,000 an hour (Enterprise Cloud).
RATE_LIMIT = 50_000
# The outbox's budget of content-creating requests an hour per installation, raised from
# GitHub's 500 (OPENASE_GITHUB_WRITES_PER_HOUR): two batches of 200 tickets make some 2,100
# of them, which 500 an hour would stretch over four hours. The minute's 80 stays, and the
# report still holds the total against 500 an hour.
WRITES_PER_HOUR = 10_000

RUNNER_NICE = Settings.model_fields["runner_nice"].default  # `openase up`'s
# The agent: a line about every half second for SECONDS, then the file the gate wants.
AGENT = textwrap.dedent(
    """\
    import os, pathlib, time
    work = pathlib.Path(os.environ["OPENASE_WORKSPACE"])
    began = time.monotonic()
    line = 0
    while time.monotonic() - began < SECONDS:
        line += 1
        print(f"working, line {line}", flush=True)
        time.sleep(0.5)
    (work / "PASS").write_text("ok\\n")
    print("done", flush=True)
    """
)


@dataclass
class Process:
    name: str  # serve-1, worker-1, runner-r01 ...
    role: Role
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None  # a web process's

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass
class Cluster:
    root: Path
    postgres: PostgresServer
    redis: RedisServer
    github: ServedGitHub
    repo: FakeRepo
    slots: int  # runs at once per runner
    processes: dict[str, Process] = field(default_factory=dict)

    def of(self, role: Role) -> list[Process]:
        return [p for p in self.processes.values() if p.role == role]

    @property
    def web_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p.port}" for p in self.of("serve")]

    def dead(self) -> list[Process]:
        return [p for p in self.processes.values() if p.popen.poll() is not None]

    def _env(self, *, control: bool, port: int | None = None) -> dict[str, str]:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.root / "home"),
            "OPENASE_REDIS_URL": self.redis.url,
        }
        if control:
            env.update(
                OPENASE_DATABASE_URL=self.postgres.url,
                OPENASE_DATA_DIR=str(self.root / "data"),
                OPENASE_HOST="127.0.0.1",
                OPENASE_PORT=str(port or 0),
                OPENASE_CONFIG=str(self.root / "control.yml"),
                OPENASE_GITHUB_APP_ID=str(APP_ID),
                OPENASE_GITHUB_PRIVATE_KEY=test_private_key(),
                OPENASE_GITHUB_WEBHOOK_SECRET=SECRET,
                OPENASE_GITHUB_API_URL=self.github.api_url,
                OPENASE_GITHUB_WRITES_PER_HOUR=str(WRITES_PER_HOUR),
            )
        return env

    def start(self, role: Role) -> Process:
        """Start one more process of `role` (named by its number among its kind)."""
        number = len(self.of(role)) + 1
        port: int | None = None
        if role == "runner":
            name = f"runner-r{number:02d}"
            machine = name.removeprefix("runner-")
            # At `openase up`'s niceness: its runners share the machine with the control
            # plane, as `up`'s does (OPENASE_RUNNER_NICE).
            argv = [
                *CLI, "runner", "--machine", machine, "--max-runs", str(self.slots),
                "--workspace-root", str(self.root / f"ws-{machine}"), "--drain-seconds", "5",
                "--sandbox-read", str(self.root / "agents"), f"--nice={RUNNER_NICE}",
            ]  # fmt: skip
            env = self._env(control=False)
        else:
            name = f"{role}-{number}"
            port = free_port() if role == "serve" else None
            argv = [*CLI, role]
            env = self._env(control=True, port=port)
        log = self.root / "logs" / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its agents and hooks die with it
            )  # fmt: skip
        process = Process(name, role, popen, log, port)
        self.processes[name] = process
        return process

    async def wait_serving(self, process: Process, within: float = 90) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{process.port}") as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz", timeout=2)).status_code < 500:
                        return
                if time.monotonic() > deadline or process.popen.poll() is not None:
                    raise RuntimeError(f"{process.name} did not come up; see {process.log}")
                await asyncio.sleep(0.2)

    async def wait_registered(self, within: float = 120) -> None:
        machines = {p.name.removeprefix("runner-") for p in self.of("runner")}
        deadline = time.monotonic() + within
        redis = Redis.from_url(self.redis.url)
        try:
            while True:
                with contextlib.suppress(OSError, ConnectionError, TimeoutError):
                    now = time.time()
                    if machines <= {m.name for m in await registered(redis) if m.fresh(now)}:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"runners did not register; see {self.root}/logs")
                await asyncio.sleep(0.5)
        finally:
            await redis.aclose()

    async def stop(self) -> None:
        for process in self.processes.values():
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.popen.wait, 30)
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.popen.wait()


def _control_yaml(agent: Path, agent_seconds: float) -> str:
    wall = int(3 * agent_seconds + 300)
    return textwrap.dedent(
        f"""\
        providers:
          script:
            cli: command
            argv: ["{sys.executable}", "{agent}", "{{prompt_file}}"]
            limits: {{wall_seconds: {wall}, stall_seconds: 120}}
        defaults:
          provider: script
        """
    )


def _plain_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OPENASE_")}


async def _migrate(database_url: str) -> None:
    migrate = await asyncio.create_subprocess_exec(
        *CLI, "migrate", cwd=REPO_ROOT, env={**_plain_env(), "OPENASE_DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await migrate.communicate()
    if migrate.returncode != 0:
        raise RuntimeError(f"openase migrate failed:\n{output.decode()}")


@contextlib.asynccontextmanager
async def cluster(
    *, agent_seconds: float, concurrency: int, slots: int, root: Path | None = None
) -> AsyncIterator[Cluster]:
    """Stores, the fake GitHub and the repository ready; no product process started yet."""
    root = root or Path(tempfile.mkdtemp(prefix="oa-scale-"))
    for sub in ("logs", "home", "data"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    postgres = PostgresServer(root / "pg")
    redis = RedisServer(root / "redis")
    try:
        postgres.start()
        redis.start()
        await _migrate(postgres.url)
        agent = root / "agents" / "agent.py"  # in a directory the runners' sandboxes show
        agent.parent.mkdir(exist_ok=True)
        agent.write_text(AGENT.replace("SECONDS", repr(float(agent_seconds))))
        (root / "control.yml").write_text(_control_yaml(agent, agent_seconds))
        config = lifecycle_repo_config(max_attempts=3, repo_concurrency=concurrency)
        remote = make_remote(root, config)
        async with served_github(private_key_pem=test_private_key(), app_id=APP_ID) as github:
            fake = github.fake
            fake.rate_limit = fake.rate_remaining = RATE_LIMIT
            fake.add_installation(INSTALLATION, "octo")
            repo = fake.add_repo(FULL_NAME, REPO_ID, INSTALLATION)
            repo.data.update(clone_url=str(remote), default_branch="main")
            repo.git_dir = remote
            fake.permissions[WRITER] = "write"
            FakeGitHubGraphQL(fake)  # Projects v2 (no boards): the status field has none to set
            here = Cluster(root, postgres, redis, github, repo, slots)
            try:
                yield here
            finally:
                await here.stop()
    finally:
        redis.stop()
        postgres.stop()
