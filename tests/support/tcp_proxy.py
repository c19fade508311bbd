"""A TCP forwarder on loopback whose link can be cut: a network partition between a process
and a server (Redis, PostgreSQL) that neither of them can tell from the real thing.

    proxy = TcpProxy("127.0.0.1", redis_port)
    await proxy.start()            # clients connect to 127.0.0.1:proxy.port
    proxy.cut()                    # live connections dropped, new ones held in silence
    proxy.restore()                # forwarding again (held connections are closed first)
    await proxy.aclose()

`cuttable_redis(url)` puts one in front of the test's Redis (bridged to its unix socket
when it has one): the process under test is given `link.url`, the test cuts `link.proxy`.

`cut(refuse=True)` answers new connections with an immediate close instead of silence, and
`cut(drop_live=False)` leaves live connections open but forwards nothing over them (bytes
sent either way are swallowed), which is what a partition does to a TCP connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlparse

CHUNK = 65_536


@dataclass(eq=False)  # each link is itself: kept in a set by identity
class _Link:
    """One client connection and its connection to the target."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()  # no FIN handshake: the peer sees a reset
        for pump in self.pumps:
            pump.cancel()


@dataclass
class TcpProxy:
    """Forwards 127.0.0.1:`port` (0: any free one) to `target_host`:`target_port`."""

    target_host: str
    target_port: int
    host: str = "127.0.0.1"
    port: int = 0
    cuts: int = 0  # how many times the link was cut (for reports)
    _server: asyncio.Server | None = field(default=None, init=False, repr=False)
    _links: set[_Link] = field(default_factory=set, init=False, repr=False)
    _held: set[asyncio.StreamWriter] = field(default_factory=set, init=False, repr=False)
    _cut: bool = field(default=False, init=False)
    _refuse: bool = field(default=False, init=False)
    _stalled: bool = field(default=False, init=False)

    @property
    def is_cut(self) -> bool:
        return self._cut

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self, *, drop_live: bool = True, refuse: bool = False) -> None:
        """Stop forwarding: live connections reset (or, `drop_live=False`, stalled), new
        ones held open in silence (or, `refuse=True`, closed at once)."""
        self._cut, self._refuse, self._stalled = True, refuse, not drop_live
        self.cuts += 1
        if drop_live:
            for link in list(self._links):
                link.abort()
            self._links.clear()

    def restore(self) -> None:
        """Forward again. Connections held or stalled during the cut are reset: their
        clients reconnect, as after a partition heals with timed-out connections."""
        self._cut = self._refuse = self._stalled = False
        for writer in list(self._held):
            writer.transport.abort()
        self._held.clear()
        for link in list(self._links):
            link.abort()
        self._links.clear()

    async def aclose(self) -> None:
        self.restore()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            if self._refuse:
                writer.transport.abort()
                return
            self._held.add(writer)
            try:
                await self._swallow(reader)
            finally:
                self._held.discard(writer)
                writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()  # the target is down: the client sees it refuse
            return
        if self._cut and not self._stalled:
            # Cut while this one was connecting: reset like the live ones (it used to get
            # through, and a worker under load saw Redis "back" a moment after the cut).
            for end in (writer, up_writer):
                end.transport.abort()
            return
        link = _Link(writer, up_writer)
        link.pumps = [
            asyncio.create_task(self._pump(reader, up_writer, link)),
            asyncio.create_task(self._pump(up_reader, writer, link)),
        ]
        self._links.add(link)
        await asyncio.gather(*link.pumps, return_exceptions=True)
        self._links.discard(link)
        for end in (writer, up_writer):
            end.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                if self._stalled:
                    continue  # a partition: the bytes never arrive
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side is done: end the other too, as the real peer would see it.
            for pump in link.pumps:
                if pump is not asyncio.current_task():
                    pump.cancel()

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(CHUNK):
                pass


@dataclass
class RedisLink:
    proxy: TcpProxy
    url: str  # Redis's URL through the proxy, for the process under test


async def _bridge(
    path: str,
    open_ends: set[asyncio.StreamWriter],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """TCP in, the embedded Redis's unix socket out: the proxy speaks TCP only."""
    try:
        up_reader, up_writer = await asyncio.open_unix_connection(path)
    except OSError:
        writer.transport.abort()
        return
    open_ends.update((writer, up_writer))

    async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(CHUNK):
                sink.write(data)
                await sink.drain()
        sink.transport.abort()

    await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
    open_ends.difference_update((writer, up_writer))


@contextlib.asynccontextmanager
async def cuttable_redis(redis_url: str) -> AsyncIterator[RedisLink]:
    """A proxy in front of the Redis at `redis_url` (a redis:// or unix:// URL)."""
    url = urlparse(redis_url)
    bridge = None
    open_ends: set[asyncio.StreamWriter] = set()
    if url.scheme == "unix":
        bridge = await asyncio.start_server(
            lambda r, w: _bridge(url.path, open_ends, r, w), "127.0.0.1", 0
        )
        host, port, db = "127.0.0.1", bridge.sockets[0].getsockname()[1], "0"
    else:
        host, port, db = url.hostname or "127.0.0.1", url.port or 6379, url.path.strip("/") or "0"
    proxy = TcpProxy(host, port)
    await proxy.start()
    try:
        yield RedisLink(proxy, f"redis://127.0.0.1:{proxy.port}/{db}")
    finally:
        await proxy.aclose()
        for end in list(open_ends):
            end.transport.abort()
        if bridge is not None:
            bridge.close()
            await bridge.wait_closed()
        await asyncio.sleep(0.1)  # the aborted transports close on the next loop turns
