"""The recording fake GitHub API (tests/fakes/github_api.py) served over real HTTP on
loopback, for product processes started as subprocesses (`openase serve|worker`), which
respx cannot reach.

    async with served_github(private_key_pem=key, app_id=4242) as github:
        env["OPENASE_GITHUB_API_URL"] = github.api_url   # http://127.0.0.1:PORT/api/v3
        github.failing = True                            # every answer a 502 until False

It runs in the caller's event loop, so the caller reads and changes the fake's state (its
repositories, issues, recorded requests) without locks. Requests answered 502 while
`failing` never reach the fake: they are counted in `refused`, not recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import respx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.github_api import ARRIVED, FakeGitHubAPI

METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]
# Headers the server recomputes for the body it sends (the fake's were for httpx).
_HOP = {"content-length", "transfer-encoding", "connection", "content-encoding"}


@dataclass
class ServedGitHub:
    fake: FakeGitHubAPI
    api_url: str
    failing: bool = False  # the switch: answer 502 Bad Gateway to everything
    refused: int = 0  # requests answered 502 by the switch
    _server: uvicorn.Server | None = field(default=None, repr=False)

    async def _answer(self, request: Request) -> Response:
        if self.failing:
            self.refused += 1
            return Response(
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
                status_code=502,
                media_type="text/html",
            )
        arrived = time.time()  # before its body is read, as GitHub would count it
        body = await request.body()
        forwarded = httpx.Request(
            request.method,
            str(request.url),
            headers=[(k, v) for k, v in request.headers.items() if k.lower() != "host"],
            content=body,
            extensions={ARRIVED: arrived},
        )
        answer = self.fake._serve(forwarded)
        if not isinstance(answer, httpx.Response):  # the fake's latency mode
            answer = await answer
        return Response(
            answer.content,
            status_code=answer.status_code,
            headers={k: v for k, v in answer.headers.items() if k.lower() not in _HOP},
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def served_github(
    *, private_key_pem: str, app_id: int, api_path: str = "/api/v3"
) -> AsyncIterator[ServedGitHub]:
    """A fake GitHub (GitHub Enterprise Server-style URLs) on a free loopback port."""
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}{api_path}"
    # The fake mounts itself on a respx router; this one is never started, so no httpx
    # client of the caller is intercepted: requests come in over the socket instead.
    fake = FakeGitHubAPI(
        respx.MockRouter(), api_url=api_url, app_id=app_id, private_key_pem=private_key_pem
    )
    served = ServedGitHub(fake=fake, api_url=api_url)
    app = Starlette(routes=[Route("/{path:path}", served._answer, methods=METHODS)])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    served._server = server
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError("the fake GitHub server stopped at start")
        await asyncio.sleep(0.01)
    try:
        yield served
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
