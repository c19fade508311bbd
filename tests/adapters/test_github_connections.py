"""The GitHub App client keeps its connections open between requests (keep-alive pooling).

A real HTTP server on 127.0.0.1 counts the TCP connections it accepts: that is what the
pool saves (a TCP and TLS handshake each), and what respx, which answers before any
connection is made, cannot show.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import respx

from adapters.github.client import GitHubApp
from adapters.github.pooled import LIMITS
from bot.registry import Clients
from bot.settings import Settings
from tests.support.helpers import test_private_key as app_private_key


class CountingServer:
    """Answers every GET with `{}` over HTTP/1.1 keep-alive; counts connections and requests."""

    def __init__(self, delay: float = 0.0) -> None:
        self.connections = 0
        self.closed = 0
        self.requests = 0
        self._lock = threading.Lock()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive unless the client closes
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per answer

            def setup(self) -> None:
                super().setup()
                with counter._lock:
                    counter.connections += 1

            def finish(self) -> None:  # the client closed the connection
                super().finish()
                with counter._lock:
                    counter.closed += 1

            def do_GET(self) -> None:
                with counter._lock:
                    counter.requests += 1
                time.sleep(delay)
                body = json.dumps({}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # no request lines on the test output

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True  # a kept-alive connection must not block close
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_closed(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.closed < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.closed} of {count} connections closed")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def github_api() -> None:
    """No respx here (it replaces conftest's fake): these tests need real connections."""


@pytest.fixture
def server() -> Iterator[CountingServer]:
    server = CountingServer()
    yield server
    server.stop()


def _app(url: str) -> GitHubApp:
    return GitHubApp(api_url=url, app_id=4242, private_key=app_private_key())


async def test_sequential_requests_share_one_connection(server: CountingServer) -> None:
    app = _app(server.url)
    for _ in range(10):
        response = await app.request("GET", "/app", installation_id=None)
        assert response.json() == {}
    await app.aclose()
    assert server.requests == 10
    assert server.connections == 1


async def test_a_client_per_request_would_open_a_connection_each(server: CountingServer) -> None:
    """The counter can see the difference: closing after each request costs a connection."""
    app = _app(server.url)
    for _ in range(3):
        await app.request("GET", "/app", installation_id=None)
        await app.aclose()
    assert server.connections == 3


async def test_aclose_closes_the_connection_and_a_later_request_reopens(
    server: CountingServer,
) -> None:
    app = _app(server.url)
    await app.request("GET", "/app", installation_id=None)
    await app.aclose()
    server.wait_closed(1)  # the server saw the connection end
    await app.aclose()  # twice is harmless
    response = await app.request("GET", "/app", installation_id=None)
    assert response.status_code == 200
    assert server.connections == 2
    await app.aclose()
    server.wait_closed(2)


async def test_concurrent_requests_stay_within_the_pool_limit() -> None:
    slow = CountingServer(delay=0.05)
    try:
        app = _app(slow.url)
        requests = [app.request("GET", "/app", installation_id=None) for _ in range(60)]
        answers = await asyncio.gather(*requests)
        assert {answer.status_code for answer in answers} == {200}
        assert LIMITS.max_connections is not None
        assert 1 < slow.connections <= LIMITS.max_connections
        await app.aclose()
    finally:
        slow.stop()


async def test_a_client_opened_before_respx_started_is_still_mocked(
    server: CountingServer,
) -> None:
    app = _app(server.url)
    await app.request("GET", "/app", installation_id=None)  # opens the pooled client
    with respx.mock(assert_all_mocked=True) as router:
        route = router.get(f"{server.url}/app").respond(json={"mocked": True})
        response = await app.request("GET", "/app", installation_id=None)
    assert response.json() == {"mocked": True}
    assert route.call_count == 1
    assert server.requests == 1  # respx answered; nothing reached the server
    await app.request("GET", "/app", installation_id=None)
    assert (server.requests, server.connections) == (2, 1)  # the same client and connection
    await app.aclose()


def test_each_event_loop_gets_its_own_client(server: CountingServer) -> None:
    """The CLI may run several loops in one process: none reuses a dead loop's connections."""
    app = _app(server.url)  # built outside any loop

    async def ask(close: bool) -> int:
        status = (await app.request("GET", "/app", installation_id=None)).status_code
        if close:
            await app.aclose()
        return status

    with warnings.catch_warnings():
        # The first loop ends without aclose(): its connection is left to the collector,
        # which warns about the unclosed socket. Deps.close() avoids that in the product.
        warnings.simplefilter("ignore", ResourceWarning)
        assert asyncio.run(ask(close=False)) == 200
        assert asyncio.run(ask(close=True)) == 200  # would fail on the dead loop's connection
        gc.collect()
    assert (server.requests, server.connections) == (2, 2)


async def test_closing_the_process_clients_closes_their_connections(
    server: CountingServer, settings: Settings
) -> None:
    clients = Clients()
    local = settings.model_copy(update={"github_api_url": server.url})
    try:
        await clients.github_app(local).request("GET", "/app", installation_id=None)
        await clients.aclose()
        server.wait_closed(1)
        # Still cached (tokens, limits): it reopens on the next request.
        await clients.github_app(local).request("GET", "/app", installation_id=None)
        assert server.connections == 2
    finally:
        await clients.aclose()
