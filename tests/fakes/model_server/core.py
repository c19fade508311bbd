"""A scripted model server on 127.0.0.1 that speaks the three agent CLIs' streaming APIs.

It keeps no conversation state: each dialect picks its `Step` from the request's own
history, so retries and resumed sessions replay deterministically. Every request is
recorded, so a test can assert what the agent was told (harness, skills, prompt).
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.fakes.model_server.scenario import Scenario

Reply = Callable[[dict[str, Any], Scenario], Iterator[bytes]]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lowercased
    body: Any = None  # parsed JSON, or None when the body was empty or not JSON

    @property
    def text(self) -> str:
        """The whole body as JSON text, for "did the model see X" assertions."""
        return json.dumps(self.body, ensure_ascii=False)


def dialect_of(path: str) -> str | None:
    """Which API a model-call path speaks: "anthropic", "responses", "gemini", or None."""
    route = path.split("?", 1)[0]
    if route.startswith("/v1/messages"):
        return "anthropic"
    if route.startswith("/v1/responses"):
        return "responses"
    if ":streamGenerateContent" in route:
        return "gemini"
    return None


def _reply_of(dialect: str) -> Reply:
    # Imported on first use: each dialect lives in its own module of this package.
    reply: Reply = importlib.import_module(f"{__package__}.{dialect}").reply
    return reply


def error_body(dialect: str, status: int) -> dict[str, Any]:
    """An API error in the shape the dialect's clients parse."""
    message = f"scripted failure (HTTP {status})"
    if dialect == "anthropic":
        return {"type": "error", "error": {"type": "api_error", "message": message}}
    if dialect == "responses":
        return {"error": {"type": "server_error", "code": "server_error", "message": message}}
    return {"error": {"code": status, "message": message, "status": "INTERNAL"}}


@dataclass
class ModelServer:
    """`with ModelServer(scenario) as server:` serves on `server.url` until the block ends."""

    scenario: Scenario
    requests: list[RecordedRequest] = field(default_factory=list)
    _httpd: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        assert self._httpd is not None, "the server is not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def model_requests(self) -> list[RecordedRequest]:
        """The recorded model calls (POSTs a dialect answers), oldest first."""
        return [r for r in self.requests if r.method == "POST" and dialect_of(r.path)]

    def start(self) -> ModelServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        # A short poll interval: shutdown() waits for the serving loop's next poll.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="model-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _handler_for(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request log is the record; stderr noise would only clutter test output

        def _record(self) -> RecordedRequest:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            request = RecordedRequest(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
            server.requests.append(request)
            return request

        def _answer(self, status: int, body: bytes = b"", content_type: str = "") -> None:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def _other(self) -> None:
            self._record()
            self._answer(200)

        do_GET = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = _other

        def do_POST(self) -> None:
            request = self._record()
            name = dialect_of(request.path)
            if name is None:
                self._answer(404, b'{"error":"not found"}', "application/json")
                return
            scenario = server.scenario  # read once: a test may swap it between requests
            if scenario.fail_status is not None:
                self.close_connection = True
                payload = json.dumps(error_body(name, scenario.fail_status)).encode()
                self._answer(scenario.fail_status, payload, "application/json")
                return
            body = request.body if isinstance(request.body, dict) else {}
            # Built before answering, so a broken script shows as a 500 naming the error
            # rather than as a stream cut short.
            try:
                chunks = list(_reply_of(name)(body, scenario))
            except Exception as error:
                self.close_connection = True
                self._answer(500, repr(error).encode(), "text/plain")
                raise
            # Streamed without a length: closing the connection marks the end of the reply.
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()

    return Handler
