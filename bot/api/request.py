"""What every read-API endpoint shares: query parsing, opaque cursors and JSON error answers.

Every problem with a request becomes `ApiError`, answered as `{"error": "<message>"}` where
the message starts with the name of the offending parameter, so a client can tell which
one to fix without reading our source.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.deps import Deps
from bot.settings import Settings

log = structlog.get_logger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Ids are BIGINT: a larger number would reach Postgres as an overflow error, not a 400.
MAX_ID = 2**63 - 1

# The version prefix lets a later ordering change reject old cursors cleanly.
_CURSOR = re.compile(r"^v1:([a-z]+):([0-9]{1,19})$")

Endpoint = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """A request we refuse; `message` names the parameter at fault."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_endpoint(handler: Endpoint) -> Endpoint:
    """Answer `ApiError` as JSON, and a database outage as 503 rather than a stack trace."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("api_database_unavailable", path=request.url.path, error=type(exc).__name__)
            return JSONResponse({"error": "database unavailable; retry later"}, status_code=503)

    return endpoint


def admin_token(settings: Settings) -> str | None:
    """The token the API requires, or None when reads are open.

    An empty OPENASE_ADMIN_TOKEN counts as unset: an empty bearer token protects nothing.
    """
    token = settings.admin_token
    return token.get_secret_value() if token is not None and token.get_secret_value() else None


def deps_of(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


class Query:
    """The query string of one request, read strictly: unknown or repeated names are errors.

    Strictness catches typos (`?labels=bug`, `?status=open` on tickets) that would otherwise
    silently return an unfiltered listing.
    """

    def __init__(self, request: Request, allowed: Collection[str]) -> None:
        self._params = request.query_params
        unknown = sorted(set(self._params.keys()) - set(allowed))
        if unknown:
            raise ApiError(
                400,
                f"{unknown[0]}: unknown query parameter; expected one of: "
                + ", ".join(sorted(allowed)),
            )

    def one(self, name: str) -> str | None:
        """The parameter's single value, or None when absent."""
        values = self._params.getlist(name)
        if not values:
            return None
        if len(values) > 1:
            raise ApiError(400, f"{name}: give it at most once")
        if values[0] == "":
            raise ApiError(400, f"{name}: must not be empty")
        return values[0]

    def many(self, name: str) -> list[str]:
        """Every value of a repeatable parameter, in order, without duplicates."""
        values = self._params.getlist(name)
        if any(v == "" for v in values):
            raise ApiError(400, f"{name}: must not be empty")
        return list(dict.fromkeys(values))

    def choice(self, name: str, choices: Collection[str]) -> str | None:
        value = self.one(name)
        if value is not None and value not in choices:
            raise ApiError(
                400, f"{name}: unknown value {value!r}; expected one of: {', '.join(choices)}"
            )
        return value

    def matching(self, name: str, pattern: re.Pattern[str], shape: str) -> str | None:
        value = self.one(name)
        if value is not None and not pattern.fullmatch(value):
            raise ApiError(400, f"{name}: malformed; expected {shape}")
        return value

    def integer(self, name: str) -> int | None:
        value = self.one(name)
        return None if value is None else parse_id(name, value)

    def limit(self) -> int:
        value = self.one("limit")
        if value is None:
            return DEFAULT_LIMIT
        if not re.fullmatch(r"[+-]?[0-9]{1,10}", value):
            raise ApiError(400, f"limit: must be an integer, got {value[:40]!r}")
        limit = int(value)
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(400, f"limit: must be between 1 and {MAX_LIMIT}, got {limit}")
        return limit

    def cursor(self, kind: str) -> int | None:
        """The id a page continues after; `kind` keeps one listing's cursor out of another."""
        value = self.one("cursor")
        return None if value is None else decode_cursor(kind, value)


def parse_id(name: str, value: str) -> int:
    """A positive BIGINT id from a path or query string."""
    if not re.fullmatch(r"[0-9]{1,19}", value) or not 1 <= int(value) <= MAX_ID:
        raise ApiError(400, f"{name}: must be a positive integer, got {value[:40]!r}")
    return int(value)


def encode_cursor(kind: str, last_id: int) -> str:
    raw = f"v1:{kind}:{last_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, value: str) -> int:
    malformed = ApiError(400, "cursor: malformed; pass `next_cursor` from the previous page as is")
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
        match = _CURSOR.fullmatch(raw.decode("ascii"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise malformed from None
    if match is None or not 1 <= int(match[2]) <= MAX_ID:
        raise malformed
    if match[1] != kind:
        raise ApiError(400, "cursor: belongs to another listing")
    return int(match[2])


def page(
    rows: list[tuple[int, dict[str, Any]]], limit: int, kind: str
) -> tuple[list[dict[str, Any]], str | None]:
    """Cut the `limit + 1` rows a query fetched into a page and the cursor of the next one."""
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(kind, rows[-1][0]) if more else None
    return [item for _, item in rows], next_cursor


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
