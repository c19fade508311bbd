"""Requests to GitHub's REST API as an App or an installation: cached installation tokens
(and uncached, narrower ones for runs), paging with ETags, rate limits.

githubkit (fixed in the stack) sends the requests. We call its raw `arequest` rather than
its typed REST methods because paging and conditional requests need the response headers
(ETag, Link, rate limit) and the raw JSON the webhook parsers already understand. Its HTTP
cache and automatic retries are off: the cache would answer our `If-None-Match` itself
(we would never see a 304), and a retry that sleeps inside a job hides a rate limit from
the queue, which should defer the job instead. All requests of one App share a pool of
keep-alive connections (adapters/github/pooled.py); `aclose()` closes it at shutdown.

A client made by `paced(gate)` asks the gate before each content-creating request as an
installation (`creates_content`), so the outbox counts the requests it really sends, here
where every one of them passes, rather than a guess per effect (bot/effects/pacing.py).
"""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import AsyncGenerator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
import structlog
from githubkit.exception import RequestError, RequestFailed

from adapters.base import AccessToken, CachedPage, EtagStore, Json, Page, PayloadError, WriteGate
from adapters.errors import AdapterError, RateLimited, RequestRejected, TransientError
from adapters.github.auth import (
    app_jwt,
    load_private_key,
    parse_access_token,
    utcnow,
)
from adapters.github.pooled import PooledGitHub

log = structlog.get_logger(__name__)

T = TypeVar("T")

ACCEPT = "application/vnd.github+json"
# The REST version both github.com and GitHub Enterprise Server 3.x serve.
API_VERSION = "2022-11-28"
USER_AGENT = "openase"
PER_PAGE = 100  # GitHub's maximum page size
# Refresh an installation token this long before it expires, so a request that starts with
# it (or a slow page loop) never presents an expired one.
TOKEN_REFRESH_MARGIN = timedelta(minutes=5)
# A secondary rate limit without retry-after: GitHub asks for "at least one minute".
SECONDARY_LIMIT_WAIT = timedelta(seconds=60)

_FULL_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
# What GitHub's secondary rate limits count as content-creating (its "Rate limits for the
# REST API"); a GraphQL request only when its document is a mutation.
CONTENT_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
_MUTATION = re.compile(r"^(?:\s|,|#[^\n]*)*mutation\b")


def graphql_url(api_url: str) -> str:
    """The GraphQL endpoint next to a REST base URL (GHES: `/api/v3` -> `/api/graphql`)."""
    base = api_url.rstrip("/")
    if base.endswith("/api/v3"):
        return base.removesuffix("/v3") + "/graphql"
    return base + "/graphql"


class GitHubTransport:
    """Requests as a GitHub App and as its installations, against one API base URL.

    The typed endpoints (adapters/github/client.py and its siblings) build on `request`
    and `pages`; nothing outside adapters/github/ should need either.
    """

    def __init__(
        self,
        *,
        api_url: str,
        app_id: int,
        private_key: str,
        clock: Callable[[], datetime] = utcnow,
        timeout: float = 30.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.app_id = app_id
        self._key = load_private_key(private_key)
        self._clock = clock
        self._origin = _origin(self.api_url)
        # One pooled httpx client, opened lazily in the running event loop (this object may be
        # built before there is one) and shared by every job of the process.
        self._github = PooledGitHub(
            base_url=self.api_url + "/",
            user_agent=USER_AGENT,
            timeout=timeout,
        )
        self._tokens: dict[int, AccessToken] = {}
        self._token_locks: dict[int, asyncio.Lock] = {}
        # Per credential (the App, or one installation): when its exhausted limit resets.
        self._blocked_until: dict[int | None, datetime] = {}
        self._graphql_url = graphql_url(self.api_url)
        self._gate: WriteGate | None = None

    def paced(self, gate: WriteGate) -> Self:
        """This client, sharing its connections, tokens and limits, whose content-creating
        requests as an installation each wait for `gate` to let them out."""
        clone = copy.copy(self)  # shallow: the pool and the token and limit dicts are shared
        clone._gate = gate
        return clone

    def creates_content(self, method: str, target: str, json: Any) -> bool:
        """Whether GitHub counts this request against its content-creating limits."""
        if method.upper() not in CONTENT_METHODS:
            return False
        if target == self._graphql_url:
            query = json.get("query") if isinstance(json, dict) else None
            return isinstance(query, str) and _MUTATION.match(query) is not None
        return True

    async def aclose(self) -> None:
        """Close the pooled connections (at shutdown); a later request opens new ones."""
        await self._github.aclose()

    # --- auth --------------------------------------------------------------------------

    def jwt(self) -> str:
        """A fresh App JWT (cheap to sign; the App endpoints are called rarely)."""
        return app_jwt(self.app_id, self._key, now=self._clock())

    async def installation_token(self, installation_id: int) -> str:
        """A cached installation token, fetched once per expiry by however many callers."""
        token = self._tokens.get(installation_id)
        if token is not None and self._fresh(token):
            return token.value
        lock = self._token_locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            token = self._tokens.get(installation_id)
            if token is not None and self._fresh(token):
                return token.value  # another caller refreshed it while we waited
            response = await self.request(
                "POST", f"/app/installations/{installation_id}/access_tokens", installation_id=None
            )
            token = parse_access_token(json_body(response), installation_id)
            self._tokens[installation_id] = token
            log.info(
                "github_installation_token",
                installation_id=installation_id,
                expires_at=token.expires_at.isoformat(),
            )
            return token.value

    async def run_token(self, installation_id: int, full_name: str, *, write: bool) -> AccessToken:
        """A new token for one run: the contents of `full_name` alone, write or read.

        Never cached and never used for our own requests: each run's token is minted for
        it, so a leaked one reaches one repository's code, for an hour at most.
        """
        _, name = checked_full_name(full_name).split("/")
        response = await self.request(
            "POST",
            f"/app/installations/{installation_id}/access_tokens",
            installation_id=None,
            # GitHub's `apps/create-installation-access-token`: names without the owner;
            # metadata:read comes with any token.
            json={
                "repositories": [name],
                "permissions": {"contents": "write" if write else "read"},
            },
        )
        token = parse_access_token(json_body(response), installation_id)
        log.info(
            "github_run_token",
            installation_id=installation_id,
            repo=full_name,
            write=write,
            expires_at=token.expires_at.isoformat(),
        )
        return token

    def _fresh(self, token: AccessToken) -> bool:
        return token.expires_at - TOKEN_REFRESH_MARGIN > self._clock()

    # --- requests ----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        installation_id: int | None,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request as the App (`installation_id=None`) or as an installation.

        Raises RateLimited, TransientError or RequestRejected; returns 2xx and 304 answers.
        """
        target = self._absolute(url)
        self._check_budget(installation_id, method, target)
        gate = self._gate if self.creates_content(method, target, json) else None
        written: object = None
        if gate is not None and installation_id is not None:
            written = await gate.write(installation_id)  # Paced: nothing is sent
        else:
            gate = None  # the App's own requests are not paced
        try:
            response = await self._send(method, target, installation_id, params, json, headers)
            if response.status_code == 401 and installation_id is not None:
                # A revoked or rotated token: drop it and try once with a new one.
                self._tokens.pop(installation_id, None)
                response = await self._send(method, target, installation_id, params, json, headers)
        finally:
            if gate is not None:
                # Counted from when it is over, by when GitHub has surely counted it (it
                # may have waited on its way for a connection, or for this event loop).
                await gate.sent(written)
        self._note_budget(installation_id, response)
        log.debug(
            "github_request",
            method=method,
            url=display_url(target),
            status=response.status_code,
            ratelimit_remaining=response.headers.get("x-ratelimit-remaining"),
        )
        if response.status_code >= 400:
            raise self._error(method, target, response)
        return response

    async def _send(
        self,
        method: str,
        target: str,
        installation_id: int | None,
        params: Mapping[str, str | int] | None,
        json: Any,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        if installation_id is None:
            credential = self.jwt()
        else:
            credential = await self.installation_token(installation_id)
        sent = {
            "Accept": ACCEPT,
            "X-GitHub-Api-Version": API_VERSION,
            "Authorization": f"Bearer {credential}",
            **(headers or {}),
        }
        try:
            answer = await self._github.arequest(
                method,
                target,
                # httpx 0.28 drops a URL's own query when given params={}: Link URLs carry theirs.
                params=dict(params) if params else None,
                json=json,
                headers=sent,
            )
        except RequestFailed as exc:  # githubkit raises for >= 400; we map statuses ourselves
            return exc.response.raw_response
        except RequestError as exc:  # timeouts and connection failures
            raise TransientError(
                f"GitHub {method} {display_url(target)} failed: {type(exc.exc).__name__}: {exc.exc}"
            ) from exc
        return answer.raw_response

    def _absolute(self, url: str) -> str:
        if url.startswith("/"):
            return self.api_url + url
        # Link headers are absolute; never send a credential to another host.
        if _origin(url) != self._origin:
            raise AdapterError(f"refusing to follow a link away from {self.api_url}: {url}")
        return url

    def _check_budget(self, installation_id: int | None, method: str, target: str) -> None:
        until = self._blocked_until.get(installation_id)
        if until is None:
            return
        if until > self._clock():
            raise RateLimited(
                until,
                f"GitHub rate limit of {_who(installation_id)} used up; not sending "
                f"{method} {display_url(target)} before {until:%Y-%m-%d %H:%M:%S} UTC",
            )
        del self._blocked_until[installation_id]

    def _note_budget(self, installation_id: int | None, response: httpx.Response) -> None:
        if response.status_code >= 400:
            return
        if response.headers.get("x-ratelimit-remaining") == "0":
            reset = _reset_time(response)
            if reset is not None:
                log.warning(
                    "github_rate_limit_exhausted",
                    who=_who(installation_id),
                    resets_at=reset.isoformat(),
                )
                self._blocked_until[installation_id] = reset

    def _error(self, method: str, target: str, response: httpx.Response) -> AdapterError:
        status = response.status_code
        what = f"GitHub answered {status} to {method} {display_url(target)}"
        message = _message(response)
        if status in (403, 429):
            retry_at = self._rate_limit_reset(response, message)
            if retry_at is not None:
                return RateLimited(
                    retry_at,
                    f"{what}: rate limited ({message or 'no message'}); "
                    f"retry after {retry_at:%Y-%m-%d %H:%M:%S} UTC",
                )
        if status >= 500 or status == 408:
            return TransientError(f"{what}: {message or response.reason_phrase}")
        if status == 401:
            return RequestRejected(
                status,
                f"{what}: bad credentials ({message or 'no message'}); check "
                "OPENASE_GITHUB_APP_ID and the App's private key",
            )
        return RequestRejected(status, f"{what}: {message or response.reason_phrase}")

    def _rate_limit_reset(self, response: httpx.Response, message: str) -> datetime | None:
        now = self._clock()
        retry_after = response.headers.get("retry-after")
        if retry_after is not None:
            return _retry_after(retry_after, now)
        if response.headers.get("x-ratelimit-remaining") == "0":
            reset = _reset_time(response)
            if reset is not None:
                return reset
        if response.status_code == 429 or "rate limit" in message.lower():
            return now + SECONDARY_LIMIT_WAIT
        return None  # a 403 that is about permissions, not limits

    # --- paging ------------------------------------------------------------------------

    async def pages(
        self,
        path: str,
        *,
        installation_id: int,
        params: Mapping[str, str | int],
        convert: Callable[[Json], T | None],
        etags: EtagStore | None = None,
        last_page: Callable[[list[Json]], bool] | None = None,
    ) -> AsyncGenerator[Page[T], None]:
        """Follow `rel="next"` links; with `etags`, unchanged pages come back as 304s.

        A page's ETag is stored only when the consumer asks for the next page, i.e. after it
        has taken (applied) this one: a crash in between means that page is fetched again.
        `last_page(items)` true: the rest of the list is not wanted (a list sorted by time
        reached back far enough); the page is stored without its next link, so its 304
        ends the paging too.
        """
        url: str | None = str(
            httpx.URL(self.api_url + path, params={**params, "per_page": PER_PAGE})
        )
        seen: set[str] = set()
        while url is not None and url not in seen:  # `seen` guards against a Link loop
            seen.add(url)
            cached = await etags.get(url) if etags is not None else None
            headers = {"If-None-Match": cached.etag} if cached is not None else {}
            response = await self.request(
                "GET", url, installation_id=installation_id, headers=headers
            )
            if response.status_code == 304:
                if cached is None:
                    raise TransientError(f"GitHub answered 304 to an unconditional GET {url}")
                yield Page(url=url, items=(), not_modified=True, next_url=cached.next_url)
                url = cached.next_url
                continue
            body = json_body(response)
            if not isinstance(body, list):
                raise PayloadError(f"GET {display_url(url)}: expected a JSON array")
            next_url = response.links.get("next", {}).get("url")
            if last_page is not None and last_page(body):
                next_url = None
            items = tuple(item for item in map(convert, body) if item is not None)
            yield Page(url=url, items=items, not_modified=False, next_url=next_url)
            etag = response.headers.get("etag")
            if etags is not None and etag:
                await etags.put(url, CachedPage(etag=etag, next_url=next_url))
            url = next_url


# --- helpers ---------------------------------------------------------------------------


def checked_full_name(full_name: str) -> str:
    """`full_name` if it is OWNER/REPO, as it goes into a path; else ValueError."""
    if not _FULL_NAME.match(full_name):
        raise ValueError(f"not an OWNER/REPO name: {full_name!r}")
    return full_name


def json_body(response: httpx.Response) -> Any:
    """The answer's JSON; an answer that is not JSON is a proxy's or a broken one: transient."""
    try:
        return response.json()
    except ValueError as exc:
        where = display_url(str(response.request.url))
        raise TransientError(
            f"GitHub answered {response.status_code} to {where} with a body that is not JSON"
        ) from exc


def json_object(response: httpx.Response) -> Json:
    """The answer's JSON object; PayloadError when GitHub answered something else."""
    body = json_body(response)
    if not isinstance(body, dict):
        raise PayloadError(f"{display_url(str(response.request.url))}: expected a JSON object")
    return body


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port


def _reset_time(response: httpx.Response) -> datetime | None:
    raw = response.headers.get("x-ratelimit-reset")
    if raw is None or not raw.isdigit():
        return None
    return datetime.fromtimestamp(int(raw), UTC)


def _retry_after(value: str, now: datetime) -> datetime:
    """`retry-after` is seconds, or (per HTTP) a date; an unreadable one means a minute."""
    if value.strip().isdigit():
        return now + timedelta(seconds=int(value))
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError):
        return now + SECONDARY_LIMIT_WAIT


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return ""
    message = data.get("message") if isinstance(data, dict) else None
    return message[:300] if isinstance(message, str) else ""


def display_url(url: str) -> str:
    """A URL for messages and logs: path and query (credentials never travel in URLs)."""
    parsed = httpx.URL(url)
    query = parsed.query.decode()
    return parsed.path + (f"?{query}" if query else "")


def _who(installation_id: int | None) -> str:
    return "the App" if installation_id is None else f"installation {installation_id}"


def segment(text: str) -> str:
    """A name (a label, a login, a team) as one URL path segment: '/' and all encoded."""
    return quote(text, safe="")
