"""Notification receivers on 127.0.0.1 playing a Slack incoming webhook and a generic
webhook endpoint: they record every request (body and headers) and answer each path's
first `failures` requests with 503, as a receiver that is down for a while does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.support.browser import serving


@dataclass(frozen=True)
class Received:
    path: str
    body: bytes
    headers: dict[str, str]
    status: int  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receivers:
    url: str = ""
    # By a path's first segment (`/slack` for /slack/T/B/x): 503s still to answer.
    failures: dict[str, int] = field(default_factory=dict)
    refuse: set[str] = field(default_factory=set)  # first segments answering 404 always
    requests: list[Received] = field(default_factory=list)

    def accepted(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path and r.status == 200]

    def tried(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def _receive(self, request: Request) -> PlainTextResponse:
        path = request.url.path
        first = "/" + path.split("/")[1]
        status = 200
        if first in self.refuse:
            status = 404
        elif self.failures.get(first, 0) > 0:
            self.failures[first] -= 1
            status = 503
        body = await request.body()
        self.requests.append(Received(path, body, dict(request.headers), status))
        return PlainTextResponse("ok" if status == 200 else "no", status_code=status)


@asynccontextmanager
async def receivers(**failures: int) -> AsyncIterator[Receivers]:
    """Receivers at `<url>/<name>[/...]` for any name; `failures` as name=count (503s first)."""
    here = Receivers(failures={f"/{name}": count for name, count in failures.items()})
    app = Starlette(routes=[Route("/{name:path}", here._receive, methods=["POST"])])
    async with serving(app) as url:
        here.url = url
        yield here
