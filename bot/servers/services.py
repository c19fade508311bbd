"""Where PostgreSQL and Redis are: the configured URLs, or servers embedded in the data dir.

Production commands (`serve`, `worker`, `migrate`) need the URLs; only `openase up` starts
embedded servers, and `openase sync` may borrow the ones a running `up` started.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import structlog

from bot.errors import ConfigError
from bot.servers.embedded import EmbeddedPostgres, EmbeddedRedis
from bot.settings import Settings

log = structlog.get_logger(__name__)

SECRET_FILE = "webhook-secret"  # noqa: S105  # a file name, not a secret
LOCK_FILE = "up.lock"


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str


def postgres_dir(settings: Settings) -> Path:
    return settings.data_dir / "postgres"


def redis_dir(settings: Settings) -> Path:
    return settings.data_dir / "redis"


def require_database_url(settings: Settings) -> str:
    if settings.database_url is None:
        raise ConfigError(
            "OPENASE_DATABASE_URL is not set: this command needs an external PostgreSQL "
            "(postgresql://user:password@host:5432/db); only `openase up` embeds one"
        )
    return settings.database_url


def _missing(database_url: str | None, redis_url: str | None) -> str:
    names = [
        name
        for name, value in (
            ("OPENASE_DATABASE_URL", database_url),
            ("OPENASE_REDIS_URL", redis_url),
        )
        if value is None
    ]
    return " and ".join(names) + (" is" if len(names) == 1 else " are")


def configured_urls(settings: Settings) -> ServiceUrls:
    """Both URLs, or a ConfigError naming every missing variable."""
    database_url, redis_url = settings.database_url, settings.redis_url
    if database_url is None or redis_url is None:
        raise ConfigError(
            f"{_missing(database_url, redis_url)} not set: this command needs external "
            "PostgreSQL and Redis; only `openase up` embeds them"
        )
    return ServiceUrls(database_url, redis_url)


def running_urls(settings: Settings) -> ServiceUrls:
    """The configured URLs, falling back to the embedded servers of a running `openase up`."""
    database_url = settings.database_url or EmbeddedPostgres.running_url(postgres_dir(settings))
    redis_url = settings.redis_url or EmbeddedRedis.running_url(redis_dir(settings))
    if database_url is None or redis_url is None:
        raise ConfigError(
            f"{_missing(database_url, redis_url)} not set, and no `openase up` is running with "
            f"data dir {settings.data_dir} (OPENASE_DATA_DIR): set the URLs or start "
            "`openase up` first"
        )
    return ServiceUrls(database_url, redis_url)


@dataclass
class EmbeddedServices:
    """Starts an embedded server for each URL that is not configured; `stop()` stops them.

    A lock on the data dir keeps a second `up` from starting there: it would kill the first
    one's Redis as stale.
    """

    settings: Settings
    postgres: EmbeddedPostgres | None = field(default=None, init=False)
    redis: EmbeddedRedis | None = field(default=None, init=False)
    _lock: IO[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> ServiceUrls:
        settings = self.settings
        if settings.database_url is None or settings.redis_url is None:
            self._lock_data_dir()
        try:
            database_url = settings.database_url
            if database_url is None:
                self.postgres = EmbeddedPostgres(postgres_dir(settings))
                database_url = self.postgres.start()
                log.info("embedded_postgres_started", directory=str(self.postgres.directory))
            redis_url = settings.redis_url
            if redis_url is None:
                self.redis = EmbeddedRedis(redis_dir(settings), persist=True)
                redis_url = self.redis.start()
                log.info("embedded_redis_started", directory=str(self.redis.directory))
        except BaseException:
            self.stop()
            raise
        return ServiceUrls(database_url, redis_url)

    def _lock_data_dir(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        lock = (self.settings.data_dir / LOCK_FILE).open("wb")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ConfigError(
                f"another `openase up` is already running with data dir {self.settings.data_dir} "
                "(OPENASE_DATA_DIR)"
            ) from None
        self._lock = lock

    def stop(self) -> None:
        """Stop what we started, Redis first (Postgres holds the system of record)."""
        redis, self.redis = self.redis, None
        postgres, self.postgres = self.postgres, None
        try:
            if redis is not None:
                redis.stop()
                log.info("embedded_redis_stopped")
        finally:
            if postgres is not None:
                postgres.stop()
                log.info("embedded_postgres_stopped")
            if self._lock is not None:
                self._lock.close()  # closing the file releases the flock
                self._lock = None


def webhook_secret(data_dir: Path) -> tuple[str, Path]:
    """The generated webhook secret kept in the data dir (created on first use, mode 0600)."""
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    while True:
        with contextlib.suppress(FileNotFoundError):
            existing = path.read_text().strip()
            if existing:
                # pgserver widens the data dir's permissions for its user; keep the secret ours.
                path.chmod(0o600)
                return existing, path
            path.unlink()  # emptied by hand: make a new one
        value = secrets.token_urlsafe(32)
        # Written aside, then linked into place: the file appears complete or not at all, and
        # of two processes starting at once, one secret wins and both use it.
        aside = data_dir / f".{SECRET_FILE}.{os.getpid()}"
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(value + "\n")
        try:
            os.link(aside, path)
        except FileExistsError:
            continue  # another process won; read its secret
        finally:
            aside.unlink()
        return value, path
