"""An adversarial `command` agent (and the same attempts as a hook) inside a run's sandbox:
each attempt is refused, the run says why, and what it did in its worktree is committed.

The attempts run as real processes in bubblewrap (runner/sandbox); the agent writes what it
could see into `report.json` in its worktree, which the run commits and pushes, so every
assertion reads the pushed branch, as a reviewer would.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from runner.contract import AgentEvent, Hooks, HookSpec, RunStatus, SandboxPolicy
from runner.sandbox import bwrap
from runner.sandbox.confine import Sandbox
from runner.workspace import Workspace
from tests.support.canary import home_canary
from tests.support.git_repos import make_remote, show
from tests.support.runs import run, script, spec_for

pytestmark = pytest.mark.asyncio

BRANCH = "openase/7-add-hello"
TOKEN = "ghs_" + "canary0123456789abcdefABCDEF0123456789"  # a test value, not a secret


@pytest.fixture(scope="module")
def support() -> bwrap.Support:
    found = asyncio.run(bwrap.probe())
    if not found.available:
        pytest.skip(f"bubblewrap cannot confine here: {found.problem}")
    return found


@pytest.fixture
def agents(tmp_path: Path) -> Path:
    """The agent scripts' own directory: the only extra path the sandbox shows."""
    path = tmp_path / "agents"
    path.mkdir()
    return path


@pytest.fixture
def sandbox(support: bwrap.Support, agents: Path) -> Sandbox:
    return Sandbox(support, read_only=(agents,))


@pytest.fixture
def canary() -> Iterator[Path]:
    with home_canary("the runner user's secret\n") as path:
        yield path


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A TCP server on the runner's machine; what connections sent it."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(100)
        received.append(data)
        writer.write(b"pong:" + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, received


# Every attempt records what happened in `report`, written to report.json in the worktree.
PROLOGUE = """
import json, os, pathlib, socket, sys
report = {}
def attempt(name, action):
    try:
        report[name] = {"ok": True, "value": action()}
    except Exception as error:
        report[name] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
def done(code=0):
    pathlib.Path("report.json").write_text(json.dumps(report))
    print(json.dumps(report), flush=True)
    sys.exit(code)
"""


def agent(agents: Path, body: str) -> Path:
    return script(agents, "agent.py", PROLOGUE + body)


def committed_report(tmp_path: Path) -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = json.loads(
        show(tmp_path / "remote.git", BRANCH, "report.json")
    )
    return data


def refused_events(events: list[AgentEvent]) -> list[AgentEvent]:
    return [event for event in events if event.data.get("sandbox") == "egress_refused"]


async def test_the_runner_users_home_is_not_there(
    tmp_path: Path, agents: Path, sandbox: Sandbox, canary: Path
) -> None:
    remote = make_remote(tmp_path)
    program = agent(
        agents,
        f"""
attempt("canary", lambda: pathlib.Path({str(canary)!r}).read_text())
attempt("home", lambda: sorted(os.listdir({str(Path.home())!r})))
attempt("ssh", lambda: os.listdir({str(Path.home() / ".ssh")!r}))
pathlib.Path("work.txt").write_text("done anyway")
done()
""",
    )
    spec = spec_for(remote, [str(program)], sandbox=SandboxPolicy())
    result, _ = await run(tmp_path, spec, sandbox=sandbox)

    assert result.status is RunStatus.SUCCEEDED, result.error
    report = committed_report(tmp_path)
    assert report["canary"]["ok"] is False
    assert "No such file" in str(report["canary"]["error"])
    assert report["ssh"]["ok"] is False
    # At most the paths the sandbox shows on purpose (the runner's Python may live there).
    home = report["home"]
    assert canary.name not in json.dumps(home)
    assert show(remote, BRANCH, "work.txt") == "done anyway"


async def test_another_runs_worktree_and_the_workspace_are_not_there(
    tmp_path: Path, agents: Path, sandbox: Sandbox
) -> None:
    remote = make_remote(tmp_path)
    workspace = Workspace(tmp_path / "ws")
    other = await workspace.prepare(
        spec_for(remote, ["true"]).repo, "main", "openase/8-other", None
    )
    (other.path / "secret.txt").write_text("another ticket's work")
    program = agent(
        agents,
        f"""
attempt("other", lambda: pathlib.Path({str(other.path / "secret.txt")!r}).read_text())
attempt("root", lambda: sorted(os.listdir({str(workspace.root)!r})))
attempt("mine", lambda: sorted(os.listdir(".")))
done()
""",
    )
    spec = spec_for(remote, [str(program)], sandbox=SandboxPolicy())
    result, _ = await run(tmp_path, spec, sandbox=sandbox)

    assert result.status is RunStatus.SUCCEEDED, result.error
    report = committed_report(tmp_path)
    assert report["other"]["ok"] is False
    # Only the path to this run's own worktree, home and the mirror exist in the workspace.
    assert "worktrees" in str(report["root"]["value"])
    assert "another ticket's work" not in json.dumps(report)
    assert "README.md" in str(report["mine"]["value"])


async def test_writes_outside_the_worktree_and_home_are_refused(
    tmp_path: Path, agents: Path, sandbox: Sandbox
) -> None:
    remote = make_remote(tmp_path)
    workspace_root = tmp_path / "ws"
    mirror = workspace_root / "mirrors" / "acme" / "api.git"
    program = agent(
        agents,
        f"""
def write(path):
    pathlib.Path(path).write_text("planted")
    return path
attempt("agents", lambda: write({str(agents / "planted.py")!r}))
attempt("workspace", lambda: write({str(workspace_root / "planted")!r}))
attempt("mirror_config", lambda: write({str(mirror / "config")!r}))
attempt("mirror_hook", lambda: write({str(mirror / "hooks" / "pre-push")!r}))
attempt("dot_git", lambda: write(".git"))
attempt("usr", lambda: write("/usr/local/bin/planted"))
attempt("tmp", lambda: write("/tmp/private-scratch"))
attempt("home", lambda: write(os.path.join(os.environ["HOME"], "notes")))
done()
""",
    )
    spec = spec_for(remote, [str(program)], sandbox=SandboxPolicy())
    result, _ = await run(tmp_path, spec, sandbox=sandbox)

    assert result.status is RunStatus.SUCCEEDED, result.error
    report = committed_report(tmp_path)
    for name in ("agents", "mirror_config", "mirror_hook", "dot_git", "usr"):
        assert report[name]["ok"] is False, name
    # The workspace's path exists inside only as empty directories on the sandbox's own
    # tmpfs (where mount points were made): a write there reaches nothing of the machine.
    assert report["tmp"]["ok"] is True  # a private tmp, gone with the sandbox
    assert report["home"]["ok"] is True  # the run's own home
    assert not (agents / "planted.py").exists()
    assert not (workspace_root / "planted").exists()
    assert "planted" not in (mirror / "config").read_text()
    assert "private-scratch" not in os.listdir(tempfile.gettempdir())


async def test_egress_is_refused_except_what_the_run_allows(
    tmp_path: Path,
    agents: Path,
    sandbox: Sandbox,
    listener: tuple[int, list[bytes]],
) -> None:
    remote = make_remote(tmp_path)
    port, received = listener
    # Same server, two names: 127.0.0.1 is allowed, localhost (not in the list) is not.
    program = agent(
        agents,
        f"""
def direct(host, port):
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(b"direct")
        return conn.recv(100).decode()
def via_proxy(host, port):
    with socket.create_connection(("127.0.0.1", 3128), timeout=5) as conn:
        target = f"{{host}}:{{port}}"
        conn.sendall(f"CONNECT {{target}} HTTP/1.1\\r\\nHost: {{target}}\\r\\n\\r\\n".encode())
        answer = conn.recv(4096).decode(errors="replace")
        if not answer.startswith("HTTP/1.1 200"):
            raise ConnectionRefusedError(answer.splitlines()[0])
        conn.sendall(b"tunnel")
        return conn.recv(100).decode()
attempt("allowed_via_proxy", lambda: via_proxy("127.0.0.1", {port}))
attempt("allowed_direct", lambda: direct("127.0.0.1", {port}))
attempt("refused_via_proxy", lambda: via_proxy("localhost", {port}))
attempt("refused_other_port", lambda: via_proxy("127.0.0.1", 5432))
attempt("refused_direct", lambda: direct("127.0.0.1", 5432))
attempt("refused_internet", lambda: via_proxy("example.com", 443))
attempt("no_dns", lambda: socket.getaddrinfo("example.com", 443))
done()
""",
    )
    spec = spec_for(remote, [str(program)], sandbox=SandboxPolicy(allow=(f"127.0.0.1:{port}",)))
    result, events = await run(tmp_path, spec, sandbox=sandbox)

    assert result.status is RunStatus.SUCCEEDED, result.error
    report = committed_report(tmp_path)
    assert report["allowed_via_proxy"] == {"ok": True, "value": "pong:tunnel"}
    assert report["allowed_direct"] == {"ok": True, "value": "pong:direct"}
    for name in ("refused_via_proxy", "refused_other_port", "refused_internet"):
        assert report[name]["ok"] is False, name
        assert "403" in str(report[name]["error"]), report[name]
    assert report["refused_direct"]["ok"] is False
    assert report["no_dns"]["ok"] is False
    assert sorted(received) == [b"direct", b"tunnel"]
    refused = {(event.data["host"], event.data["port"]) for event in refused_events(events)}
    assert refused == {("localhost", port), ("127.0.0.1", 5432), ("example.com", 443)}
    assert all(
        "not in this run's network allowlist" in (e.text or "")
        for e in events
        if e in refused_events(events)
    )


async def test_an_open_network_shares_the_machines_but_keeps_the_files_confined(
    tmp_path: Path,
    agents: Path,
    sandbox: Sandbox,
    canary: Path,
    listener: tuple[int, list[bytes]],
) -> None:
    remote = make_remote(tmp_path)
    port, received = listener
    program = agent(
        agents,
        f"""
def direct():
    with socket.create_connection(("127.0.0.1", {port}), timeout=5) as conn:
        conn.sendall(b"open")
        return conn.recv(100).decode()
attempt("direct", direct)
attempt("proxy_variable", lambda: os.environ.get("HTTPS_PROXY"))
attempt("canary", lambda: pathlib.Path({str(canary)!r}).read_text())
done()
""",
    )
    spec = spec_for(remote, [str(program)], sandbox=SandboxPolicy(network="open"))
    result, events = await run(tmp_path, spec, sandbox=sandbox)

    assert result.status is RunStatus.SUCCEEDED, result.error
    report = committed_report(tmp_path)
    assert report["direct"] == {"ok": True, "value": "pong:open"}
    assert report["proxy_variable"] == {"ok": True, "value": None}
    assert report["canary"]["ok"] is False
    assert received == [b"open"]
    (agent_phase,) = [e for e in events if e.kind == "phase" and e.text == "agent"]
    assert agent_phase.data["sandbox"] == "bubblewrap, open network"


async def test_the_git_token_is_not_in_the_environment_or_proc(
    tmp_path: Path, agents: Path, sandbox: Sandbox
) -> None:
    remote = make_remote(tmp_path)
    program = agent(
        agents,
        """
def everything():
    seen = dict(os.environ)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            for name in ("environ", "cmdline"):
                try:
                    data = open(f"/proc/{pid}/{name}", "rb").read()
                    seen[f"{pid}/{name}"] = data.decode(errors="replace")
                except OSError as error:
                    seen[f"{pid}/{name}"] = str(error)
    return seen
attempt("seen", everything)
attempt("pids", lambda: sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
done()
""",
    )
    spec = spec_for(remote, [str(program)], sandbox=SandboxPolicy(), git_token=SecretStr(TOKEN))
    result, events = await run(tmp_path, spec, sandbox=sandbox)

    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.pushed
    report_text = show(remote, BRANCH, "report.json")
    assert TOKEN not in report_text
    assert "OPENASE_GIT_TOKEN" not in report_text
    # Its own PID namespace: bubblewrap, inner.py, the agent; not the runner's processes.
    pids = committed_report(tmp_path)["pids"]["value"]
    assert isinstance(pids, list)
    assert max(pids) < 10
    assert all(TOKEN not in json.dumps(event.to_wire()) for event in events)


async def test_forking_past_the_process_limit_is_refused_and_reported(
    tmp_path: Path, agents: Path, sandbox: Sandbox
) -> None:
    remote = make_remote(tmp_path)
    program = agent(
        agents,
        """
import time
pathlib.Path("before-the-bomb.txt").write_text("work worth keeping")
children = []
def bomb():
    while len(children) < 500:
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children.append(pid)
    return len(children)
attempt("fork", bomb)
report["forked"] = len(children)
done(1)
""",
    )
    spec = spec_for(remote, [str(program)], sandbox=SandboxPolicy(max_processes=32))
    result, events = await run(tmp_path, spec, sandbox=sandbox)

    assert result.status is RunStatus.AGENT_ERROR
    assert result.error_class == "sandbox_limit"
    assert "process limit of 32 reached" in (result.error or "")
    assert any("process limit of 32" in (event.text or "") for event in events)
    assert show(remote, BRANCH, "before-the-bomb.txt") == "work worth keeping"


async def test_memory_and_file_size_limits_stop_the_agent_and_say_so(
    tmp_path: Path, agents: Path, sandbox: Sandbox
) -> None:
    remote = make_remote(tmp_path)
    program = agent(
        agents,
        """
import sys, time
pathlib.Path("kept.txt").write_text("kept")
if sys.argv[1] == "memory":
    hog = []
    for _ in range(400):
        hog.append(bytearray(1024 * 1024))
        time.sleep(0.002)
else:
    with open("big.bin", "wb") as big:
        for _ in range(8):
            big.write(b"x" * 1024 * 1024)
done()
""",
    )
    memory = spec_for(remote, [str(program), "memory"], sandbox=SandboxPolicy(max_memory_mb=64))
    result, _ = await run(tmp_path, memory, sandbox=sandbox)
    assert result.status is RunStatus.AGENT_ERROR
    assert result.error_class == "sandbox_limit"
    assert "memory limit of 64 MB" in (result.error or "")
    assert show(remote, BRANCH, "kept.txt") == "kept"

    files = spec_for(
        remote,
        [str(program), "file"],
        sandbox=SandboxPolicy(max_file_mb=2),
        run_id="run-2",
    )
    result, _ = await run(tmp_path, files, sandbox=sandbox)
    assert result.status is RunStatus.AGENT_ERROR
    assert "file size limit of 2 MB reached" in (result.error or "")


async def test_hooks_are_confined_like_the_agent(
    tmp_path: Path,
    agents: Path,
    sandbox: Sandbox,
    canary: Path,
    listener: tuple[int, list[bytes]],
) -> None:
    remote = make_remote(tmp_path)
    port, received = listener
    program = agent(agents, 'pathlib.Path("work.txt").write_text("w")\ndone()\n')
    probe_hook = (
        f"cat {canary} || echo canary-refused; "
        f"touch {agents}/planted || echo write-refused; "
        f"(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null || echo connect-refused; "
        "echo pids $(ls /proc | grep -c '^[0-9]')"
    )
    hooks = Hooks(on_complete=(HookSpec(name="probe", run=f"bash -c '{probe_hook}'", timeout=30),))
    spec = spec_for(remote, [str(program)], hooks=hooks, sandbox=SandboxPolicy())
    result, _ = await run(tmp_path, spec, sandbox=sandbox)

    assert result.status is RunStatus.SUCCEEDED, result.error
    (hook,) = result.hook_results
    assert "the runner user's secret" not in hook.output_tail
    for refusal in ("canary-refused", "write-refused", "connect-refused"):
        assert refusal in hook.output_tail, hook.output_tail
    assert not (agents / "planted").exists()
    assert received == []


async def test_a_machine_that_cannot_sandbox_refuses_and_names_the_fix(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    spec = spec_for(remote, ["true"], sandbox=SandboxPolicy())
    missing = Sandbox(await bwrap.probe("openase-no-such-bwrap"))

    result, _ = await run(tmp_path, spec, sandbox=missing)

    assert result.status is RunStatus.REFUSED
    assert result.error_class == "sandbox_unavailable"
    assert "apt-get install bubblewrap" in (result.error or "")
    assert "sandbox: off" in (result.error or "")
