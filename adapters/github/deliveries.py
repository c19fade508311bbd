"""The App itself (`GET /app`) and its webhook delivery log, as GitHub keeps it (three days):
what it sent, how each attempt ended, and asking it to send one again. Asked as the App
(its JWT), not an installation."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx

from adapters.base import AppInfo, HookDelivery, PayloadError
from adapters.github.fields import boolean, integer, opt_integer, opt_string, string, timestamp
from adapters.github.transport import PER_PAGE, GitHubTransport, json_body

DELIVERIES_PATH = "/app/hook/deliveries"


def hook_delivery(item: object) -> HookDelivery:
    """A `hook-delivery-item` of the REST API."""
    path = DELIVERIES_PATH
    if not isinstance(item, dict):
        raise PayloadError(f"GET {path}: expected delivery objects")
    delivered_at = timestamp(item, "delivered_at", path)
    if delivered_at is None:
        raise PayloadError(f"GET {path}: a delivery without `delivered_at`")
    return HookDelivery(
        id=integer(item, "id", path),
        guid=string(item, "guid", path),
        delivered_at=delivered_at,
        redelivery=boolean(item, "redelivery", path),
        status_code=integer(item, "status_code", path),
        status=opt_string(item, "status", path) or "",
        event=string(item, "event", path),
        action=opt_string(item, "action", path),
        installation_id=opt_integer(item, "installation_id", path),
    )


class DeliveryEndpoints(GitHubTransport):
    async def app_info(self) -> AppInfo:
        """Who the App is: answering at all proves its id and private key are right."""
        body = json_body(await self.request("GET", "/app", installation_id=None))
        if not isinstance(body, dict):
            raise PayloadError("GET /app: expected an App object")
        owner = body.get("owner")
        return AppInfo(
            id=integer(body, "id", "/app"),
            slug=string(body, "slug", "/app"),
            name=string(body, "name", "/app"),
            html_url=string(body, "html_url", "/app"),
            owner=opt_string(owner, "login", "/app.owner") if isinstance(owner, dict) else None,
        )

    async def hook_deliveries(self) -> AsyncGenerator[list[HookDelivery], None]:
        """The delivery log, newest first, a page at a time (cursor pages: the caller stops
        reading once it reaches what it saw before)."""
        url: str | None = str(
            httpx.URL(self.api_url + DELIVERIES_PATH, params={"per_page": PER_PAGE})
        )
        seen: set[str] = set()
        while url is not None and url not in seen:  # `seen` guards against a Link loop
            seen.add(url)
            response = await self.request("GET", url, installation_id=None)
            body = json_body(response)
            if not isinstance(body, list):
                raise PayloadError(f"GET {DELIVERIES_PATH}: expected a JSON array")
            yield [hook_delivery(item) for item in body]
            url = response.links.get("next", {}).get("url")

    async def redeliver(self, delivery_id: int) -> None:
        """Ask GitHub to send that delivery again (it answers 202 and sends it shortly)."""
        await self.request(
            "POST", f"{DELIVERIES_PATH}/{int(delivery_id)}/attempts", installation_id=None
        )
