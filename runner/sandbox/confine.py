"""A run's confinement: its egress proxy for the run's lifetime, and each agent or hook
process started in bubblewrap under the run's policy, with what the sandbox saw reported.

`Sandbox` is the machine's side (can it confine, what it shows read-only besides the
system); `RunSandbox` is one run's (policy, allowlist, proxy, events); `RunSandbox.supervise`
is `runner.process.supervise` for a confined process. A run whose policy is `enabled=False`
has no RunSandbox at all: its processes run as before, unconfined.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import structlog

from runner.contract import AgentConfig, AgentEvent, EventKind, SandboxPolicy
from runner.process import AgentStartError, ProcessOutcome, pid_alive, supervise
from runner.sandbox import bwrap
from runner.sandbox.proxy import Allowlist, EgressProxy, Refusal

log = structlog.get_logger(__name__)

SOCKET_DIR_PREFIX = "openase-egress-"

# The model API each CLI talks to by default; a provider's base URL (any http(s) URL among
# its settings) is allowed as well.
MODEL_HOSTS: Mapping[str, tuple[str, ...]] = {
    "claude_code": ("api.anthropic.com",),
    "codex": ("api.openai.com",),
    "gemini": ("generativelanguage.googleapis.com",),
    "command": (),
}
_PROXY_URL = f"http://127.0.0.1:{bwrap.PROXY_PORT}"
_LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class Sandbox:
    """This machine's ability to confine runs, and the paths it shows them read-only besides
    the system (where agent scripts or tools live: `openase runner --sandbox-read`)."""

    support: bwrap.Support
    read_only: tuple[Path, ...] = ()

    @property
    def available(self) -> bool:
        return self.support.available

    def refusal(self) -> str:
        """Why a run that must be confined cannot run here, with the fix."""
        return (
            f"this runner cannot sandbox runs: {self.support.problem}. Its workflows run "
            "only where they may run unconfined (`sandbox: off` in the workflow)"
        )


def allowed_hosts(policy: SandboxPolicy, agent: AgentConfig) -> tuple[str, ...]:
    """The run's allowlist: the provider's model hosts, its base URLs, then the policy's."""
    hosts = list(MODEL_HOSTS.get(agent.cli, ()))
    for value in agent.env.values():
        target = _url_host(value.get_secret_value())
        if target is not None:
            hosts.append(target)
    hosts += policy.allow
    return tuple(dict.fromkeys(hosts))


def _url_host(text: str) -> str | None:
    if not text.startswith(("http://", "https://")):
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    host = parts.hostname
    return f"{host}:{port}" if port is not None else host


def _tunnels(hosts: Sequence[str]) -> list[str]:
    """forward.py specs for allowed loopback targets: clients that reach 127.0.0.1:PORT
    directly (bypassing the proxy for loopback, as most do) find it inside too."""
    tunnels = []
    for pattern in hosts:
        host, _, port = pattern.rpartition(":")
        if not host or not port.isdigit() or int(port) == bwrap.PROXY_PORT:
            continue
        if host in _LOOPBACK_NAMES or _is_loopback(host):
            tunnels.append(f"{port}={host}:{port}")
    return tunnels


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Confined:
    """A confined process's outcome, as if it had run unconfined, and what the sandbox saw."""

    outcome: ProcessOutcome
    limit: str | None = None  # a limit that was hit, in words; None when none was


class RunSandbox:
    """One run's confinement; an async context manager that runs its egress proxy."""

    def __init__(
        self,
        sandbox: Sandbox,
        policy: SandboxPolicy,
        agent: AgentConfig,
        *,
        home: Path,
        run_dir: Path,
        emit: Callable[[AgentEvent], None],
    ) -> None:
        self.sandbox = sandbox
        self.policy = policy
        self.home = home
        self.run_dir = run_dir
        self._emit = emit
        self.hosts = allowed_hosts(policy, agent) if policy.network == "allowlist" else ()
        self._proxy: EgressProxy | None = None
        self._socket_dir = run_dir
        self.refused: list[Refusal] = []

    @property
    def socket_path(self) -> Path:
        return self._socket_dir / "egress.sock"

    async def __aenter__(self) -> RunSandbox:
        if self.policy.network == "allowlist":
            # Not in the run's directory: a Unix socket's path has at most 107 bytes, and a
            # workspace root can be deep. Private (0700) to the runner's user.
            # Its runner's pid in the name: a runner SIGKILLed mid-run leaves it behind, and
            # the next runner to start removes it (`remove_stale_socket_dirs`).
            self._socket_dir = Path(
                tempfile.mkdtemp(prefix=f"{SOCKET_DIR_PREFIX}{os.getpid()}-", dir=_short_tmp())
            )
            self._proxy = EgressProxy(Allowlist(self.hosts), on_refused=self._refused)
            await self._proxy.start(self.socket_path)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._proxy is not None:
            await self._proxy.close()
            self._proxy = None
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def _refused(self, refusal: Refusal) -> None:
        self.refused.append(refusal)
        log.info("egress_refused", host=refusal.host, port=refusal.port)
        self._emit(
            AgentEvent(
                kind=EventKind.LOG,
                text=(
                    f"sandbox: refused a connection to {refusal.host}:{refusal.port} "
                    "(not in this run's network allowlist)"
                ),
                is_error=True,
                data={
                    "sandbox": "egress_refused",
                    "host": refusal.host,
                    "port": refusal.port,
                    "method": refusal.method,
                },
            )
        )

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """The process's environment inside: the proxy for every client that honours it."""
        inside = dict(env)
        if self.policy.network == "allowlist":
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
                inside[name] = inside[name.lower()] = _PROXY_URL
            # Loopback goes direct: the allowed local targets are forwarded inside.
            inside["NO_PROXY"] = inside["no_proxy"] = "localhost,127.0.0.1,::1"
        return inside

    async def supervise(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        worktree: Path,
        env: Mapping[str, str],
        program_roots: Sequence[Path] = (),
        **limits: Any,
    ) -> Confined:
        """`runner.process.supervise` for `argv` confined; raises AgentStartError when the
        sandbox itself cannot start (with bubblewrap's words)."""
        layout = bwrap.Layout(
            worktree=worktree,
            home=self.home,
            prompt_dir=self.run_dir if self.run_dir.is_dir() else None,
            read_only=(*program_roots, *self.sandbox.read_only),
        )
        report_read, report_write = os.pipe()
        try:
            command = bwrap.command(
                argv,
                layout=layout,
                cwd=cwd,
                policy=self.policy,
                report_fd=report_write,
                proxy_socket=self.socket_path if self._proxy is not None else None,
                tunnels=_tunnels(self.hosts),
            )
            outcome = await supervise(
                command, cwd=cwd, env=self.environment(env), pass_fds=(report_write,), **limits
            )
            os.close(report_write)
            report_write = -1
            lines = _read_report(report_read)
        finally:
            os.close(report_read)
            if report_write >= 0:
                os.close(report_write)
        return self._judge(outcome, lines)

    def _judge(self, outcome: ProcessOutcome, lines: list[dict[str, Any]]) -> Confined:
        ending = next(
            (line for line in reversed(lines) if "exit" in line or "signal" in line), None
        )
        if ending is None and outcome.exit_code is not None and outcome.exit_code > 0:
            # Never got to run the program: bubblewrap said why on stderr (or in the output).
            detail = outcome.stderr_tail.strip()[-500:] or f"bwrap exited {outcome.exit_code}"
            raise AgentStartError(f"the sandbox could not start: {detail}")
        if ending is not None:
            code = -int(ending["signal"]) if "signal" in ending else int(ending["exit"])
            outcome = dataclasses.replace(outcome, exit_code=code)
        return Confined(outcome=outcome, limit=self._limit(outcome, lines))

    def _limit(self, outcome: ProcessOutcome, lines: list[dict[str, Any]]) -> str | None:
        policy = self.policy
        for line in lines:
            if line.get("limit") == "memory":
                return (
                    f"memory limit of {policy.max_memory_mb} MB reached: the sandbox's "
                    "processes were stopped"
                )
        for line in lines:
            if line.get("limit") == "processes":
                stopped = any(other.get("stopped") for other in lines if "limit" in other)
                return f"process limit of {policy.max_processes} reached" + (
                    ": the sandbox's processes were stopped" if stopped else ""
                )
        # Killed by SIGXFSZ, or (a program that ignores it, as Python does) failing with EFBIG.
        too_large = os.strerror(errno.EFBIG)  # "File too large"
        if outcome.exit_code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ) or (
            outcome.exit_code != 0 and too_large in outcome.stderr_tail
        ):
            return f"file size limit of {policy.max_file_mb} MB reached"
        return None


def remove_stale_socket_dirs() -> int:
    """Remove the egress socket directories of runners that are gone (killed mid-run: the
    sandbox's cleanup never ran); how many. Only this user's, and only those whose runner
    process no longer exists: other runners of the machine may be mid-run."""
    removed = 0
    for path in Path(_short_tmp()).glob(f"{SOCKET_DIR_PREFIX}*-*"):
        pid = path.name.removeprefix(SOCKET_DIR_PREFIX).partition("-")[0]
        try:
            if not pid.isdigit() or path.lstat().st_uid != os.getuid() or pid_alive(int(pid)):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def _short_tmp() -> str:
    """The temporary directory, unless its path leaves too little room for a socket name."""
    default = tempfile.gettempdir()
    return default if len(default) <= 48 else "/tmp"  # noqa: S108  # short by design


def _read_report(fd: int) -> list[dict[str, Any]]:
    """What inner.py wrote; everything in the sandbox is gone, so this never blocks long."""
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            data += chunk
    lines = []
    for raw in data.splitlines():
        with contextlib.suppress(ValueError):
            parsed = json.loads(raw)
            if isinstance(parsed, dict):
                lines.append(parsed)
    return lines
