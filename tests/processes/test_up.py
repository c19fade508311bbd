"""The product's processes as a user runs them: real subprocesses, real servers, signals.

`openase up` takes one data dir through three lives: a clean start and Ctrl-C, a restart
that finds its data and secret and is then killed with SIGKILL, and a start over the
crashed run's leftovers that SIGTERM stops. After each clean stop no server of that data
dir may be left running. `up` supervises its web app, worker and runner as processes of
their own: each killed is started again and the product works on; SIGTERM stops them all;
a killed `up` takes them with it. Then the mixed case (one URL given, the other embedded)
and the production pair `serve` + `worker` against the test session's servers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pgserver
import pytest

from adapters.github.verify import sign
from tests.conftest import Services
from tests.support.helpers import TEST_WEBHOOK_SECRET, github_example

pytestmark = pytest.mark.slow

PSQL: str = str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql")
STOP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    """One `openase` process, its output going to files (pipes could fill and block it)."""

    command: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    base_url: str

    def output(self) -> str:
        return self.stdout.read_text() + "\n--- stderr ---\n" + self.stderr.read_text()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until /healthz answers 200 (the web app runs and reaches Postgres and Redis) and,
        for `up`, its banner is printed (once it saw the web app answer)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"openase {self.command} exited early:\n{self.output()}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200 and (
                    self.command != "up" or "Ctrl-C stops everything." in self.stdout.read_text()
                ):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"openase {self.command} not healthy within {timeout}s:\n{self.output()}")

    def stop(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"openase {self.command} did not stop within {STOP_TIMEOUT}s of {sig.name}")

    def printed_secret(self) -> str:
        for line in self.stdout.read_text().splitlines():
            if line.strip().startswith("webhook secret"):
                return line.split()[-1]
        pytest.fail(f"no webhook secret in the banner:\n{self.output()}")


class Launcher:
    """Starts `openase` commands on one data dir; remembers every process for the teardown."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.started: list[Process] = []

    def start(
        self, command: str = "up", port: int | None = None, env: dict[str, str] | None = None
    ) -> Process:
        port = port or free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("OPENASE_")}
        environ.update(OPENASE_DATA_DIR=str(self.data_dir), OPENASE_PORT=str(port))
        environ.update(env or {})
        logs = self.data_dir.parent
        run = len(self.started) + 1
        stdout, stderr = logs / f"{run}-{command}.out", logs / f"{run}-{command}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "bot.processes.cli", command],
                env=environ,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        started = Process(command, process, stdout, stderr, f"http://127.0.0.1:{port}")
        self.started.append(started)
        return started

    def clean_up(self) -> None:
        """After a failed test: stop what is left, politely first."""
        for started in self.started:
            if started.process.poll() is None:
                started.process.terminate()
                try:
                    started.process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    started.process.kill()
                    started.process.wait()
        for pid in server_pids(self.data_dir):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def launcher() -> Iterator[Launcher]:
    # Short path: the sockets live inside it, and unix socket paths must stay < 100 bytes.
    root = Path(tempfile.mkdtemp(prefix="oa-"))
    launcher = Launcher(root / "data")
    try:
        yield launcher
    finally:
        launcher.clean_up()
        shutil.rmtree(root, ignore_errors=True)


def server_pids(directory: Path) -> list[int]:
    """Processes whose command line names `directory`: the embedded postgres and redis."""
    needle = str(directory).encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:  # exited while we looked
            continue
        if needle in cmdline:
            pids.append(int(proc.name))
    return pids


SUPERVISED = {"serve", "worker", "runner"}  # the commands `up` runs as its children


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie nobody reaped yet has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def children_of(pid: int) -> dict[str, int]:
    """`up`'s supervised processes by command (`serve`, `worker`, `runner`): pid."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):  # exited while we looked
            continue
        if ppid == pid and b"bot.processes.cli" in argv and alive(int(proc.name)):
            found[argv[argv.index(b"bot.processes.cli") + 1].decode()] = int(proc.name)
    return found


def wait_for_children(up: Process, expected: set[str], unlike: dict[str, int]) -> dict[str, int]:
    """Until `up` runs each of `expected`, none with the pid it had in `unlike`."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = children_of(up.process.pid)
        if set(found) == expected and all(found[n] != unlike.get(n) for n in expected):
            return found
        time.sleep(0.1)
    pytest.fail(f"children {expected} not (re)started: {children_of(up.process.pid)}")


def wait_until_gone(children: dict[str, int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in children.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {name: pid for name, pid in children.items() if alive(pid)}
    assert not left, f"still running {timeout}s after `up` was killed: {left}"


def embedded_db(data_dir: Path) -> str:
    return f"postgresql://postgres@/postgres?host={data_dir / 'postgres'}"


def sql(db: str, query: str, **params: str) -> str:
    """One value from a database; `params` become psql variables (`:'name'` quotes them)."""
    argv = [PSQL, db.replace("+asyncpg", ""), "-tA", "-v", "ON_ERROR_STOP=1"]
    for name, value in params.items():
        argv += ["-v", f"{name}={value}"]
    done = subprocess.run(argv, input=query, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def delivery_status(db: str, delivery: str) -> str:
    return sql(db, "SELECT status FROM deliveries WHERE delivery_id = :'d'", d=delivery)


def tickets_titled(db: str, title: str) -> int:
    return int(sql(db, "SELECT count(*) FROM tickets WHERE title = :'t'", t=title))


def post_issue(base_url: str, secret: str) -> tuple[httpx.Response, str, str]:
    """A signed `issues.opened` webhook with a fresh title; (response, delivery id, title)."""
    payload = github_example("issues", "opened")
    title = f"process test {uuid.uuid4()}"
    payload["issue"]["title"] = title
    body = json.dumps(payload).encode()
    delivery = str(uuid.uuid4())
    response = httpx.post(
        base_url + "/webhooks/github",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(secret.encode(), body),
        },
    )
    return response, delivery, title


def deliver(base_url: str, secret: str, db: str) -> str:
    """Post an issue, wait until the worker mirrored it; returns the issue title."""
    response, delivery, title = post_issue(base_url, secret)
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 15
    status = ""
    while time.monotonic() < deadline:
        status = delivery_status(db, delivery)
        if status in ("done", "failed"):
            break
        time.sleep(0.1)
    error = sql(db, "SELECT error FROM deliveries WHERE delivery_id = :'d'", d=delivery)
    assert status == "done", f"delivery {status}: {error}"
    assert tickets_titled(db, title) == 1
    return title


def test_up_serves_stops_cleanly_and_keeps_its_data(launcher: Launcher) -> None:
    data_dir = launcher.data_dir
    db = embedded_db(data_dir)
    port = free_port()

    first = launcher.start("up", port)
    first.wait_ready()
    secret = first.printed_secret()
    secret_file = data_dir / "webhook-secret"
    assert secret_file.read_text().strip() == secret
    assert secret_file.stat().st_mode & 0o777 == 0o600
    banner = first.stdout.read_text()
    assert f"{first.base_url}/webhooks/github" in banner
    assert f"{first.base_url}/healthz" in banner

    title = deliver(first.base_url, secret, db)
    # The printed secret is the one in force: any other is refused.
    assert post_issue(first.base_url, "not-the-secret")[0].status_code == 401

    assert first.stop(signal.SIGINT) == 0, first.output()
    assert server_pids(data_dir) == []
    assert "Traceback" not in first.stderr.read_text()

    # Second life: same secret, same data; then a crash leaves its servers behind.
    second = launcher.start("up", port)
    second.wait_ready()
    assert second.printed_secret() == secret
    assert tickets_titled(db, title) == 1
    children = wait_for_children(second, SUPERVISED, {})
    second.process.kill()
    second.process.wait()
    assert server_pids(data_dir) != []  # postgres and redis outlive a SIGKILLed parent
    # Its web app, worker and runner do not (and the port is free once the web app is gone).
    wait_until_gone(children)

    # Third life: reuses the running postgres, replaces the stale redis, stops on SIGTERM.
    third = launcher.start("up", port)
    third.wait_ready()
    assert tickets_titled(db, title) == 1
    deliver(third.base_url, secret, db)
    assert third.stop(signal.SIGTERM) == 0, third.output()
    assert server_pids(data_dir) == []


def test_up_restarts_a_killed_child_and_sigterm_stops_them_all(launcher: Launcher) -> None:
    db = embedded_db(launcher.data_dir)
    up = launcher.start("up")
    up.wait_ready()
    secret = up.printed_secret()
    first = wait_for_children(up, SUPERVISED, {})
    deliver(up.base_url, secret, db)  # served by `serve`, performed by `worker`

    killed = first
    for command in ("worker", "serve", "runner"):
        os.kill(killed[command], signal.SIGKILL)
        killed = wait_for_children(up, SUPERVISED, {command: killed[command]})
        up.wait_ready()
        deliver(up.base_url, secret, db)  # the product works again
    assert all(not alive(pid) for pid in first.values())

    log = log_lines(up)
    ended = [line for line in log if line["event"] == "process_ended"]
    assert [(line["child"], line["status"]) for line in ended] == [
        ("worker", "killed by SIGKILL"),
        ("web", "killed by SIGKILL"),
        ("runner", "killed by SIGKILL"),
    ]
    # Each line says which process wrote it.
    assert {"up", "web", "worker", "runner"} <= {line.get("process") for line in log}
    assert up.stdout.read_text().count("OpenASE is up.") == 1

    assert up.stop(signal.SIGTERM) == 0, up.output()
    assert not any(alive(pid) for pid in killed.values())
    assert server_pids(launcher.data_dir) == []
    stopped = [line["child"] for line in log_lines(up) if line["event"] == "process_stopped"]
    assert stopped == ["web", "worker", "runner"]  # in this order: no delivery goes unseen


def log_lines(up: Process) -> list[dict[str, str]]:
    lines = up.stderr.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_a_killed_up_leaves_no_child_behind(launcher: Launcher) -> None:
    up = launcher.start("up")
    up.wait_ready()
    children = wait_for_children(up, SUPERVISED, {})
    up.process.kill()
    up.process.wait()
    wait_until_gone(children)


def test_a_second_signal_stops_up_at_once_and_leaves_nothing(launcher: Launcher) -> None:
    up = launcher.start("up")
    up.wait_ready()
    children = wait_for_children(up, SUPERVISED, {})
    up.process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 10
    while "shutdown_requested" not in up.stderr.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert up.stop(signal.SIGINT) == 0, up.output()
    assert "shutdown_forced" in up.stderr.read_text()
    assert not any(alive(pid) for pid in children.values())
    assert server_pids(launcher.data_dir) == []


def test_up_refuses_a_data_dir_another_up_is_using(launcher: Launcher) -> None:
    first = launcher.start("up")
    first.wait_ready()
    second = launcher.start("up")
    assert second.process.wait(timeout=STOP_TIMEOUT) == 2
    assert "another `openase up` is already running" in second.stderr.read_text()
    # The refused start touched nothing: the first still answers and stops cleanly.
    assert httpx.get(first.base_url + "/healthz", timeout=5).status_code == 200
    assert first.stop(signal.SIGINT) == 0, first.output()
    assert server_pids(launcher.data_dir) == []


def test_up_on_a_taken_port_names_the_settings_and_starts_nothing(launcher: Launcher) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        up = launcher.start("up", port=taken.getsockname()[1])
        assert up.process.wait(timeout=STOP_TIMEOUT) == 2
    err = up.stderr.read_text()
    assert "cannot listen on 127.0.0.1:" in err
    assert "(OPENASE_HOST, OPENASE_PORT): Address already in use" in err
    assert not (launcher.data_dir / "postgres").exists()


def test_up_embeds_only_the_service_that_is_not_configured(
    launcher: Launcher, services: Services
) -> None:
    env = {"OPENASE_DATABASE_URL": services.database_url, "OPENASE_GITHUB_WEBHOOK_SECRET": "given"}
    up = launcher.start("up", env=env)
    up.wait_ready()
    assert "from OPENASE_GITHUB_WEBHOOK_SECRET" in up.stdout.read_text()
    assert "given" not in up.stdout.read_text()
    deliver(up.base_url, "given", services.database_url)
    assert not (launcher.data_dir / "postgres").exists()
    assert (launcher.data_dir / "redis").is_dir()
    assert up.stop(signal.SIGINT) == 0, up.output()
    assert server_pids(launcher.data_dir) == []
    assert sql(services.database_url, "SELECT 1") == "1"  # a configured server is left alone


def test_serve_and_worker_run_the_production_pair(launcher: Launcher, services: Services) -> None:
    env = {
        "OPENASE_DATABASE_URL": services.database_url,
        "OPENASE_REDIS_URL": services.redis_url,
        "OPENASE_GITHUB_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET,
    }
    serve = launcher.start("serve", env=env)
    worker = launcher.start("worker", env=env)
    serve.wait_ready()
    deliver(serve.base_url, TEST_WEBHOOK_SECRET, services.database_url)
    assert serve.stop(signal.SIGTERM) == 0, serve.output()
    assert worker.stop(signal.SIGINT) == 0, worker.output()
    assert not launcher.data_dir.exists()  # production commands never embed anything
