"""A fake smee.io channel on 127.0.0.1 that writes the event stream probot/smee.io writes.

As in smee.io's `lib/server.js`: `GET /<channel>` with `Accept: text/event-stream` gets a
chunked `text/event-stream` answer starting with `id: 0`, `event: ready`, `data: {}`; ids
count per connection; `ping()` writes the keep-alive event (`event: ping`, `data: {}`);
anything else gets the channel's HTML page. `post()` is GitHub POSTing a delivery to the
channel: each listener gets an event with no `event:` line whose data is
`JSON.stringify({...req.headers, body: req.body, query: req.query, timestamp})`, the
headers lower-cased as Node has them and the body parsed and written again, as JavaScript
does. The body is re-serialized here (not copied), so a test proves the relay rebuilds
GitHub's bytes from JavaScript's text; for payloads without fractions Python's compact
`ensure_ascii=False` output is JavaScript's byte for byte (checked against node 20), so
fractional numbers are refused rather than written the Python way.

`drop()` cuts every listener off; `requests` keeps each GET's headers.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

WAIT = 10.0  # seconds a test waits for the relay before failing
_HTML = b"<!doctype html><title>smee.io</title>"
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def github_body(payload: dict[str, Any]) -> bytes:
    """The bytes GitHub sends (and signs) for `payload`: compact JSON, UTF-8 unescaped,
    control characters as `\\u001B` with upper-case hex (see bot/intake/smee.py)."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return _UNICODE_ESCAPE.sub(lambda m: "\\u" + m[1].upper(), text).encode()


def javascript_json(body: bytes) -> str:
    """`JSON.stringify(JSON.parse(body))`, for payloads without fractional numbers."""

    def refuse(text: str) -> float:
        raise ValueError(f"the fake channel writes no fractions as JavaScript would: {text}")

    return json.dumps(
        json.loads(body, parse_float=refuse), separators=(",", ":"), ensure_ascii=False
    )


@dataclass
class _Listener:
    writer: asyncio.StreamWriter
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    next_id: int = 0


class FakeSmeeChannel:
    """One channel of a fake smee.io server; use as `async with FakeSmeeChannel() as channel`."""

    def __init__(self, name: str = "oa-test-channel") -> None:
        self.name = name
        self.requests: list[dict[str, str]] = []
        self._listeners: list[_Listener] = []
        self._server: asyncio.Server | None = None
        self._connected = asyncio.Condition()

    async def __aenter__(self) -> FakeSmeeChannel:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.drop()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/{self.name}"

    @property
    def listeners(self) -> int:
        return sum(1 for listener in self._listeners if not listener.closed.is_set())

    async def wait_for_listener(self, connections: int = 1) -> None:
        """Until `connections` GETs of the stream were answered in all (and one listens);
        at most WAIT seconds."""
        async with asyncio.timeout(WAIT), self._connected:
            await self._connected.wait_for(
                lambda: len(self.requests) >= connections and self.listeners > 0
            )

    def post(self, headers: Mapping[str, str], body: bytes) -> None:
        """GitHub POSTs a delivery to the channel: every listener gets smee.io's event."""
        node_headers = {name.lower(): value for name, value in headers.items()}
        node_headers["content-length"] = str(len(body))
        members = [f"{json.dumps(k)}:{json.dumps(v)}" for k, v in node_headers.items()]
        members += [
            f'"body":{javascript_json(body)}',
            '"query":{}',
            f'"timestamp":{int(time.time() * 1000)}',
        ]
        self._broadcast("", "{" + ",".join(members) + "}")

    def message(self, data: str) -> None:
        """A message event with `data` as it is (a broken or different server's)."""
        self._broadcast("", data)

    def ping(self) -> None:
        """smee.io's keep-alive, every 30 s on the real server."""
        self._broadcast("ping", "{}")

    def drop(self) -> None:
        """Every listener's connection is cut, as when the network or the server goes."""
        for listener in self._listeners:
            if not listener.closed.is_set():
                listener.writer.transport.abort()
                listener.closed.set()

    def _broadcast(self, event: str, data: str) -> None:
        for listener in self._listeners:
            if not listener.closed.is_set():
                self._write_event(listener, event, data)

    @staticmethod
    def _write_event(listener: _Listener, event: str, data: str) -> None:
        frame = f"id: {listener.next_id}\n" + (f"event: {event}\n" if event else "")
        frame += f"data: {data}\n\n"
        listener.next_id += 1
        chunk = frame.encode()
        # Node answers without a Content-Length, so its stream is chunked.
        listener.writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        request_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        method, path, _ = request_line.split(" ", 2)
        if (
            method != "GET"
            or path != f"/{self.name}"
            or headers.get("accept") != "text/event-stream"
        ):
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%b" % (len(_HTML), _HTML)
            )
            await writer.drain()
            writer.close()
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Connection: keep-alive\r\nx-no-compression: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        listener = _Listener(writer)
        self._write_event(listener, "ready", "{}")
        async with self._connected:
            self.requests.append(headers)
            self._listeners.append(listener)
            self._connected.notify_all()
        # Until the client goes or the test drops it.
        waits = {
            asyncio.ensure_future(reader.read()),
            asyncio.ensure_future(listener.closed.wait()),
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            listener.closed.set()
            writer.close()
