"""Jira REST client: the writes the bot makes (transitions, comments, labels, remote links)
and the JQL searches backfill and reconciliation read.

The `jira` library sends the requests. It is synchronous (requests), so every call runs in
a worker thread and the event loop never blocks. Its session retries 429 and 503 by
sleeping in that thread; it is built with `max_retries=0` so a rate limit surfaces at once
as `RateLimited` and the caller's queue defers the job instead. Where the library has no
method for a request (comment edits, label updates, remote links with a `globalId`) we send
it through the library's own session, so auth, timeouts and error parsing stay the same.
Bodies are REST API v2 plain strings (wiki markup), the shape the webhooks carry too.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from jira import JIRA, JIRAError

from adapters.base import IssueTracker, TrackerComment
from adapters.errors import AdapterError, RateLimited, RequestRejected, TransientError

T = TypeVar("T")
Json = dict[str, Any]

# Everything adapters/jira/events.py's ticket_from_issue reads, plus what the mirror shows.
SEARCH_FIELDS = (
    "summary",
    "description",
    "status",
    "labels",
    "components",
    "project",
    "issuetype",
    "created",
    "updated",
    "resolutiondate",
    "reporter",
    "assignee",
    "resolution",
)
# A 429 that says nothing about when to come back: Atlassian's guidance is to back off.
DEFAULT_RATE_LIMIT_WAIT = timedelta(seconds=60)
# Issue keys (PROJ-12) or numeric ids, comment ids: they go into URL paths.
_ISSUE_REF = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]*-[0-9]+|[0-9]+)$")
_NUMERIC_ID = re.compile(r"^[0-9]+$")
_PROJECT_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class NoTransition(AdapterError):
    """The issue's workflow has no transition from its status to the wanted one."""

    def __init__(self, key: str, current: str, wanted: str, available: list[str]) -> None:
        self.key = key
        self.current = current
        self.wanted = wanted
        self.available = available
        listed = ", ".join(available) or "none"
        super().__init__(
            f"{key} cannot move from {current} to {wanted}: no such transition "
            f"(available: {listed})"
        )


@dataclass(frozen=True)
class Moved:
    key: str
    status: str
    already: bool  # the issue was in that status; no transition was made


@dataclass(frozen=True)
class SearchPage:
    issues: list[Json]  # raw REST issue JSON: key, id, self, fields
    next_token: str | None  # None on the last page


class JiraClient:
    """One Jira site, one account: Cloud (email + API token) or Server/DC (PAT)."""

    def __init__(
        self,
        url: str,
        email: str | None,
        api_token: str,
        *,
        timeout: float = 30.0,
        cloud: bool | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.cloud = (
            cloud
            if cloud is not None
            else (urlsplit(self.url).hostname or "").endswith(".atlassian.net")
        )
        self._email = email
        self._token = api_token
        self._timeout = timeout
        self._jira: JIRA | None = None
        self._build_lock = threading.Lock()
        self._myself_id: str | None = None

    async def aclose(self) -> None:
        """Close the HTTP session (a later call opens a new one)."""
        with self._build_lock:
            jira, self._jira = self._jira, None
        if jira is not None:
            await asyncio.to_thread(jira.close)

    async def myself_id(self) -> str:
        """The API user as webhooks name it: `accountId` (Cloud) or `name`/`key` (Server)."""
        if self._myself_id is None:
            me = await self._call("read the API user", lambda jira: jira.myself())
            for field in ("accountId", "name", "key"):
                if isinstance(me.get(field), str) and me[field]:
                    self._myself_id = str(me[field])
                    break
            else:
                raise TransientError("jira: /myself answered without an account id")
        return self._myself_id

    async def move(self, key: str, status: str) -> Moved:
        """Put `key` into `status` through the workflow transition that leads there."""
        _check_issue(key)
        return await self._call(f"move {key} to {status!r}", lambda j: _move(j, key, status))

    async def add_comment(self, key: str, body: str) -> dict[str, Any]:
        """Comment on `key`; returns the comment's `id` and a browse `url` focused on it."""
        _check_issue(key)
        comment = await self._call(
            f"comment on {key}", lambda jira: jira.add_comment(key, body).raw
        )
        comment_id = str(comment["id"])
        return {"id": comment_id, "url": self._comment_url(key, comment_id)}

    async def update_comment(self, key: str, comment_id: str, body: str) -> dict[str, Any]:
        """Replace a comment's body; RequestRejected(404) when it was deleted."""
        _check_issue(key)
        if not _NUMERIC_ID.match(comment_id):
            raise ValueError(f"not a Jira comment id: {comment_id!r}")
        await self._call(
            f"edit comment {comment_id} on {key}",
            lambda jira: _send(jira, "PUT", f"issue/{key}/comment/{comment_id}", {"body": body}),
        )
        return {"id": comment_id, "url": self._comment_url(key, comment_id)}

    async def set_labels(
        self, key: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None:
        """Add and remove labels in one edit, leaving every other label alone."""
        _check_issue(key)
        operations = [{"add": label} for label in add] + [{"remove": label} for label in remove]
        if not operations:
            return
        await self._call(
            f"change the labels of {key}",
            lambda jira: _send(jira, "PUT", f"issue/{key}", {"update": {"labels": operations}}),
        )

    async def add_remote_link(self, key: str, url: str, title: str) -> None:
        """Link `url` from the issue; the URL is the link's globalId, so Jira updates the
        link on a retry instead of adding a second one."""
        _check_issue(key)
        link = {"globalId": url, "object": {"url": url, "title": title}}
        # Not jira.add_remote_link: it first lists application links, an admin-only call.
        await self._call(
            f"link {url} from {key}",
            lambda jira: _send(jira, "POST", f"issue/{key}/remotelink", link),
        )

    async def create_issue(
        self,
        project: str,
        summary: str,
        description: str,
        labels: Sequence[str] = (),
        *,
        issue_type: str = "Task",
    ) -> dict[str, Any]:
        """A new issue in `project` (POST /rest/api/2/issue): its `id`, `key` and browse
        `url`. Jira has no idempotency key: a caller that may retry looks for what an
        earlier try created first (`changed_since`)."""
        if not _PROJECT_KEY.match(project):
            raise ValueError(f"not a Jira project key: {project!r}")
        fields = {
            "project": {"key": project},
            "issuetype": {"name": issue_type},
            "summary": summary,
            "description": description,
            "labels": list(labels),
        }
        created = await self._call(
            f"create an issue in {project}",
            lambda jira: _post(jira, "issue", {"fields": fields}),
        )
        key = str(created["key"])
        return {"id": str(created["id"]), "key": key, "url": f"{self.url}/browse/{key}"}

    def browse_url(self, key: str) -> str:
        return f"{self.url}/browse/{key}"

    async def search(self, jql: str, *, token: str | None = None, limit: int = 50) -> SearchPage:
        """One page of issues matching `jql`; pass `next_token` back for the next one."""
        if self.cloud:
            return await self._call(
                f"search {jql!r}", lambda jira: _search_cloud(jira, jql, token, limit)
            )
        start = _start_at(token)
        return await self._call(
            f"search {jql!r}", lambda jira: _search_server(jira, jql, start, limit)
        )

    async def changed_since(
        self,
        project: str,
        since: datetime,
        *,
        token: str | None = None,
        limit: int = 50,
        now: datetime | None = None,
    ) -> SearchPage:
        """One page of the project's issues updated at or after `since` (or up to a minute
        before: JQL counts whole minutes), least recently updated first; pass its
        `next_token` back as `token` for the next page."""
        if not _PROJECT_KEY.match(project):
            raise ValueError(f"not a Jira project key: {project!r}")
        # Relative to the site's clock ("-90m"), not a date: a JQL date is read in the API
        # user's time zone, which the site does not tell us.
        behind = (now or datetime.now(UTC)) - since
        minutes = max(1, math.ceil(behind.total_seconds() / 60))
        jql = f'project = "{project}" AND updated >= "-{minutes}m" ORDER BY updated ASC'
        return await self.search(jql, token=token, limit=limit)

    # --- the issue tracker role (adapters.base.IssueTracker) -----------------------------

    async def account_id(self) -> str:
        """The API user, as webhooks name an actor (see `myself_id`)."""
        return await self.myself_id()

    async def post_comment(self, issue: str, body: str) -> TrackerComment:
        """A new comment on the issue `issue` (its key, PROJ-12)."""
        comment = await self.add_comment(issue, body)
        return TrackerComment(id=comment["id"], url=comment["url"])

    async def edit_comment(self, issue: str, comment_id: str, body: str) -> TrackerComment:
        """Replace a comment's body; RequestRejected(404) when it was deleted."""
        comment = await self.update_comment(issue, comment_id, body)
        return TrackerComment(id=comment["id"], url=comment["url"])

    async def link_url(self, issue: str, url: str, title: str) -> None:
        """Link `url` from the issue (a remote link), once per URL."""
        await self.add_remote_link(issue, url, title)

    # --- plumbing -----------------------------------------------------------------------

    def _comment_url(self, key: str, comment_id: str) -> str:
        return f"{self.url}/browse/{key}?focusedCommentId={comment_id}"

    def _connection(self) -> JIRA:
        """The library's client, built on first use in a worker thread."""
        with self._build_lock:
            if self._jira is None:
                # get_server_info=False: no request at construction; we know the flavour.
                auth: Mapping[str, Any] = (
                    {"basic_auth": (self._email, self._token)}
                    if self._email is not None
                    else {"token_auth": self._token}
                )
                jira = JIRA(
                    server=self.url,
                    get_server_info=False,
                    max_retries=0,
                    timeout=self._timeout,
                    **auth,
                )
                if self.cloud:
                    # What serverInfo would have said; it switches the library's search to
                    # the Cloud endpoints.
                    jira.deploymentType = "Cloud"
                self._jira = jira
            return self._jira

    async def _call(self, operation: str, work: Callable[[JIRA], T]) -> T:
        try:
            return await asyncio.to_thread(lambda: work(self._connection()))
        except JIRAError as exc:
            # Not chained: a JIRAError's text dumps request and response headers.
            raise self._mapped(operation, exc) from None
        except requests.exceptions.JSONDecodeError as exc:
            raise TransientError(f"jira: {operation}: the answer was not JSON") from exc
        except (
            requests.exceptions.Timeout,
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise TransientError(
                self._scrub(f"jira: {operation} failed: {type(exc).__name__}: {exc}")[:500]
            ) from exc

    def _mapped(self, operation: str, exc: JIRAError) -> AdapterError:
        status = exc.status_code
        detail = self._scrub(exc.text or "no message")[:500]
        if status is None:
            return TransientError(f"jira: {operation} failed: {detail}")
        what = f"jira answered {status} to: {operation}"
        if status == 429:
            headers = exc.response.headers if exc.response is not None else {}
            retry_at = _retry_at(headers, datetime.now(UTC))
            return RateLimited(
                retry_at, f"{what}: rate limited; retry after {retry_at:%Y-%m-%d %H:%M:%S} UTC"
            )
        if status >= 500 or status == 408:
            return TransientError(f"{what}: {detail}")
        if status == 401:
            return RequestRejected(
                status,
                f"{what}: bad credentials ({detail}); "
                "check OPENASE_JIRA_EMAIL and OPENASE_JIRA_API_TOKEN",
            )
        return RequestRejected(status, f"{what}: {detail}")

    def _scrub(self, text: str) -> str:
        """Belt and braces: a server that echoes the token must not put it in our logs."""
        return text.replace(self._token, "***") if self._token else text


def _move(jira: JIRA, key: str, wanted: str) -> Moved:
    issue = jira.issue(key, fields="status").raw
    current = str(((issue.get("fields") or {}).get("status") or {}).get("name") or "")
    if current.casefold() == wanted.casefold():
        return Moved(key, current, already=True)
    transitions = [t for t in jira.transitions(key) if isinstance(t, dict)]
    chosen = _pick(transitions, wanted)
    if chosen is None:
        available = [f"{t.get('name')} → {_target(t)}" for t in transitions]
        raise NoTransition(key, current, wanted, available)
    jira.transition_issue(key, str(chosen["id"]))
    return Moved(key, _target(chosen) or wanted, already=False)


def _pick(transitions: list[Json], wanted: str) -> Json | None:
    """The transition into status `wanted`; else one named `wanted` (workflows that name
    transitions after their targets, or callers that know the transition)."""
    want = wanted.casefold()
    for transition in transitions:
        if _target(transition).casefold() == want:
            return transition
    for transition in transitions:
        if str(transition.get("name", "")).casefold() == want:
            return transition
    return None


def _target(transition: Json) -> str:
    to = transition.get("to")
    return str(to.get("name", "")) if isinstance(to, dict) else ""


def _send(jira: JIRA, method: str, path: str, body: Json) -> None:
    """A request the library has no method for, through its session (auth, timeout and
    error parsing included: a non-2xx answer raises JIRAError)."""
    jira._session.request(method, jira._get_url(path), data=json.dumps(body))


def _post(jira: JIRA, path: str, body: Json) -> Json:
    """`_send` for a request whose answer we read."""
    response = jira._session.request("POST", jira._get_url(path), data=json.dumps(body))
    answer = response.json()
    if not isinstance(answer, dict):
        raise TransientError(f"jira: POST {path}: unexpected answer")
    return answer


def _search_cloud(jira: JIRA, jql: str, token: str | None, limit: int) -> SearchPage:
    # /rest/api/2/search/jql: the token-paged search that replaced /search on Cloud.
    page = jira.enhanced_search_issues(
        jql, nextPageToken=token, maxResults=limit, fields=list(SEARCH_FIELDS), json_result=True
    )
    if not isinstance(page, dict):
        raise TransientError(f"jira: search {jql!r}: unexpected answer")
    next_token = page.get("nextPageToken")
    if page.get("isLast") is True or not isinstance(next_token, str) or not next_token:
        next_token = None
    return SearchPage(_issues(page), next_token)


def _search_server(jira: JIRA, jql: str, start: int, limit: int) -> SearchPage:
    page = jira.search_issues(
        jql, startAt=start, maxResults=limit, fields=list(SEARCH_FIELDS), json_result=True
    )
    issues = _issues(page)
    total = page.get("total")
    after = start + len(issues)
    more = bool(issues) and isinstance(total, int) and after < total
    return SearchPage(issues, str(after) if more else None)


def _issues(page: Json) -> list[Json]:
    issues = page.get("issues")
    if not isinstance(issues, list):
        raise TransientError("jira: a search answer without an issue list")
    return [issue for issue in issues if isinstance(issue, dict)]


def _start_at(token: str | None) -> int:
    if token is None:
        return 0
    if not token.isdigit():
        raise ValueError(f"not a Server search token: {token!r}")
    return int(token)


def _retry_at(headers: Mapping[str, str], now: datetime) -> datetime:
    """Retry-After (seconds, or an HTTP date), else Jira's X-RateLimit-Reset (ISO 8601),
    else a minute from now."""
    retry_after = (headers.get("Retry-After") or "").strip()
    if retry_after:
        try:
            return now + timedelta(seconds=max(0.0, float(retry_after)))
        except ValueError:
            pass
        try:
            return parsedate_to_datetime(retry_after).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    reset = (headers.get("X-RateLimit-Reset") or "").strip()
    if reset:
        try:
            parsed = datetime.fromisoformat(reset.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return now + DEFAULT_RATE_LIMIT_WAIT


def _check_issue(key: str) -> None:
    if not _ISSUE_REF.match(key):
        raise ValueError(f"not a Jira issue key: {key!r}")


# mypy holds the client to its role: a method that drifts from IssueTracker fails here.
_ROLE: type[IssueTracker] = JiraClient
