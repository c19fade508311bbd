"""Outages of the two stores a process depends on, PostgreSQL and Redis: noticed where they
happen (a job, a request, the worker's poll), said once in the log when one begins and once
when it ends (with how long it lasted), and watched until it ends.

Everything the process does during an outage fails fast and is taken up again afterwards
from what PostgreSQL holds (the README, "Outages"): a webhook is answered 503 (GitHub redelivers it
through recovery) or stored and swept later, a job leaves its row pending, a cron does
nothing. So nothing here retries work; it only tells the process that a store is away and
when it is back (the `on_back` callbacks: the worker sweeps at once then).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import asyncpg
import structlog
from redis import exceptions as redis_errors
from sqlalchemy import exc as sql_errors

# Shared with the runner: a cancellation some client turned into an error must still stop.
from runner.redis_outage import stop_if_cancelled

log = structlog.get_logger(__name__)

Store = Literal["postgres", "redis"]
Probe = Callable[[], Awaitable[object]]
OnBack = Callable[[Store, float], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    """Exponential delays with jitter: about `first` seconds, doubling, at most `cap`."""

    first: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int) -> float:
        """The wait before retry `attempt` (0 for the first): half fixed, half random, so
        processes that lost the same server do not come back in step."""
        ceiling = min(self.cap, self.first * 2.0 ** min(attempt, 32))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311  # jitter, not a secret


# How often a store that is away is asked again: at first often, then at most every 4 s,
# so that it is found back within that long of its return (the README promises 10 s).
WATCH_BACKOFF = Backoff(first=0.5, cap=4.0)
PROBE_TIMEOUT = 2.0

_REDIS_DOWN = (redis_errors.ConnectionError, redis_errors.TimeoutError)
# redis-py raises these as ConnectionErrors too, but they are a wrong setting, not an outage.
_REDIS_REFUSED = (redis_errors.AuthenticationError, redis_errors.AuthorizationError)
_POSTGRES_DOWN = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)


def store_down(error: BaseException) -> Store | None:
    """Which store `error` says is unreachable (None: some other failure, a real bug or a
    refusal, which must surface as such)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _REDIS_DOWN) and not isinstance(current, _REDIS_REFUSED):
            return "redis"
        if isinstance(current, _POSTGRES_DOWN) or _closed_connection(current):
            return "postgres"
        if isinstance(current, sql_errors.DBAPIError) and current.connection_invalidated:
            return "postgres"
        if isinstance(current, sql_errors.DBAPIError) and (
            isinstance(current.orig, (*_POSTGRES_DOWN, OSError)) or _closed_connection(current.orig)
        ):
            return "postgres"
        if isinstance(current, (ConnectionError, TimeoutError, OSError)):
            found = _by_origin(current)
            if found is not None:
                return found
        current = current.__cause__ or current.__context__
    return None


def _closed_connection(error: BaseException | None) -> bool:
    """asyncpg's InterfaceError also reports misuse (a bug); only a closed connection is an
    outage."""
    return isinstance(error, asyncpg.InterfaceError) and "closed" in str(error)


def _by_origin(error: OSError) -> Store | None:
    """A bare socket error (asyncpg lets its connect errors through unwrapped): the store
    whose client code raised it, read off the traceback."""
    frame = error.__traceback__
    while frame is not None:
        path = frame.tb_frame.f_code.co_filename
        if "/asyncpg/" in path:
            return "postgres"
        if "/redis/" in path:
            return "redis"
        frame = frame.tb_next
    return None


@dataclass
class _Away:
    since: float  # time.monotonic()
    error: str
    back: asyncio.Event = field(default_factory=asyncio.Event)
    # A relapse: connections opened before the store came back fail one by one for a moment
    # after (a partition healed under them); that is the same outage, not worth two lines.
    quiet: bool = False


# How long after a store came back a new failure counts as a relapse of the same outage.
RELAPSE_SECONDS = 5.0


@dataclass
class _Failing:
    since: float  # time.monotonic()
    failures: int


@dataclass
class ServiceFailures:
    """Remote services (GitHub, one installation at a time; Linear; Jira) failing in a row:
    said once when the failures begin and once when a request succeeds again, however many
    requests failed in between; the count sets how long the caller backs off."""

    _failing: dict[str, _Failing] = field(default_factory=dict)

    def failed(self, service: str, error: str) -> int:
        """One more failure of `service`; how many in a row now."""
        failing = self._failing.get(service)
        if failing is None:
            failing = self._failing[service] = _Failing(time.monotonic(), 0)
            log.warning("service_unavailable", service=service, error=error)
        failing.failures += 1
        return failing.failures

    def succeeded(self, service: str) -> None:
        failing = self._failing.pop(service, None)
        if failing is not None:
            seconds = round(time.monotonic() - failing.since, 1)
            log.info("service_back", service=service, seconds=seconds, failures=failing.failures)


@dataclass
class Outages:
    """The process's view of its stores (which are away, since when) and of the remote
    services it writes to (`services`)."""

    probes: dict[Store, Probe] = field(default_factory=dict)
    on_back: list[OnBack] = field(default_factory=list)
    services: ServiceFailures = field(default_factory=ServiceFailures)
    # Says nothing of the stores' comings and goings: another view of the same process
    # says it (the engine's clock, bot/processes/engine_clock.py, beside the worker's).
    quiet: bool = False
    _away: dict[Store, _Away] = field(default_factory=dict)
    _watchers: dict[Store, asyncio.Task[None]] = field(default_factory=dict)
    _back_at: dict[Store, float] = field(default_factory=dict)

    def away(self) -> dict[Store, float]:
        """Each store that is away, with the seconds it has been."""
        now = time.monotonic()
        return {store: now - away.since for store, away in self._away.items()}

    def is_away(self, store: Store) -> bool:
        return store in self._away

    async def until_back(self, store: Store) -> None:
        """Return once `store` answers again (at once when it is not away)."""
        away = self._away.get(store)
        if away is not None:
            await away.back.wait()

    def noticed(self, error: BaseException) -> Store | None:
        """Record `error` if it says a store is away (logged once per outage, and watched
        until the store answers again); which store, or None for any other error."""
        store = store_down(error)
        if store is not None:
            self.went_away(store, type(error).__name__)
        return store

    def went_away(self, store: Store, error: str) -> None:
        """`store` did not answer (`error` names how): the outage begins, unless it had."""
        if store in self._away:
            return
        now = time.monotonic()
        relapse = now - self._back_at.get(store, -RELAPSE_SECONDS) < RELAPSE_SECONDS
        self._away[store] = _Away(now, error, quiet=relapse or self.quiet)
        if relapse or self.quiet:
            log.debug("store_unavailable_again", store=store, error=error)
        else:
            log.warning("store_unavailable", store=store, error=error)
        self._watch(store)

    async def check(self) -> dict[Store, BaseException]:
        """Ask every store once: those that are away start an outage (and are watched);
        returned are the errors that are not outages (a wrong password, a missing
        database), which waiting will not cure."""
        refusals: dict[Store, BaseException] = {}
        for store, probe in self.probes.items():
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await probe()
            except TimeoutError:
                self.went_away(store, "TimeoutError")
            except Exception as error:
                if self.noticed(error) is None:
                    refusals[store] = error
            else:
                await self.back(store)
        return refusals

    def _watch(self, store: Store) -> None:
        probe = self.probes.get(store)
        if probe is None or store in self._watchers:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._until_back(store, probe))
        except RuntimeError:  # no loop (a synchronous caller): the next async caller watches
            return
        self._watchers[store] = task
        task.add_done_callback(lambda _: self._watchers.pop(store, None))

    async def _until_back(self, store: Store, probe: Probe) -> None:
        attempt = 0
        while True:
            stop_if_cancelled()
            await asyncio.sleep(WATCH_BACKOFF.delay(attempt))
            attempt += 1
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await probe()
            except Exception as error:  # whatever the store says, it is not back yet
                stop_if_cancelled(error)
                if store_down(error) is None and not isinstance(error, (OSError, TimeoutError)):
                    log.warning("store_probe_failed", store=store, error=type(error).__name__)
                continue
            await self.back(store)
            return

    async def back(self, store: Store) -> None:
        """The store answers again: say so, and let the process catch up."""
        away = self._away.pop(store, None)
        if away is None:
            return
        away.back.set()
        self._back_at[store] = time.monotonic()
        seconds = round(time.monotonic() - away.since, 1)
        if not away.quiet:
            log.info("store_back", store=store, seconds=seconds)
        for callback in list(self.on_back):
            try:
                await callback(store, seconds)
            except Exception as error:  # catching up is best effort; the crons do it too
                log.warning("catch_up_failed", store=store, error=repr(error))

    async def aclose(self) -> None:
        for task in list(self._watchers.values()):
            task.cancel()
        for task in list(self._watchers.values()):
            try:
                await task
            except asyncio.CancelledError:
                continue
        self._watchers.clear()
