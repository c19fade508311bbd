"""The steady load: signed webhooks at a fixed rate, and now and then a labelled ticket.

Webhooks are `issues.opened` deliveries of distinct issues (GitHub's example payload, this
world's repository); tickets are issues the fake GitHub knows, labelled `openase` with an
`issues.labeled` delivery, whose body asks the agent to work for a few seconds. Every
delivery carries a fresh X-GitHub-Delivery id and is stamped with the phase (fault) it was
offered in. One that is not acknowledged (a 5xx, a refused connection) is offered again
with the same id a second later, as GitHub's redelivery would, until acknowledged or
`redeliver_for` seconds have passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from adapters.github.verify import sign
from bench.chaos.cluster import SECRET, Cluster
from tests.support.helpers import github_example
from tests.support.lifecycle import INSTALLATION, WRITER

WEBHOOK_ISSUES_FROM = 100_000  # issue numbers of plain webhooks (not in the fake GitHub)
Json = dict[str, Any]


@dataclass
class Offered:
    delivery_id: str
    phase: str
    ticket: int | None  # the ticket's issue number, for a labelled ticket
    acked_at: float | None = None
    refusals: int = 0  # answers that were no acknowledgement (each then redelivered)


@dataclass
class Load:
    cluster: Cluster
    rate: float  # webhooks per second
    ticket_every: float  # seconds between labelled tickets
    redeliver_for: float = 120.0
    phase: str = "warm-up"
    offered: list[Offered] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _http: httpx.AsyncClient | None = None  # run()'s, shared by what it offers
    _issue: Json = field(default_factory=lambda: github_example("issues", "opened"))
    _next_webhook: int = WEBHOOK_ISSUES_FROM

    def of(self, phase: str) -> list[Offered]:
        return [o for o in self.offered if o.phase == phase]

    def tickets_of(self, phase: str) -> list[int]:
        return [o.ticket for o in self.of(phase) if o.ticket is not None]

    async def run(self, stop: asyncio.Event) -> None:
        """Offer load until `stop` is set; then wait for the redeliveries in flight."""
        async with httpx.AsyncClient(base_url=self.cluster.serve_url, timeout=10) as http:
            self._http = http
            started = time.monotonic()
            sent_webhooks = 0
            next_ticket_at = started
            while not stop.is_set():
                now = time.monotonic()
                while sent_webhooks < (now - started) * self.rate:
                    self._spawn(http, *self._webhook())
                    sent_webhooks += 1
                if self.ticket_every > 0 and now >= next_ticket_at:
                    self._spawn(http, *self._ticket())
                    next_ticket_at = now + self.ticket_every
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.02)
            await self.settled()
            self._http = None

    def burst(self, count: int) -> None:
        """`count` webhooks offered at once (a crash then finds work in every hand)."""
        for _ in range(count):
            self._spawn(self._http, *self._webhook())

    def ticket_now(self) -> Offered:
        """One labelled ticket offered at once (the warm-up's), returned to wait on."""
        return self._spawn(None, *self._ticket())

    async def settled(self) -> None:
        """Every delivery offered so far acknowledged, or given up on."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(
        self, http: httpx.AsyncClient | None, offered: Offered, event: str, body: bytes
    ) -> Offered:
        self.offered.append(offered)
        task = asyncio.create_task(self._deliver(http, offered, event, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return offered

    def _webhook(self) -> tuple[Offered, str, bytes]:
        number = self._next_webhook
        self._next_webhook += 1
        issue = self._issue["issue"]
        issue.update(id=900_000_000 + number, number=number, title=f"Chaos load {number}")
        payload = {**self._issue, **self._envelope()}
        return Offered(str(uuid.uuid4()), self.phase, None), "issues", json.dumps(payload).encode()

    def _ticket(self) -> tuple[Offered, str, bytes]:
        fake, repo = self.cluster.github.fake, self.cluster.repo
        # The next number GitHub would give: PRs the bot opens take numbers from the same
        # sequence as issues.
        number = max((i["number"] for i in repo.issues), default=0) + 1
        issue = fake.add_issue(repo, number, title=f"Chaos ticket {number}", labels=("openase",),
                               updated_at=_now())  # fmt: skip
        issue.update(body="[slow] change something small", state="open")
        payload = {"action": "labeled", "issue": issue, "label": issue["labels"][0],
                   **self._envelope()}  # fmt: skip
        offered = Offered(str(uuid.uuid4()), self.phase, number)
        return offered, "issues", json.dumps(payload).encode()

    def _envelope(self) -> Json:
        sender = dict(github_example("issues", "labeled")["sender"])
        sender.update(login=WRITER, id=4_242_000, type="User")
        return {
            "repository": self.cluster.repo.data,
            "sender": sender,
            "installation": {"id": INSTALLATION, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u"},
        }

    async def _deliver(
        self, http: httpx.AsyncClient | None, offered: Offered, event: str, body: bytes
    ) -> None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/chaos",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": offered.delivery_id,
            "X-Hub-Signature-256": sign(SECRET.encode(), body),
        }
        give_up = time.monotonic() + self.redeliver_for
        async with contextlib.AsyncExitStack() as stack:
            if http is None:
                http = await stack.enter_async_context(
                    httpx.AsyncClient(base_url=self.cluster.serve_url, timeout=10)
                )
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    answer = await http.post("/webhooks/github", content=body, headers=headers)
                    if answer.status_code in (200, 202):
                        offered.acked_at = time.monotonic()
                        return
                offered.refusals += 1
                if time.monotonic() > give_up:
                    return
                await asyncio.sleep(1.0)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
