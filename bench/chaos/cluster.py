"""A whole production-mode OpenASE on loopback, every part of it a process that can be killed.

PostgreSQL and Redis of its own (bench/chaos/stores.py); `openase serve`, two `openase
worker`s and two `openase runner`s (machines m1, m2) as subprocesses; the recording fake
GitHub API over real HTTP (tests/fakes/github_http.py) with one repository whose remote is
a local bare git repository; a `command` agent (the lifecycle tests' script). Every
process reaches Redis through a TCP proxy that can be cut (tests/support/tcp_proxy.py):
one for the control plane (serve and workers), one per runner machine.
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

from bench.chaos.stores import PostgresServer, RedisServer, free_port
from bot.engine.runs.machines import registered
from tests.fakes.github_api import FakeRepo
from tests.fakes.github_graphql import FakeGitHubGraphQL
from tests.fakes.github_http import ServedGitHub, served_github
from tests.support.helpers import test_private_key
from tests.support.lifecycle import (
    AGENT,
    FULL_NAME,
    INSTALLATION,
    REPO_ID,
    WRITER,
    make_remote,
    repo_config,
)
from tests.support.tcp_proxy import TcpProxy

APP_ID = 4242
SECRET = "chaos-webhook-secret"
MACHINES = ("m1", "m2")
CLI = [sys.executable, "-m", "bot.processes.cli"]
UNPACED_WRITES = 100_000  # the outbox's budgets a minute and an hour, out of the way
REPO_ROOT = Path(__file__).resolve().parents[2]
Role = Literal["serve", "worker", "runner"]


@dataclass
class Process:
    name: str  # serve, worker-1, runner-m1 ...
    role: Role
    popen: subprocess.Popen[bytes]
    log: Path
    killed: bool = False  # by the benchmark (a fault), not on its own

    @property
    def exited_by_itself(self) -> bool:
        return not self.killed and self.popen.poll() is not None


@dataclass
class Cluster:
    root: Path
    postgres: PostgresServer
    redis: RedisServer
    github: ServedGitHub
    repo: FakeRepo
    proxies: dict[str, TcpProxy]  # "control", and one per machine
    agent_seconds: float
    serve_port: int = field(default_factory=free_port)
    processes: dict[str, Process] = field(default_factory=dict)
    retired: list[Process] = field(default_factory=list)  # killed or replaced: logs kept
    _generation: dict[str, int] = field(default_factory=dict)

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    # --- product processes --------------------------------------------------------------

    def _env(self, proxy: str, *, control: bool) -> dict[str, str]:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.root / "home"),
            "OPENASE_REDIS_URL": f"redis://127.0.0.1:{self.proxies[proxy].port}/0",
        }
        if control:
            env.update(
                OPENASE_DATABASE_URL=self.postgres.url,
                OPENASE_DATA_DIR=str(self.root / "data"),
                OPENASE_HOST="127.0.0.1",
                OPENASE_PORT=str(self.serve_port),
                OPENASE_CONFIG=str(self.root / "control.yml"),
                OPENASE_GITHUB_APP_ID=str(APP_ID),
                OPENASE_GITHUB_PRIVATE_KEY=test_private_key(),
                OPENASE_GITHUB_WEBHOOK_SECRET=SECRET,
                OPENASE_GITHUB_API_URL=self.github.api_url,
                # The outbox's pacing (80 content-creating requests a minute, GitHub's limit)
                # is not what a fault run measures: its burst of tickets makes more than 80 in
                # the first minute, and paced effects would count as not caught up.
                OPENASE_GITHUB_WRITES_PER_MINUTE=str(UNPACED_WRITES),
                OPENASE_GITHUB_WRITES_PER_HOUR=str(UNPACED_WRITES),
            )
        return env

    def start(self, name: str) -> Process:
        """Start (or start again, as a replacement) the process called `name`."""
        role: Role = "serve" if name == "serve" else "worker" if name.startswith("w") else "runner"
        generation = self._generation.get(name, 0) + 1
        self._generation[name] = generation
        log = self.root / "logs" / f"{name}.{generation}.log"
        if role == "runner":
            machine = name.removeprefix("runner-")
            argv = [
                *CLI, "runner", "--machine", machine, "--max-runs", "2",
                "--workspace-root", str(self.root / f"ws-{machine}"), "--drain-seconds", "5",
                "--sandbox-read", str(self.root / "agents"),
            ]  # fmt: skip
            env = self._env(machine, control=False)
        else:
            argv = [*CLI, role]
            env = self._env("control", control=True)
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its agents and hooks die with it
            )  # fmt: skip
        process = Process(name, role, popen, log)
        old = self.processes.get(name)
        if old is not None:
            self.retired.append(old)
        self.processes[name] = process
        return process

    def kill(self, name: str) -> None:
        """SIGKILL `name` and everything it started: a crash, no word to anyone."""
        process = self.processes[name]
        process.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.popen.pid, signal.SIGKILL)
        process.popen.wait()

    def signal(self, name: str, sig: int) -> None:
        """Send `sig` to `name`'s process group (SIGSTOP freezes it, SIGCONT thaws it)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.processes[name].popen.pid, sig)

    def dead(self) -> list[Process]:
        """Processes that exited without the benchmark killing them."""
        return [p for p in self.processes.values() if p.exited_by_itself]

    def every_log(self) -> list[Path]:
        return [p.log for p in [*self.retired, *self.processes.values()]]

    async def wait_serving(self, within: float = 60) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.serve_url, timeout=2) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz")).status_code < 500:
                        return
                if time.monotonic() > deadline or self.processes["serve"].exited_by_itself:
                    raise RuntimeError(f"openase serve did not come up; see {self.root}/logs")
                await asyncio.sleep(0.2)

    async def wait_registered(self, machines: tuple[str, ...], within: float = 60) -> None:
        deadline = time.monotonic() + within
        redis = Redis.from_url(self.redis.url)
        try:
            while True:
                with contextlib.suppress(OSError, ConnectionError, TimeoutError):
                    now = time.time()
                    fresh = {m.name for m in await registered(redis) if m.fresh(now)}
                    if set(machines) <= fresh:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"runners {machines} did not register; see {self.root}/logs")
                await asyncio.sleep(0.2)
        finally:
            await redis.aclose()

    async def stop(self) -> None:
        for process in self.processes.values():
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.popen.pid, signal.SIGTERM)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.popen.wait, 20)
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait()


def _control_yaml(agent: Path) -> str:
    return textwrap.dedent(
        f"""\
        providers:
          script:
            cli: command
            argv: ["{sys.executable}", "{agent}", "{{prompt_file}}"]
            limits: {{wall_seconds: 300, stall_seconds: 120}}
        defaults:
          provider: script
        """
    )


@contextlib.asynccontextmanager
async def cluster(*, agent_seconds: float, root: Path | None = None) -> AsyncIterator[Cluster]:
    """Everything started and ready (runners registered, serve answering); stopped after."""
    root = root or Path(tempfile.mkdtemp(prefix="oa-chaos-"))
    for sub in ("logs", "home", "data"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    postgres = PostgresServer(root / "pg")
    redis = RedisServer(root / "redis")
    proxies = {name: TcpProxy("127.0.0.1", redis.port) for name in ("control", *MACHINES)}
    try:
        postgres.start()
        redis.start()
        for proxy in proxies.values():
            await proxy.start()
        migrate = await asyncio.create_subprocess_exec(
            *CLI, "migrate", cwd=REPO_ROOT,
            env={**_plain_env(), "OPENASE_DATABASE_URL": postgres.url},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await migrate.communicate()
        if migrate.returncode != 0:
            raise RuntimeError(f"openase migrate failed:\n{output.decode()}")
        # In a directory of its own, the one the runners show their sandboxes.
        agent = root / "agents" / "agent.py"
        agent.parent.mkdir()
        agent.write_text(AGENT.replace("SLEEP", repr(float(agent_seconds))))
        (root / "control.yml").write_text(_control_yaml(agent))
        remote = make_remote(root, repo_config(max_attempts=5))
        async with served_github(private_key_pem=test_private_key(), app_id=APP_ID) as github:
            fake = github.fake
            fake.add_installation(INSTALLATION, "octo")
            repo = fake.add_repo(FULL_NAME, REPO_ID, INSTALLATION)
            repo.data.update(clone_url=str(remote), default_branch="main")
            repo.git_dir = remote
            fake.permissions[WRITER] = "write"
            FakeGitHubGraphQL(fake)  # Projects v2 (no boards): the status field has none to set
            here = Cluster(root, postgres, redis, github, repo, proxies, agent_seconds)
            try:
                for name in ("serve", "worker-1", "worker-2", *(f"runner-{m}" for m in MACHINES)):
                    here.start(name)
                await here.wait_serving()
                await here.wait_registered(MACHINES)
                yield here
            finally:
                await here.stop()
    finally:
        for proxy in proxies.values():
            await proxy.aclose()
        redis.stop()
        postgres.stop()


def _plain_env() -> dict[str, str]:
    """This process's environment without any OPENASE_* setting of the person running it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OPENASE_")}
