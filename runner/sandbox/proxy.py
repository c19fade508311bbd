"""The sandbox's only way out: an HTTP(S) proxy on a Unix socket that lets a run reach the
hosts its policy allows and nothing else.

The sandbox has no network of its own; a forwarder inside it (`forward.py`) relays its
loopback ports to this socket, which the runner serves with asyncio. Two kinds of request
are understood: `CONNECT host:port` (HTTPS and any other TCP, tunnelled as opaque bytes) and
absolute-form requests such as `GET http://host/path` (plain HTTP, passed on in origin-form
with `Connection: close`). Everything else is answered `400`.

Only the name the client asks for is checked, and it is resolved here, in the runner: the
sandbox cannot resolve names at all, so it cannot smuggle a target past the check by
address. A name matched by a wildcard (`*.example.com`) must not resolve to a loopback or
link-local address: whoever controls a subdomain's DNS would otherwise reach the runner's
own services (Redis) or a cloud metadata endpoint. Only an exact pattern names a local
server. What travels inside a CONNECT tunnel (TLS SNI, the inner Host) is not inspected.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog

log = structlog.get_logger(__name__)

CHUNK = 65_536  # one read; with the streams' own limits, a connection holds ~200 KB at most
MAX_HEAD_BYTES = 65_536
DEFAULT_PORTS = frozenset({80, 443})

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
# Connection-level headers: they describe the client's hop to us, not ours to the origin.
_HOP_HEADERS = frozenset({"connection", "proxy-connection", "keep-alive", "proxy-authorization"})
_ESTABLISHED = b"HTTP/1.1 200 Connection Established\r\n\r\n"


def normalise_host(host: str) -> str:
    """`host` lower-cased without its trailing dot; ValueError unless a DNS name or IPv4."""
    name = host.lower().removesuffix(".")
    labels = name.split(".")
    valid = host.isascii() and 0 < len(name) <= 253 and all(map(_LABEL.match, labels))
    # No top-level domain is numeric: such a name is meant as an address, and only the
    # dotted quad is accepted, since resolvers also read `127.1` or `0x7f.1` as 127.0.0.1.
    if not valid or (labels[-1].isdigit() and not _is_address(name)):
        raise ValueError(f"{host!r} is not a host name or an IPv4 address")
    return name


def _is_address(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Rule:
    """One parsed allow pattern."""

    pattern: str
    host: str  # normalised; for a wildcard, the domain below the `*.`
    wildcard: bool
    ports: frozenset[int]

    def matches(self, host: str, port: int) -> bool:
        """Whether the normalised `host` and `port` fall under this rule."""
        if port not in self.ports:
            return False
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host

    @classmethod
    def parse(cls, pattern: str) -> Rule:
        """`host`, `*.domain` or an IPv4 address, each optionally with `:PORT`."""
        if "[" in pattern:
            raise ValueError(f"allow pattern {pattern!r}: IPv6 addresses are not supported")
        host, colon, port_text = pattern.partition(":")
        ports = DEFAULT_PORTS
        if colon:
            port = _port(port_text)
            if port is None:
                raise ValueError(f"allow pattern {pattern!r}: the port must be 1 to 65535")
            ports = frozenset({port})
        wildcard = host.startswith("*.")
        if wildcard:
            host = host[2:]
        if "*" in host:
            raise ValueError(
                f"allow pattern {pattern!r}: '*' may only be a whole first label (*.example.com)"
            )
        try:
            name = normalise_host(host)
        except ValueError as error:
            raise ValueError(f"allow pattern {pattern!r}: {error}") from None
        if wildcard and _is_address(name):
            raise ValueError(f"allow pattern {pattern!r}: an IP address takes no wildcard")
        return cls(pattern, name, wildcard, ports)


class Allowlist:
    """The hosts a run may reach: `Allowlist(policy.allow)`; ValueError on a bad pattern."""

    __slots__ = ("rules",)

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.rules = tuple(Rule.parse(pattern) for pattern in patterns)

    def __repr__(self) -> str:
        return f"Allowlist({[rule.pattern for rule in self.rules]!r})"

    def match(self, host: str, port: int) -> Rule | None:
        """The rule allowing `host`:`port`, an exact one before any wildcard."""
        try:
            name = normalise_host(host)
        except ValueError:
            return None
        matching = [rule for rule in self.rules if rule.matches(name, port)]
        return min(matching, key=lambda rule: rule.wildcard, default=None)

    def allows(self, host: str, port: int) -> bool:
        return self.match(host, port) is not None


@dataclass(frozen=True)
class Refusal:
    """A request the proxy turned away (answered 403)."""

    host: str  # as the client spelled it, non-printable characters escaped
    port: int
    method: str
    reason: str


class _BadRequest(Exception):
    """Not a request this proxy serves: answered 400 with the message."""


class _Refused(Exception):
    def __init__(self, reason: str, text: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.text = text  # the 403 body when not the usual "add it to network.allow"


@dataclass(frozen=True)
class _Request:
    method: str
    host: str  # as the client wrote it; normalised once checked
    port: int
    version: str
    headers: tuple[tuple[str, str], ...]
    path: str | None  # origin-form for an absolute-form request; None for CONNECT


@dataclass(eq=False)
class _Session:
    """One client connection, and its upstream once connected."""

    client: asyncio.StreamWriter
    task: asyncio.Task[None] | None
    upstream: asyncio.StreamWriter | None = None

    def writers(self) -> list[asyncio.StreamWriter]:
        return [self.client] if self.upstream is None else [self.client, self.upstream]


# A host's addresses as (family, address) pairs, for the proxy to connect to.
Resolver = Callable[[str, int], Awaitable[list[tuple[int, str]]]]


async def system_resolve(host: str, port: int) -> list[tuple[int, str]]:
    """The system's resolver (getaddrinfo, off the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(family, str(address[0])) for family, _, _, _, address in infos]


@dataclass(eq=False)
class EgressProxy:
    """Serves the allowlist on a Unix socket. `on_refused` hears of every 403, `on_connect`
    of every upstream connection made; neither may block."""

    allowlist: Allowlist
    on_refused: Callable[[Refusal], None]
    on_connect: Callable[[str, int], None] | None = None
    max_connections: int = 256
    connect_timeout: float = 10.0
    request_timeout: float = 30.0  # for the request head to arrive
    resolve: Resolver = system_resolve
    _server: asyncio.Server | None = field(default=None, init=False, repr=False)
    _path: Path | None = field(default=None, init=False, repr=False)
    _sessions: set[_Session] = field(default_factory=set, init=False, repr=False)

    async def start(self, socket_path: Path) -> None:
        """Listen on `socket_path` (a stale socket there is replaced)."""
        _remove_socket(socket_path)
        self._server = await asyncio.start_unix_server(
            self._serve, path=socket_path, limit=MAX_HEAD_BYTES
        )
        self._path = socket_path

    async def close(self) -> None:
        """Stop listening and cut every open connection and tunnel."""
        if self._server is not None:
            self._server.close()
        sessions = list(self._sessions)
        for session in sessions:
            for writer in session.writers():
                writer.transport.abort()
            if session.task is not None:
                session.task.cancel()
        await asyncio.gather(
            *(session.task for session in sessions if session.task is not None),
            return_exceptions=True,
        )
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._path is not None:
            _remove_socket(self._path)
            self._path = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(writer, asyncio.current_task())
        if len(self._sessions) >= self.max_connections:
            await _answer(writer, "503 Service Unavailable", "too many connections")
            writer.close()
            return
        self._sessions.add(session)
        clean = False
        try:
            await self._handle(session, reader)
            clean = True
        except _BadRequest as error:
            await _answer(writer, "400 Bad Request", str(error))
            clean = True
        except (OSError, asyncio.IncompleteReadError):
            pass  # a peer went away: nobody is left to tell
        except Exception:
            log.exception("egress_proxy_connection_failed")
        finally:
            self._sessions.discard(session)
            for end in session.writers():
                if clean:
                    end.close()
                else:
                    end.transport.abort()  # a broken peer may never read what is buffered

    async def _handle(self, session: _Session, reader: asyncio.StreamReader) -> None:
        request = _parse_head(await self._read_head(reader))
        asked = _printable(request.host)  # the client's own spelling, safe to repeat
        try:
            host, rule = self._check(request)
            upstream_reader, upstream = await self._dial(host, request.port, rule)
        except _Refused as refusal:
            text = refusal.text or (
                f"egress to {asked}:{request.port} is not allowed for this run "
                "(add it to the workflow's network.allow)"
            )
            await _answer(session.client, "403 Forbidden", text)
            self._report(Refusal(asked, request.port, request.method, refusal.reason))
            return
        except (OSError, TimeoutError) as error:
            reason = "timed out" if isinstance(error, TimeoutError) else str(error)
            text = f"could not connect to {asked}:{request.port}: {reason}"
            await _answer(session.client, "502 Bad Gateway", text)
            return
        session.upstream = upstream
        if request.path is None:
            session.client.write(_ESTABLISHED)
        else:
            upstream.write(_origin_head(request, host))
        if self.on_connect is not None:
            on_connect = self.on_connect
            _call(lambda: on_connect(host, request.port))
        # A plain request ends with the origin's answer (we asked it to close); a tunnel
        # lasts until both sides have finished sending.
        await _splice(reader, session.client, upstream_reader, upstream, request.path is not None)

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes:
        try:
            return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.request_timeout)
        except TimeoutError:
            raise _BadRequest(f"no request within {self.request_timeout:g} s") from None
        except asyncio.LimitOverrunError:
            raise _BadRequest(f"request head over {MAX_HEAD_BYTES} bytes") from None

    def _check(self, request: _Request) -> tuple[str, Rule]:
        """The normalised host and the rule that lets it through."""
        if "@" in request.host:
            raise _Refused("user info in the host")
        try:
            host = normalise_host(request.host)
        except ValueError:
            raise _Refused("not a host name or an IPv4 address") from None
        rule = self.allowlist.match(host, request.port)
        if rule is None:
            raise _Refused("not in the allowlist")
        return host, rule

    async def _dial(
        self, host: str, port: int, rule: Rule
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with asyncio.timeout(self.connect_timeout):
            addresses = await self.resolve(host, port)
            if rule.wildcard:
                _refuse_local(host, rule, [address for _, address in addresses])
            error: OSError = OSError(f"{host} has no address")
            # Connect to what was checked, not to a second lookup of the name.
            for family, address in addresses:
                try:
                    return await asyncio.open_connection(address, port, family=family, limit=CHUNK)
                except OSError as failure:
                    error = failure
            raise error

    def _report(self, refusal: Refusal) -> None:
        on_refused = self.on_refused
        _call(lambda: on_refused(refusal))


def _remove_socket(path: Path) -> None:
    # Only a socket: a mistaken path must not cost someone a file.
    if path.is_socket():
        path.unlink()


def _refuse_local(host: str, rule: Rule, addresses: list[str]) -> None:
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        if address.is_loopback or address.is_link_local or address.is_unspecified:
            raise _Refused(
                f"{host} resolves to the local address {address}",
                f"{host} resolves to the local address {address}, which {rule.pattern} "
                "cannot allow: name it exactly in the workflow's network.allow",
            )


def _call(callback: Callable[[], None]) -> None:
    # A failing observer must not take the client's answer down with it.
    try:
        callback()
    except Exception:
        log.exception("egress_proxy_callback_failed")


def _parse_head(head: bytes) -> _Request:
    lines = head.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or parts[2] not in {"HTTP/1.0", "HTTP/1.1"}:
        raise _BadRequest(f"malformed request line {_printable(lines[0][:200])!r}")
    method, target, version = parts
    headers = tuple(_header(line) for line in lines[1:])
    if method.upper() == "CONNECT":
        host, port = _authority(target, None)
        return _Request("CONNECT", host, port, version, headers, None)
    scheme, sep, rest = target.partition("://")
    if not sep:
        raise _BadRequest(
            "this is an HTTP proxy: ask for http://host/path, or CONNECT host:port for https"
        )
    if scheme.lower() != "http":
        raise _BadRequest(f"only http:// URLs can be asked for; {scheme}:// goes through CONNECT")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    host, port = _authority(rest[:end], 80)
    path = rest[end:].partition("#")[0]
    return _Request(method, host, port, version, headers, "/" + path.removeprefix("/"))


def _header(line: str) -> tuple[str, str]:
    name, colon, value = line.partition(":")
    if not colon or not _TOKEN.match(name):
        # Also a folded continuation line (leading space), which RFC 9112 lets us reject.
        raise _BadRequest(f"malformed header line {_printable(line[:200])!r}")
    return name, value.strip(" \t")


def _authority(text: str, default_port: int | None) -> tuple[str, int]:
    host, colon, port_text = text.rpartition(":")
    if not colon:
        host, port_text = text, ""
    port = _port(port_text) if port_text or default_port is None else default_port
    if port is None:
        raise _BadRequest(f"no valid port in {_printable(text[:200])!r}")
    return host, port


def _port(text: str) -> int | None:
    if not (text.isascii() and text.isdigit() and len(text) <= 5):
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def _origin_head(request: _Request, host: str) -> bytes:
    """The request as the origin should see it: origin-form, its own Host, closing."""
    assert request.path is not None
    named = {
        token.strip().lower()
        for name, value in request.headers
        if name.lower() in {"connection", "proxy-connection"}
        for token in value.split(",")
    }
    # The Host must name the checked target: a different one would let a shared front end
    # (a CDN) route the request to a site the allowlist never named.
    authority = host if request.port == 80 else f"{host}:{request.port}"
    lines = [f"{request.method} {request.path} {request.version}", f"Host: {authority}"]
    for name, value in request.headers:
        lowered = name.lower()
        if lowered not in _HOP_HEADERS and lowered not in named and lowered != "host":
            lines.append(f"{name}: {value}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _splice(
    client_reader: asyncio.StreamReader,
    client: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream: asyncio.StreamWriter,
    end_with_upstream: bool,
) -> None:
    outbound = asyncio.create_task(_pump(client_reader, upstream))
    inbound = asyncio.create_task(_pump(upstream_reader, client))
    try:
        done, pending = await asyncio.wait({outbound, inbound}, return_when=asyncio.FIRST_COMPLETED)
        finished = all(task.result() for task in done)
        if pending and finished and not (end_with_upstream and inbound in done):
            await asyncio.wait(pending)
            finished = all(task.result() for task in pending)
        if not finished:
            raise ConnectionResetError("a peer broke the connection")
    finally:
        for task in (outbound, inbound):
            task.cancel()
        await asyncio.gather(outbound, inbound, return_exceptions=True)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> bool:
    """Copy until EOF, then half-close `sink`; False when either end broke."""
    try:
        while chunk := await source.read(CHUNK):
            sink.write(chunk)
            await sink.drain()  # never read faster than the other side takes it
        if sink.can_write_eof():
            sink.write_eof()
    except OSError:
        return False
    return True


async def _answer(writer: asyncio.StreamWriter, status: str, text: str) -> None:
    body = f"openase sandbox: {text}\n".encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.drain(), 5)


def _printable(text: str) -> str:
    """`text` safe to echo: control and non-ASCII characters escaped, at most 300 long."""
    return ascii(text[:300])[1:-1]
