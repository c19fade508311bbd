"""The CLI's client of `/api/v1/harnesses` and `/api/v1/skills`, the way `gh` is GitHub's.

The server is OPENASE_URL, else this machine's own (`openase up` or `openase serve` with the
same OPENASE_HOST / OPENASE_PORT / OPENASE_PUBLIC_URL); OPENASE_ADMIN_TOKEN, when set, goes
along as the bearer token. Every failure becomes one line: `ConfigError` (exit status 2)
when the setup is at fault (no token, a wrong one), `OpenaseError` (1) when the server is
unreachable or refused the request, with the server's own message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from bot.errors import ConfigError, OpenaseError

if TYPE_CHECKING:
    from bot.settings import Settings

TIMEOUT_SECONDS = 30.0
# A server bound to every address is reached on loopback from this machine.
_LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}  # noqa: S104  # looked up, never bound


def server_url(settings: Settings) -> str:
    """Where the CLI finds the server, without a trailing slash."""
    if settings.url is not None:
        return str(settings.url).rstrip("/")
    if settings.public_url is None and settings.host in _LOOPBACK_FOR:
        return f"http://{_LOOPBACK_FOR[settings.host]}:{settings.port}"
    return settings.base_url


def api_path(*segments: str | int) -> str:
    """A path under /api/v1 from segments, each escaped (names are validated anyway)."""
    return "/".join(quote(str(segment), safe="") for segment in segments)


class StoreClient:
    """Synchronous requests to one server's harness store API."""

    def __init__(self, settings: Settings) -> None:
        self.url = server_url(settings)
        token = settings.admin_token.get_secret_value() if settings.admin_token else ""
        self._token_sent = bool(token)
        self._http = httpx.Client(
            base_url=self.url + "/api/v1/",
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=TIMEOUT_SECONDS,
        )

    def __enter__(self) -> StoreClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """The JSON of a GET."""
        return self._json(self._send(lambda: self._http.get(path, params=params)))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """The JSON of a POST."""
        return self._json(self._send(lambda: self._http.post(path, json=body)))

    def _send(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        try:
            response = send()
        except httpx.TransportError as error:
            raise OpenaseError(
                f"cannot reach the openase server at {self.url} ({error or type(error).__name__})"
                ": start it with `openase up`, or set OPENASE_URL to a running server"
            ) from None
        if response.status_code >= 400:
            raise self._refusal(response)
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise OpenaseError(
                f"{self.url} answered {response.status_code} with no JSON: is OPENASE_URL "
                "an openase server?"
            ) from None

    def _refusal(self, response: httpx.Response) -> OpenaseError:
        status = response.status_code
        try:
            message = str(response.json()["error"])
        except (ValueError, KeyError, TypeError):
            return OpenaseError(
                f"{self.url} answered {status} {response.reason_phrase} without an openase "
                "error: is OPENASE_URL an openase server?"
            )
        if status == 401:
            if self._token_sent:
                return ConfigError(
                    f"the server at {self.url} refused OPENASE_ADMIN_TOKEN ({message}): set it "
                    "to the server's admin token"
                )
            return ConfigError(
                f"the server at {self.url} needs a token ({message}): set OPENASE_ADMIN_TOKEN "
                "to the server's admin token"
            )
        if status == 403:
            return ConfigError(
                f"the server at {self.url} refused: {message} (the CLI sends "
                "OPENASE_ADMIN_TOKEN as that token)"
            )
        return OpenaseError(message)
