"""The egress proxy against real sockets: an origin HTTP server and an echo server on
loopback, the proxy on a Unix socket, raw requests written by hand.

`Origin`, `Echo` and `running_proxy` are used by test_forward.py too.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from runner.sandbox.proxy import Allowlist, EgressProxy, Refusal, Resolver

WAIT = 5.0  # every wait on the network is bounded by this


@dataclass
class Origin:
    """An HTTP server on 127.0.0.1 that answers `hello from origin` and keeps every request
    head (and body, by Content-Length) it was sent."""

    heads: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> Origin:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            self.heads.append(head)
            length = next(
                (
                    int(line.split(":", 1)[1])
                    for line in head.split("\r\n")
                    if line.lower().startswith("content-length:")
                ),
                0,
            )
            self.bodies.append(await reader.readexactly(length))
            body = b"hello from origin"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@dataclass
class Echo:
    """A TCP server on 127.0.0.1 that sends back what it gets, then closes after EOF."""

    connections: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # a connection saw EOF
    port: int = 0
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> Echo:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while data := await reader.read(65_536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            self.ended.set()
            writer.close()


@dataclass
class Running:
    proxy: EgressProxy
    path: Path
    refusals: list[Refusal]
    connects: list[tuple[str, int]]


@asynccontextmanager
async def running_proxy(path: Path, *patterns: str, **options: Any) -> AsyncIterator[Running]:
    """An EgressProxy for `patterns` on the Unix socket `path`, recording what it reports."""
    refusals: list[Refusal] = []
    connects: list[tuple[str, int]] = []
    proxy = EgressProxy(
        Allowlist(patterns),
        refusals.append,
        lambda host, port: connects.append((host, port)),
        **options,
    )
    async with proxy:
        await proxy.start(path)
        yield Running(proxy, path, refusals, connects)


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    async with Origin() as server:
        yield server


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    async with Echo() as server:
        yield server


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "proxy.sock"


async def exchange(path: Path, request: bytes) -> bytes:
    """Send `request` to the proxy and read its answer to the end."""
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()


async def tunnel(
    path: Path, target: str
) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    """CONNECT to `target`: the answer's head, and the open connection."""
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    return head, reader, writer


def connect(target: str) -> bytes:
    return f"CONNECT {target} HTTP/1.1\r\n\r\n".encode()


def status(answer: bytes) -> str:
    return answer.split(b"\r\n", 1)[0].decode()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LocalHost."])
async def test_connect_to_an_allowed_target_tunnels_both_ways(
    sock: Path, echo: Echo, host: str
) -> None:
    async with running_proxy(sock, f"localhost:{echo.port}", f"127.0.0.1:{echo.port}") as run:
        head, reader, writer = await tunnel(sock, f"{host}:{echo.port}")
        try:
            assert head == b"HTTP/1.1 200 Connection Established\r\n\r\n"
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"ping"
            writer.write_eof()  # half-closed: the echo's answer still comes back, then EOF
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
        finally:
            writer.close()
    assert run.connects == [(host.lower().rstrip("."), echo.port)]
    assert run.refusals == []


async def test_a_tunnel_streams_more_than_its_buffers(sock: Path, echo: Echo) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB, far beyond every buffer on the way
    async with running_proxy(sock, f"127.0.0.1:{echo.port}"):
        _, reader, writer = await tunnel(sock, f"127.0.0.1:{echo.port}")
        try:

            async def send() -> None:
                writer.write(payload)
                await writer.drain()
                writer.write_eof()

            sending = asyncio.create_task(send())
            received = await asyncio.wait_for(reader.read(), WAIT)
            await sending
        finally:
            writer.close()
    assert received == payload


async def test_connect_to_a_disallowed_target_is_refused_and_reported(
    sock: Path, echo: Echo
) -> None:
    async with running_proxy(sock, "127.0.0.1:1", "example.com") as run:
        head, reader, writer = await tunnel(sock, f"127.0.0.1:{echo.port}")
        body = await asyncio.wait_for(reader.read(), WAIT)
        writer.close()
    assert status(head) == "HTTP/1.1 403 Forbidden"
    assert body.decode() == (
        f"openase sandbox: egress to 127.0.0.1:{echo.port} is not allowed for this run "
        "(add it to the workflow's network.allow)\n"
    )
    assert run.refusals == [Refusal("127.0.0.1", echo.port, "CONNECT", "not in the allowlist")]
    assert echo.connections == 0


async def test_absolute_form_reaches_the_origin_in_origin_form(sock: Path, origin: Origin) -> None:
    request = (
        f"GET http://127.0.0.1:{origin.port}/hello?x=1 HTTP/1.1\r\n"
        "Host: elsewhere.example\r\n"
        "User-Agent: test\r\n"
        "Proxy-Connection: keep-alive\r\n"
        "Proxy-Authorization: Basic dTpw\r\n"
        "Connection: keep-alive, X-Hop\r\n"
        "X-Hop: 1\r\n\r\n"
    )
    async with running_proxy(sock, f"127.0.0.1:{origin.port}") as run:
        answer = await exchange(sock, request.encode())
    assert status(answer) == "HTTP/1.1 200 OK"
    assert answer.endswith(b"\r\n\r\nhello from origin")
    assert origin.heads == [
        "GET /hello?x=1 HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{origin.port}\r\n"  # the checked target's, never the client's own
        "User-Agent: test\r\n"
        "Connection: close\r\n\r\n"
    ]
    assert run.connects == [("127.0.0.1", origin.port)]


async def test_a_request_body_passes_through(sock: Path, origin: Origin) -> None:
    body = b"x" * 200_000
    request = (
        f"POST http://localhost:{origin.port} HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    async with running_proxy(sock, f"localhost:{origin.port}"):
        answer = await exchange(sock, request)
    assert status(answer) == "HTTP/1.1 200 OK"
    assert origin.heads[0].startswith("POST / HTTP/1.1\r\n")
    assert origin.bodies == [body]


async def test_a_disallowed_absolute_form_request_is_refused(sock: Path, origin: Origin) -> None:
    async with running_proxy(sock, f"127.0.0.1:{origin.port}") as run:
        answer = await exchange(sock, b"PUT http://example.com/x HTTP/1.1\r\n\r\n")
    assert status(answer) == "HTTP/1.1 403 Forbidden"
    assert b"egress to example.com:80 is not allowed" in answer
    assert run.refusals == [Refusal("example.com", 80, "PUT", "not in the allowlist")]
    assert origin.heads == []


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("user@127.0.0.1", "user info in the host"),
        ("", "not a host name or an IPv4 address"),
        ("127.1", "not a host name or an IPv4 address"),  # resolvers read it as 127.0.0.1
        ("[::1]", "not a host name or an IPv4 address"),
    ],
)
async def test_a_connect_to_an_unnameable_host_is_refused(
    sock: Path, echo: Echo, target: str, reason: str
) -> None:
    async with running_proxy(sock, f"127.0.0.1:{echo.port}") as run:
        answer = await exchange(sock, connect(f"{target}:{echo.port}"))
    assert status(answer) == "HTTP/1.1 403 Forbidden"
    assert run.refusals == [Refusal(target, echo.port, "CONNECT", reason)]
    assert echo.connections == 0


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /path HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # origin-form: no proxy target
        b"NONSENSE\r\n\r\n",
        b"GET  http://127.0.0.1/ HTTP/1.1\r\n\r\n",
        b"GET http://127.0.0.1/ HTTP/2\r\n\r\n",
        b"GET https://127.0.0.1/ HTTP/1.1\r\n\r\n",  # https goes through CONNECT
        b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n",  # no port
        b"CONNECT 127.0.0.1:65536 HTTP/1.1\r\n\r\n",
        b"CONNECT 127.0.0.1:0 HTTP/1.1\r\n\r\n",
        b"GET http://127.0.0.1:x/ HTTP/1.1\r\n\r\n",
        b"GET http://127.0.0.1/ HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET http://127.0.0.1/ HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n",
        b"\r\n\r\n",
    ],
)
async def test_a_malformed_request_gets_400(sock: Path, request_head: bytes) -> None:
    async with running_proxy(sock, "127.0.0.1") as run:
        answer = await exchange(sock, request_head)
    assert status(answer) == "HTTP/1.1 400 Bad Request"
    assert answer.split(b"\r\n\r\n", 1)[1].startswith(b"openase sandbox: ")
    assert run.refusals == []
    assert run.connects == []


async def test_a_head_over_64_kb_gets_400(sock: Path) -> None:
    head = b"GET http://127.0.0.1/ HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    async with running_proxy(sock, "127.0.0.1"):
        answer = await exchange(sock, head)
    assert status(answer) == "HTTP/1.1 400 Bad Request"
    assert b"over 65536 bytes" in answer


async def test_no_request_in_time_gets_400(sock: Path) -> None:
    async with running_proxy(sock, "127.0.0.1", request_timeout=0.2):
        answer = await exchange(sock, b"GET http://127.0.0.1/ HTTP/1.1\r\n")  # never ends
    assert status(answer) == "HTTP/1.1 400 Bad Request"
    assert b"no request within 0.2 s" in answer


async def test_an_allowed_target_that_is_down_gets_502(sock: Path) -> None:
    with socket.socket() as bound:  # bound, never listening: connecting is refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        async with running_proxy(sock, f"127.0.0.1:{port}") as run:
            answer = await exchange(sock, connect(f"127.0.0.1:{port}"))
    assert status(answer) == "HTTP/1.1 502 Bad Gateway"
    assert f"could not connect to 127.0.0.1:{port}".encode() in answer
    assert answer.count(b"\n", answer.index(b"\r\n\r\n") + 4) == 1  # a one-line reason
    assert run.refusals == []
    assert run.connects == []


def resolving_to(address: str) -> Resolver:
    async def resolve(host: str, port: int) -> list[tuple[int, str]]:
        return [(socket.AF_INET, address)]

    return resolve


async def test_a_wildcard_never_reaches_a_local_address(sock: Path, echo: Echo) -> None:
    """Whoever controls a subdomain's DNS could otherwise point it at the runner itself."""
    pattern = f"*.example.test:{echo.port}"
    async with running_proxy(sock, pattern, resolve=resolving_to("127.0.0.1")) as run:
        answer = await exchange(sock, connect(f"api.example.test:{echo.port}"))
    assert status(answer) == "HTTP/1.1 403 Forbidden"
    assert b"api.example.test resolves to the local address 127.0.0.1" in answer
    assert run.refusals == [
        Refusal(
            "api.example.test",
            echo.port,
            "CONNECT",
            "api.example.test resolves to the local address 127.0.0.1",
        )
    ]
    assert echo.connections == 0


async def test_an_exact_name_may_be_local_and_is_connected_as_resolved(
    sock: Path, echo: Echo
) -> None:
    # The network guard would refuse to resolve api.example.test a second time.
    pattern = f"api.example.test:{echo.port}"
    async with running_proxy(sock, pattern, resolve=resolving_to("127.0.0.1")) as run:
        head, _, writer = await tunnel(sock, f"api.example.test:{echo.port}")
        writer.close()
    assert status(head) == "HTTP/1.1 200 Connection Established"
    assert run.connects == [("api.example.test", echo.port)]


async def test_close_tears_down_an_open_tunnel(sock: Path, echo: Echo) -> None:
    async with running_proxy(sock, f"127.0.0.1:{echo.port}") as run:
        _, reader, writer = await tunnel(sock, f"127.0.0.1:{echo.port}")
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"ping"
        await asyncio.wait_for(run.proxy.close(), WAIT)
        try:
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
        except ConnectionResetError:
            pass  # as good as EOF: the tunnel is gone
        finally:
            writer.close()
        await asyncio.wait_for(echo.ended.wait(), WAIT)  # the target's end is closed too
    assert not await asyncio.to_thread(sock.exists)  # close() removed the socket


async def test_connections_beyond_the_limit_get_503(sock: Path, echo: Echo) -> None:
    async with running_proxy(sock, f"127.0.0.1:{echo.port}", max_connections=1):
        head, _, writer = await tunnel(sock, f"127.0.0.1:{echo.port}")
        try:
            answer = await exchange(sock, connect(f"127.0.0.1:{echo.port}"))
        finally:
            writer.close()
    assert status(head) == "HTTP/1.1 200 Connection Established"
    assert status(answer) == "HTTP/1.1 503 Service Unavailable"


async def test_a_failing_observer_does_not_cost_the_answer(sock: Path) -> None:
    def broken(refusal: Refusal) -> None:
        raise RuntimeError("observer bug")

    proxy = EgressProxy(Allowlist(), broken)
    async with proxy:
        await proxy.start(sock)
        with capture_logs() as logs:
            answer = await exchange(sock, b"CONNECT example.com:443 HTTP/1.1\r\n\r\n")
    assert status(answer) == "HTTP/1.1 403 Forbidden"
    assert [log["event"] for log in logs] == ["egress_proxy_callback_failed"]


@pytest.mark.parametrize(
    ("patterns", "host", "port", "allowed"),
    [
        (["example.com"], "example.com", 443, True),
        (["example.com"], "example.com", 80, True),
        (["example.com"], "example.com", 8080, False),  # no port: 80 and 443 only
        (["example.com"], "EXAMPLE.com.", 443, True),
        (["Example.COM."], "example.com", 443, True),
        (["example.com"], "api.example.com", 443, False),
        (["example.com"], "example.com.evil.test", 443, False),
        (["example.com:8443"], "example.com", 8443, True),
        (["example.com:8443"], "example.com", 443, False),
        (["*.example.com"], "api.example.com", 443, True),
        (["*.example.com"], "a.b.example.com", 80, True),
        (["*.example.com"], "example.com", 443, False),  # the domain itself is not below it
        (["*.example.com"], "notexample.com", 443, False),
        (["*.example.com"], "api.example.com.evil.test", 443, False),
        (["*.example.com:9000"], "api.example.com", 9000, True),
        (["*.example.com:9000"], "api.example.com", 443, False),
        (["127.0.0.1:8000"], "127.0.0.1", 8000, True),
        (["127.0.0.1:8000"], "127.0.0.2", 8000, False),
        (["127.0.0.1:8000"], "127.1", 8000, False),
        (["127.0.0.1:8000"], "localhost", 8000, False),  # IP literals match only exactly
        (["10.0.0.1"], "10.0.0.1", 443, True),
        (["a.test", "b.test:1"], "b.test", 1, True),
        ([], "example.com", 443, False),
        (["example.com"], "", 443, False),
        (["example.com"], "user@example.com", 443, False),
    ],
)
def test_allowlist_rules(patterns: list[str], host: str, port: int, allowed: bool) -> None:
    assert Allowlist(patterns).allows(host, port) is allowed


def test_an_exact_rule_wins_over_a_wildcard() -> None:
    allowlist = Allowlist(["*.example.com", "api.example.com"])
    rule = allowlist.match("API.example.com", 443)
    assert rule is not None
    assert rule.pattern == "api.example.com"
    assert not rule.wildcard


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "is not a host name or an IPv4 address"),
        ("*", "'*' may only be a whole first label"),
        ("*.", "is not a host name or an IPv4 address"),
        ("a.*.com", "'*' may only be a whole first label"),
        ("*.*.example.com", "'*' may only be a whole first label"),
        ("*example.com", "'*' may only be a whole first label"),
        ("example.com:0", "the port must be 1 to 65535"),
        ("example.com:65536", "the port must be 1 to 65535"),
        ("example.com:https", "the port must be 1 to 65535"),
        ("example.com:", "the port must be 1 to 65535"),
        ("example.com:80:81", "the port must be 1 to 65535"),
        ("*.10.0.0.1", "an IP address takes no wildcard"),
        ("127.1", "is not a host name or an IPv4 address"),
        ("999.0.0.1", "is not a host name or an IPv4 address"),
        ("[::1]:443", "IPv6 addresses are not supported"),
        ("under_score.example.com", "is not a host name or an IPv4 address"),
        ("-lead.example.com", "is not a host name or an IPv4 address"),
        ("a..example.com", "is not a host name or an IPv4 address"),
        ("exa mple.com", "is not a host name or an IPv4 address"),
        ("\u212aelvin.example.com", "is not a host name or an IPv4 address"),
        ("https://example.com", "the port must be 1 to 65535"),
    ],
)
def test_a_malformed_pattern_is_rejected_saying_which(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match="allow pattern") as raised:
        Allowlist(["example.com", pattern])
    assert repr(pattern) in str(raised.value)
    assert message in str(raised.value)
