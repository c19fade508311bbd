"""What GitHub would send: signed `issues.opened` deliveries of distinct issues (the mirror's
10,000 tickets), and batches of issues labelled `openase` at once (the runs), each offered
to the web processes in turn, as a load balancer would. A delivery not acknowledged (a 5xx,
a refused connection) is offered again with the same id a second later, as GitHub's
redelivery would, for up to a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from adapters.github.verify import sign
from bench.chaos.cluster import SECRET
from bench.scale.cluster import Cluster
from tests.support.helpers import github_example
from tests.support.lifecycle import INSTALLATION, WRITER

MIRRORED_FROM = 100_000  # issue numbers of the plain mirrored tickets (not in the fake GitHub)
CONNECTIONS = 32  # webhooks in flight at once, over all web processes
REDELIVER_FOR = 60.0
Json = dict[str, Any]


@dataclass
class Offered:
    delivery_id: str
    web: str  # the web process's URL it was first offered to
    acked: bool = False
    refusals: int = 0


@dataclass
class Load:
    cluster: Cluster
    offered: list[Offered] = field(default_factory=list)
    _issue: Json = field(default_factory=lambda: github_example("issues", "opened"))
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    async def seed(self, count: int) -> float:
        """`count` distinct issues opened (mirrored, never labelled); seconds until all
        were acknowledged."""
        began = time.monotonic()
        # Each body is made when its turn comes: 10,000 at once would be some 100 MB here.
        await self._offer_all(
            [functools.partial(self._opened, MIRRORED_FROM + index) for index in range(count)]
        )
        return time.monotonic() - began

    async def label(self, numbers: list[int]) -> None:
        """These issues made on the fake GitHub and labelled `openase`, all at once."""
        fake, repo = self.cluster.github.fake, self.cluster.repo
        bodies: list[Callable[[], bytes]] = []
        for number in numbers:
            issue = fake.add_issue(repo, number, title=f"Scale ticket {number}",
                                   labels=("openase",), updated_at=_now())  # fmt: skip
            issue.update(body="Please add the PASS file.", state="open")
            payload = {"action": "labeled", "issue": issue, "label": issue["labels"][0],
                       **self._envelope()}  # fmt: skip
            bodies.append(functools.partial(json.dumps(payload).encode))
        await self._offer_all(bodies)

    def unacknowledged(self) -> int:
        return sum(1 for o in self.offered if not o.acked)

    def refused(self) -> int:
        return sum(1 for o in self.offered if o.refusals)

    async def _offer_all(self, bodies: list[Callable[[], bytes]]) -> None:
        urls = self.cluster.web_urls
        gate = asyncio.Semaphore(CONNECTIONS)
        limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:

            async def offer(body: Callable[[], bytes]) -> None:
                web = urls[next(self._turn) % len(urls)]
                offered = Offered(str(uuid.uuid4()), web)
                self.offered.append(offered)
                async with gate:
                    await self._deliver(http, offered, body())

            await asyncio.gather(*(offer(body) for body in bodies))

    async def _deliver(self, http: httpx.AsyncClient, offered: Offered, body: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/scale",
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": offered.delivery_id,
            "X-Hub-Signature-256": sign(SECRET.encode(), body),
        }
        give_up = time.monotonic() + REDELIVER_FOR
        web = offered.web
        while True:
            with contextlib.suppress(httpx.HTTPError):
                answer = await http.post(f"{web}/webhooks/github", content=body, headers=headers)
                if answer.status_code in (200, 202):
                    offered.acked = True
                    return
            offered.refusals += 1
            if time.monotonic() > give_up:
                return
            await asyncio.sleep(1.0)

    def _opened(self, number: int) -> bytes:
        issue = self._issue["issue"]
        issue.update(id=900_000_000 + number, number=number, title=f"Mirrored issue {number}")
        return json.dumps({**self._issue, **self._envelope()}).encode()

    def _envelope(self) -> Json:
        sender = dict(github_example("issues", "labeled")["sender"])
        sender.update(login=WRITER, id=4_242_000, type="User")
        return {
            "repository": self.cluster.repo.data,
            "sender": sender,
            "installation": {"id": INSTALLATION, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u"},
        }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
