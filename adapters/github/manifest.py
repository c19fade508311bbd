"""The last step of GitHub's App manifest flow: the one-time `code` GitHub hands back after
someone created the App from our manifest, exchanged for the App's credentials
(`POST /app-manifests/{code}/conversions`, no authentication: the code is the secret).
A code works once and for an hour."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

import httpx

from adapters.base import PayloadError
from adapters.errors import RequestRejected, TransientError
from adapters.github.fields import integer, opt_string, string
from adapters.github.transport import ACCEPT, API_VERSION, USER_AGENT

TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class RegisteredApp:
    """The App GitHub created from the manifest, with what the bot needs to act as it."""

    id: int
    slug: str
    name: str
    html_url: str
    owner: str | None
    client_id: str
    # Secrets: kept out of repr, so a log line or a traceback never shows them.
    private_key: str = field(repr=False)
    # None when the manifest asked for no webhook (GitHub then makes no secret).
    webhook_secret: str | None = field(repr=False)
    client_secret: str = field(repr=False)


async def convert_manifest(api_url: str, code: str) -> RegisteredApp:
    """Exchange the manifest flow's `code` for the App's credentials. RequestRejected when
    GitHub does not take the code (unknown, used, or over an hour old), TransientError when
    it does not answer."""
    if not code or len(code) > 200 or not code.isascii():
        raise RequestRejected(422, "the manifest code is malformed")
    url = f"{api_url.rstrip('/')}/app-manifests/{quote(code, safe='')}/conversions"
    headers = {"Accept": ACCEPT, "X-GitHub-Api-Version": API_VERSION, "User-Agent": USER_AGENT}
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            response = await client.post(url, headers=headers)
    except httpx.HTTPError as exc:
        raise TransientError(f"GitHub did not answer the manifest conversion: {exc!r}") from exc
    if response.status_code >= 500:
        raise TransientError(f"GitHub answered {response.status_code} to the manifest conversion")
    if response.status_code != 201:
        raise RequestRejected(
            response.status_code,
            f"GitHub answered {response.status_code} to the manifest conversion",
        )
    try:
        body = response.json()
    except ValueError:
        raise PayloadError("the manifest conversion answered no JSON") from None
    if not isinstance(body, dict):
        raise PayloadError("the manifest conversion answered no App object")
    path = "app-manifests conversion"
    owner = body.get("owner")
    html_url = string(body, "html_url", path)
    return RegisteredApp(
        id=integer(body, "id", path),
        # The description marks slug optional; the App's page URL ends with it anyway.
        slug=opt_string(body, "slug", path) or html_url.rstrip("/").rsplit("/", 1)[-1],
        name=string(body, "name", path),
        html_url=html_url,
        owner=opt_string(owner, "login", f"{path}.owner") if isinstance(owner, dict) else None,
        client_id=string(body, "client_id", path),
        private_key=string(body, "pem", path),
        webhook_secret=opt_string(body, "webhook_secret", path),
        client_secret=string(body, "client_secret", path),
    )
