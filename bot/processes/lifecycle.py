"""What every long-running `openase` process shares: its event loop with signals wired up
(the first SIGINT/SIGTERM asks for a graceful stop, the second cuts the waits short) and
the listening socket, bound before anything else so that a taken port fails fast."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from bot.errors import ConfigError

log = structlog.get_logger(__name__)

# Seconds in-flight requests and jobs get to finish after a stop is asked for.
SHUTDOWN_GRACE = 10.0
LISTEN_BACKLOG = 2048


class Shutdown:
    """SIGINT/SIGTERM: the first asks for a graceful stop, the second cuts the waits short."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.requested.is_set():
            log.warning("shutdown_forced", signal=sig.name)
            self.forced.set()
        else:
            log.info("shutdown_requested", signal=sig.name)
            self.requested.set()


async def first_of(*waits: Awaitable[Any], within: float | None = None) -> None:
    """Wait until the first of `waits` finishes (or `within` seconds pass); cancel the others
    (a task among them too: wrap one that must go on in `asyncio.wait`)."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def run(main: Callable[[Shutdown], Awaitable[int]]) -> int:
    """Run `main` on a fresh event loop (uvloop when installed) with signals wired up."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):  # optional: uvicorn[standard] brings it
        import uvloop

        loop_factory = uvloop.new_event_loop

    async def supervised() -> int:
        shutdown = Shutdown()
        shutdown.install(asyncio.get_running_loop())
        return await main(shutdown)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(supervised())


def listen(host: str, port: int) -> socket.socket:
    """Bind before anything else starts, so a taken port fails fast with a clear message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        # getaddrinfo errors (an unknown host name) carry negative codes os.strerror lacks.
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or exc
        raise ConfigError(
            f"cannot listen on {host}:{port} (OPENASE_HOST, OPENASE_PORT): {reason}"
        ) from None


def loopback(host: str) -> str:
    """The address to reach a server bound to `host` from this machine."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104  # compared, not bound


def base_url(host: str, port: int) -> str:
    """A URL for this machine's browser: a wildcard bind is reached through loopback."""
    shown = loopback(host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"
