"""The App's webhook delivery log on the fake GitHub (`GET /app/hook/deliveries`, cursor
pages; `POST /app/hook/deliveries/{id}/attempts`): what GitHub "sent" while the bot was down
or unreachable, and the redeliveries asked of it. GitHub then sends a redelivery itself; a
test plays that part with `redelivered()` and its webhook sender."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from githubkit.compat import type_validate_python
from githubkit_schemas.latest.models import HookDeliveryItem

if TYPE_CHECKING:
    from tests.fakes.github_api import FakeGitHubAPI

Json = dict[str, Any]


@dataclass
class LoggedDelivery:
    item: Json  # a hook-delivery-item as the API shows it
    payload: Json  # what was (or would have been) POSTed


@dataclass
class FakeDeliveryLog:
    fake: FakeGitHubAPI
    deliveries: list[LoggedDelivery] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)  # delivery ids asked to be sent again
    _next_id: int = 1000

    def __post_init__(self) -> None:
        self.fake.route("GET", r"/app/hook/deliveries", self._list)
        self.fake.route("POST", r"/app/hook/deliveries/(?P<did>\d+)/attempts", self._redeliver)

    def add(
        self,
        guid: str,
        event: str,
        payload: Json,
        *,
        status_code: int,
        redelivery: bool = False,
        at: datetime | None = None,
    ) -> int:
        """A delivery GitHub attempted: 2xx delivered, 0 no answer, else our error answer."""
        self._next_id += 1
        at = at or self.fake.clock()
        status = (
            "OK"
            if 200 <= status_code < 300
            else ("timed out" if status_code == 0 else f"Invalid HTTP Response: {status_code}")
        )
        installation = payload.get("installation") or {}
        repository = payload.get("repository") or {}
        item = {
            "id": self._next_id,
            "guid": guid,
            "delivered_at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "redelivery": redelivery,
            "duration": 0.31,
            "status": status,
            "status_code": status_code,
            "event": event,
            "action": payload.get("action"),
            "installation_id": installation.get("id"),
            "repository_id": repository.get("id"),
            "throttled_at": None,
        }
        type_validate_python(HookDeliveryItem, item)  # the shape GitHub documents
        self.deliveries.append(LoggedDelivery(item, payload))
        return self._next_id

    def redelivered(self) -> list[tuple[str, str, Json]]:
        """(guid, event, payload) of each redelivery asked: what GitHub would send now."""
        by_id = {d.item["id"]: d for d in self.deliveries}
        return [
            (str(by_id[i].item["guid"]), str(by_id[i].item["event"]), by_id[i].payload)
            for i in self.attempts
        ]

    def _newest_first(self) -> list[LoggedDelivery]:
        return sorted(
            self.deliveries, key=lambda d: (d.item["delivered_at"], d.item["id"]), reverse=True
        )

    def _list(self, request: httpx.Request) -> httpx.Response:
        if not self.fake.app_authorized(request):
            return self.fake.answer(401, {"message": "A JSON web token could not be decoded"})
        params = request.url.params
        per_page = min(int(params.get("per_page", "30")), 100)
        ordered = self._newest_first()
        start = 0
        if "cursor" in params:
            ids = [d.item["id"] for d in ordered]
            cursor = int(params["cursor"].removeprefix("v1_"))
            start = ids.index(cursor) + 1 if cursor in ids else len(ids)
        page = ordered[start : start + per_page]
        headers = {}
        if start + per_page < len(ordered):
            last = page[-1].item["id"]
            next_url = request.url.copy_with(params={"per_page": per_page, "cursor": f"v1_{last}"})
            headers["link"] = f'<{next_url}>; rel="next"'
        return self.fake.answer(200, [d.item for d in page], headers)

    def _redeliver(self, request: httpx.Request, did: str) -> httpx.Response:
        if not self.fake.app_authorized(request):
            return self.fake.answer(401, {"message": "A JSON web token could not be decoded"})
        known = {d.item["id"] for d in self.deliveries}
        if int(did) not in known:
            return self.fake.answer(422, {"message": "Validation Failed"})
        self.attempts.append(int(did))
        return self.fake.answer(202, {})


def before(fake: FakeGitHubAPI, **ago: float) -> datetime:
    """A time on the fake's clock, `ago` (hours=, minutes=) before now."""
    return fake.clock() - timedelta(**ago)
