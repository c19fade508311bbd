"""githubkit sending every request through one pooled httpx client (keep-alive connections).

Outside `async with`, githubkit builds an httpx client per request, so each request paid a
new TCP and TLS handshake (about 67 ms against api.github.com) and, before that, loading
certifi's CA bundle into a new SSL context (about 45 ms of CPU that blocks the event loop;
`make bench-github` shows it). Entering githubkit's context does not help a worker: it
keeps the client in a ContextVar, which only the entering task and tasks started after it
see, not the jobs arq runs as their own tasks.

An httpx client's connections belong to the event loop that opened them. So the client is
opened lazily, inside the running loop, and a request from another loop (the CLI may call
`asyncio.run` more than once in a process) opens a new client rather than touch connections
of a loop that is closed or not running here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import httpx
import structlog
from githubkit import GitHub
from githubkit.auth import UnauthAuthStrategy

log = structlog.get_logger(__name__)

# A job touches GitHub a few times at once at most; 20 connections leave room for a burst
# of effects without opening a connection per job. An idle connection is kept 30 s (httpx's
# default is 5 s), so requests of one ticket's steps seconds apart skip the handshake; one
# the server closed meanwhile is noticed before reuse (httpcore checks it is not readable).
LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=20, keepalive_expiry=30.0)


class PooledGitHub(GitHub[UnauthAuthStrategy]):
    """A githubkit `GitHub` whose requests share one httpx client per event loop.

    No auth strategy: the caller sends its own `Authorization` header (App JWT or token).
    """

    def __init__(
        self,
        *,
        base_url: str,
        user_agent: str,
        timeout: float,
        limits: httpx.Limits = LIMITS,
    ) -> None:
        # No HTTP cache (the shared client is a plain httpx one) and no automatic retries:
        # adapters/github/transport.py says why neither may be on.
        super().__init__(
            base_url=base_url,
            user_agent=user_agent,
            timeout=timeout,
            http_cache=False,
            auto_retry=False,
        )
        self._limits = limits
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    @asynccontextmanager
    async def get_async_client(self) -> AsyncGenerator[httpx.AsyncClient, None]:
        """The shared client (githubkit asks for one per request); never closed here."""
        yield self._shared_client()

    def _shared_client(self) -> httpx.AsyncClient:
        # No await between the check and the assignment: concurrent requests on one loop
        # cannot open two clients.
        loop = asyncio.get_running_loop()
        client = self._client
        if client is not None and not client.is_closed and self._client_loop is loop:
            return client
        if client is not None and not client.is_closed:
            # Its connections belong to another loop, which cannot close them from here;
            # they close when collected. Deps.close() calls aclose() before a loop ends.
            log.debug("github_http_client_left_on_other_loop")
        self._client = self._open()
        self._client_loop = loop
        return self._client

    def _open(self) -> httpx.AsyncClient:
        # githubkit's own defaults (base URL, headers, timeout, verify, proxy) plus limits.
        return httpx.AsyncClient(
            **self._get_client_defaults(),
            limits=self._limits,
            transport=self.config.async_transport,
            event_hooks=self.config.async_event_hooks,
        )

    async def aclose(self) -> None:
        """Close the shared client's connections; the next request opens a new client."""
        client, loop = self._client, self._client_loop
        self._client = self._client_loop = None
        if client is None or client.is_closed:
            return
        if loop is asyncio.get_running_loop():
            await client.aclose()
        else:
            log.debug("github_http_client_left_on_other_loop")
