"""Linear GraphQL client: the writes the bot makes to Linear, and the reads backfill and
reconciliation need.

Requests go through gql over one httpx session (respx can stand in for Linear in tests).
Every document the client sends is in documents.py, and the tests validate each one
against Linear's published schema. Issues come back in the shape Linear's webhooks
deliver, so `adapters.linear.events.ticket_from_issue` reads both.

Linear answers most failures as GraphQL errors, often inside an HTTP 400: the error's
`extensions.code` / `extensions.type` say what happened, the HTTP status only sometimes.
gql keeps the status and headers of no particular answer, so an httpx response hook
records them per call (a context variable) for the error mapping to read.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from gql import Client, GraphQLRequest
from gql.client import AsyncClientSession
from gql.transport.exceptions import (
    TransportError,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.httpx import HTTPXAsyncTransport

from adapters.base import IssueTracker, TrackerComment
from adapters.errors import AdapterError, RateLimited, RequestRejected, TransientError
from adapters.linear.documents import DOCUMENTS

Json = dict[str, Any]
_Item = TypeVar("_Item")

API_URL = "https://api.linear.app/graphql"
USER_AGENT = "openase"
CACHE_SECONDS = 60.0
# Without a reset header Linear gives no hint; its buckets refill within the hour, and a
# minute keeps a deferred job from hammering it.
RATE_LIMIT_WAIT = timedelta(seconds=60)
_MAX_MESSAGE = 300


@dataclass(frozen=True)
class LinearState:
    """A workflow state; `type` is triage, backlog, unstarted, started, completed or canceled."""

    id: str
    name: str
    type: str


@dataclass(frozen=True)
class LinearTeam:
    id: str
    key: str
    name: str


@dataclass(frozen=True)
class LinearLabel:
    id: str
    name: str


@dataclass(frozen=True)
class IssuePage:
    """Webhook-shaped issues, and the cursor of the next page (None on the last)."""

    issues: list[dict[str, Any]]
    next_cursor: str | None


class _Answer:
    """The HTTP status and headers of the answer to one call."""

    status: int | None = None
    headers: httpx.Headers | None = None


_current_answer: ContextVar[_Answer | None] = ContextVar("linear_answer", default=None)


async def _record_answer(response: httpx.Response) -> None:
    answer = _current_answer.get()
    if answer is not None:
        answer.status = response.status_code
        answer.headers = response.headers


@functools.cache
def _request(operation: str) -> GraphQLRequest:
    """The parsed document of an operation (parsed once per process, on first use)."""
    return GraphQLRequest(DOCUMENTS[operation], operation_name=operation)


class LinearClient:
    """One Linear workspace, as the user whose personal API key this is."""

    def __init__(self, api_key: str, *, url: str = API_URL, timeout: float = 30.0) -> None:
        self._api_key = api_key
        self._url = url
        self._timeout = timeout
        self._client: Client | None = None
        self._session: AsyncClientSession | None = None
        self._connecting = asyncio.Lock()
        self._viewer_id: str | None = None
        self._states: dict[str, tuple[float, list[LinearState]]] = {}
        self._labels: dict[str, tuple[float, list[LinearLabel]]] = {}

    async def aclose(self) -> None:
        """Close the HTTP session (the client reconnects if used again)."""
        if self._client is not None and self._session is not None:
            await self._client.close_async()  # type: ignore[no-untyped-call]  # gql leaves it unannotated
        self._client = self._session = None

    # --- reads ------------------------------------------------------------------------------

    async def viewer_id(self) -> str:
        """The id of the API key's user (the bot's own actor in webhooks); asked once."""
        if self._viewer_id is None:
            data = await self._execute("Viewer")
            self._viewer_id = str(data["viewer"]["id"])
        return self._viewer_id

    async def team_states(self, team_id: str) -> list[LinearState]:
        """The team's workflow states, cached for a minute."""
        cached = _fresh(self._states.get(team_id))
        if cached is not None:
            return list(cached)
        data = await self._execute("TeamStates", {"teamId": team_id})
        states = [
            LinearState(node["id"], node["name"], node["type"])
            for node in data["team"]["states"]["nodes"]
        ]
        self._states[team_id] = (time.monotonic(), states)
        return list(states)

    async def team_labels(self, team_id: str) -> list[LinearLabel]:
        """Labels an issue of the team can carry (the team's and the workspace's), cached
        for a minute."""
        cached = _fresh(self._labels.get(team_id))
        if cached is not None:
            return list(cached)
        labels: list[LinearLabel] = []
        after: str | None = None
        while True:
            data = await self._execute("TeamLabels", {"teamId": team_id, "after": after})
            connection = data["issueLabels"]
            labels.extend(LinearLabel(node["id"], node["name"]) for node in connection["nodes"])
            after = _next_cursor(connection)
            if after is None:
                break
        self._labels[team_id] = (time.monotonic(), labels)
        return list(labels)

    async def ensure_label(self, team_id: str, name: str, color: str | None = None) -> LinearLabel:
        """The label called `name` (any case) on the team or workspace, created on the team
        when there is none."""
        found = _named(await self.team_labels(team_id), name)
        if found is not None:
            return found
        try:
            data = await self._execute(
                "CreateLabel", {"teamId": team_id, "name": name, "color": color}
            )
        except RequestRejected:
            # Linear refuses a second label of the same name: another worker may have
            # created it since our list was cached.
            self._labels.pop(team_id, None)
            found = _named(await self.team_labels(team_id), name)
            if found is None:
                raise
            return found
        self._require_success("CreateLabel", data["issueLabelCreate"])
        node = data["issueLabelCreate"]["issueLabel"]
        label = LinearLabel(node["id"], node["name"])
        cached = self._labels.get(team_id)
        if cached is not None:
            self._labels[team_id] = (cached[0], [*cached[1], label])
        return label

    async def team_by_key(self, key: str) -> LinearTeam:
        """The team whose key is `key` (ENG); RequestRejected(404) when there is none."""
        data = await self._execute("TeamByKey", {"key": key})
        nodes = data["teams"]["nodes"]
        if not nodes:
            raise RequestRejected(404, f"Linear has no team with the key {key[:64]!r}")
        return LinearTeam(str(nodes[0]["id"]), str(nodes[0]["key"]), str(nodes[0]["name"]))

    async def issue(self, issue_id: str) -> dict[str, Any]:
        """One issue (by id or identifier such as ENG-123), shaped like a webhook's `data`."""
        data = await self._execute("Issue", {"id": issue_id})
        return _webhook_shaped(data["issue"])

    async def issues_page(
        self, team_key: str, *, after: str | None = None, first: int = 50
    ) -> IssuePage:
        """One page of the team's issues, most recently updated first, webhook-shaped."""
        data = await self._execute(
            "IssuesPage", {"teamKey": team_key, "first": first, "after": after}
        )
        connection = data["issues"]
        return IssuePage(
            issues=[_webhook_shaped(node) for node in connection["nodes"]],
            next_cursor=_next_cursor(connection),
        )

    async def issues_changed_since(
        self, team_key: str, since: datetime, *, before: str | None = None, last: int = 50
    ) -> IssuePage:
        """One page of the team's issues updated at or after `since`, webhook-shaped, least
        recently updated first; pass its `next_cursor` as `before` for the next (more
        recently updated) page."""
        data = await self._execute(
            "IssuesChangedSince",
            {
                "teamKey": team_key,
                # As Linear writes its own times: UTC, milliseconds, "Z".
                "since": since.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
                "last": last,
                "before": before,
            },
        )
        connection = data["issues"]
        page = connection["pageInfo"]
        earlier = page["hasPreviousPage"] and page["startCursor"]
        return IssuePage(
            # A page keeps the connection's order (newest first): oldest first reads on.
            issues=[_webhook_shaped(node) for node in reversed(connection["nodes"])],
            next_cursor=str(page["startCursor"]) if earlier else None,
        )

    # --- writes -----------------------------------------------------------------------------

    async def create_issue(
        self,
        issue_id: str,
        team_id: str,
        title: str,
        description: str,
        label_ids: list[str],
    ) -> dict[str, Any]:
        """A new issue with the id `issue_id` (UUID v4 format), webhook-shaped. Linear
        refuses a second issue with one id, so a retry cannot create two."""
        data = await self._execute(
            "CreateIssue",
            {
                "id": issue_id,
                "teamId": team_id,
                "title": title,
                "description": description,
                "labelIds": label_ids,
            },
        )
        self._require_success("CreateIssue", data["issueCreate"])
        return _webhook_shaped(data["issueCreate"]["issue"])

    async def move_issue(self, issue_id: str, state_id: str) -> None:
        """Put the issue in the workflow state `state_id`."""
        data = await self._execute("MoveIssue", {"id": issue_id, "stateId": state_id})
        self._require_success("MoveIssue", data["issueUpdate"])

    async def add_label(self, issue_id: str, label_id: str) -> None:
        data = await self._execute("AddLabel", {"id": issue_id, "labelId": label_id})
        self._require_success("AddLabel", data["issueAddLabel"])

    async def remove_label(self, issue_id: str, label_id: str) -> None:
        data = await self._execute("RemoveLabel", {"id": issue_id, "labelId": label_id})
        self._require_success("RemoveLabel", data["issueRemoveLabel"])

    async def create_comment(self, issue_id: str, body: str) -> dict[str, Any]:
        """A new comment on the issue: `{"id", "url"}`."""
        data = await self._execute("CreateComment", {"issueId": issue_id, "body": body})
        self._require_success("CreateComment", data["commentCreate"])
        return dict(data["commentCreate"]["comment"])

    async def update_comment(self, comment_id: str, body: str) -> dict[str, Any]:
        """Replace a comment's body: `{"id", "url"}`; RequestRejected(404) when it is gone."""
        data = await self._execute("UpdateComment", {"id": comment_id, "body": body})
        self._require_success("UpdateComment", data["commentUpdate"])
        return dict(data["commentUpdate"]["comment"])

    async def react(self, comment_id: str, emoji: str) -> str:
        """React to a comment with an emoji by name ("eyes", "rocket", "-1"); the reaction id."""
        data = await self._execute("React", {"commentId": comment_id, "emoji": emoji})
        self._require_success("React", data["reactionCreate"])
        return str(data["reactionCreate"]["reaction"]["id"])

    async def attach_url(self, issue_id: str, url: str, title: str) -> None:
        """Link `url` to the issue (Linear keeps one attachment per URL and issue)."""
        data = await self._execute("AttachUrl", {"issueId": issue_id, "url": url, "title": title})
        self._require_success("AttachUrl", data["attachmentLinkURL"])

    # --- the issue tracker role (adapters.base.IssueTracker) -----------------------------

    async def account_id(self) -> str:
        """The API key's user, as webhooks name an actor (the viewer)."""
        return await self.viewer_id()

    async def post_comment(self, issue: str, body: str) -> TrackerComment:
        """A new comment on the issue (by id or identifier such as ENG-123)."""
        return _tracker_comment(await self.create_comment(issue, body))

    async def edit_comment(self, issue: str, comment_id: str, body: str) -> TrackerComment:
        """Replace a comment's body (Linear finds a comment by its id; `issue` is not sent);
        RequestRejected(404) when it is gone."""
        return _tracker_comment(await self.update_comment(comment_id, body))

    async def link_url(self, issue: str, url: str, title: str) -> None:
        """Attach `url` to the issue, once per URL."""
        await self.attach_url(issue, url, title)

    # --- transport --------------------------------------------------------------------------

    async def _connected(self) -> AsyncClientSession:
        async with self._connecting:
            if self._session is None:
                transport = HTTPXAsyncTransport(
                    url=self._url,
                    headers={"Authorization": self._api_key, "User-Agent": USER_AGENT},
                    timeout=self._timeout,
                    event_hooks={"response": [_record_answer]},
                )
                client = Client(transport=transport, execute_timeout=self._timeout)
                self._session = await client.connect_async()  # type: ignore[no-untyped-call]  # gql leaves it unannotated
                self._client = client
            return self._session

    async def _execute(self, operation: str, variables: Json | None = None) -> Json:
        session = await self._connected()
        answer = _Answer()
        token = _current_answer.set(answer)
        try:
            request = GraphQLRequest(
                _request(operation), variable_values=variables, operation_name=operation
            )
            return await session.execute(request)
        except TransportQueryError as exc:
            raise self._query_error(operation, exc.errors or [], answer) from exc
        except TransportServerError as exc:
            raise self._status_error(operation, exc.code or answer.status or 0, answer) from exc
        except (TransportError, TimeoutError) as exc:
            # Connection failures, timeouts and answers that are not GraphQL at all (a proxy's
            # error page with a 200) may all go away on their own.
            reason = "timed out" if isinstance(exc, TimeoutError) else _kind(exc)
            raise TransientError(f"Linear {operation}: {reason}") from exc
        finally:
            _current_answer.reset(token)

    def _query_error(self, operation: str, errors: list[Any], answer: _Answer) -> AdapterError:
        first = errors[0] if errors and isinstance(errors[0], Mapping) else {}
        extensions = first.get("extensions") or {}
        codes = {_extension(e, "code") for e in errors if isinstance(e, Mapping)}
        types = {_extension(e, "type") for e in errors if isinstance(e, Mapping)}
        status = answer.status or 200
        if "RATELIMITED" in codes or "ratelimited" in types or status == 429:
            return _rate_limited(operation, answer.headers)
        message = self._linear_message(first)
        if status >= 500 or types & {"internal error", "lock timeout", "network error"}:
            return TransientError(f"Linear {operation} failed ({status}): {message}")
        return RequestRejected(
            _rejection_status(first, extensions, status), f"Linear {operation} failed: {message}"
        )

    def _status_error(self, operation: str, status: int, answer: _Answer) -> AdapterError:
        """An answer that carried no GraphQL errors to read, only its HTTP status."""
        if status == 429:
            return _rate_limited(operation, answer.headers)
        if status >= 500:
            return TransientError(f"Linear {operation}: HTTP {status}")
        return RequestRejected(status, f"Linear {operation} failed: HTTP {status}")

    def _linear_message(self, error: Mapping[str, Any]) -> str:
        message = str(error.get("message") or "no message")
        friendly = _extension(error, "userPresentableMessage")
        if friendly and friendly != message:
            message = f"{message} ({friendly})"
        # Linear never echoes the key, but this text ends up in logs, so make sure.
        return message.replace(self._api_key, "[redacted]")[:_MAX_MESSAGE]

    @staticmethod
    def _require_success(operation: str, payload: Mapping[str, Any]) -> None:
        if payload.get("success") is not True:
            # Linear took the request but did not do it; the same request will not fare better.
            raise RequestRejected(422, f"Linear {operation} answered success: false")


# --- helpers ----------------------------------------------------------------------------------


def _tracker_comment(comment: Mapping[str, Any]) -> TrackerComment:
    url = comment.get("url")
    return TrackerComment(id=str(comment["id"]), url=url if isinstance(url, str) else None)


def _fresh(entry: tuple[float, list[_Item]] | None) -> list[_Item] | None:
    if entry is None or time.monotonic() - entry[0] > CACHE_SECONDS:
        return None
    return entry[1]


def _named(labels: list[LinearLabel], name: str) -> LinearLabel | None:
    wanted = name.casefold()
    return next((label for label in labels if label.name.casefold() == wanted), None)


def _next_cursor(connection: Mapping[str, Any]) -> str | None:
    page = connection["pageInfo"]
    return str(page["endCursor"]) if page["hasNextPage"] and page["endCursor"] else None


def _webhook_shaped(node: Mapping[str, Any]) -> dict[str, Any]:
    """A GraphQL Issue -> the shape of a webhook's `data`: labels as a list, the ids beside
    the objects, `number` an integer (the schema types it Float)."""
    issue = dict(node)
    labels = [dict(label) for label in issue.pop("labels")["nodes"]]
    number = issue.get("number")
    if isinstance(number, float) and number.is_integer():
        issue["number"] = int(number)
    issue["labels"] = labels
    issue["labelIds"] = [label["id"] for label in labels]
    issue["teamId"] = issue["team"]["id"]
    issue["stateId"] = issue["state"]["id"]
    return issue


def _extension(error: Mapping[str, Any], key: str) -> Any:
    extensions = error.get("extensions")
    return extensions.get(key) if isinstance(extensions, Mapping) else None


def _rejection_status(error: Mapping[str, Any], extensions: Mapping[str, Any], status: int) -> int:
    message = str(error.get("message") or "")
    if message.startswith("Entity not found"):
        return 404
    if extensions.get("code") == "AUTHENTICATION_ERROR" or extensions.get("type") == (
        "authentication error"
    ):
        return 401
    if extensions.get("code") == "FORBIDDEN" or extensions.get("type") == "forbidden":
        return 403
    declared = extensions.get("statusCode")
    if isinstance(declared, int) and 400 <= declared < 500:
        return declared
    return status if 400 <= status < 500 else 400


def _rate_limited(operation: str, headers: httpx.Headers | None) -> RateLimited:
    retry_at = _retry_at(headers)
    when = retry_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return RateLimited(retry_at, f"Linear {operation}: rate limited; retry after {when}")


def _retry_at(headers: httpx.Headers | None) -> datetime:
    """When Linear's request bucket refills (`X-RateLimit-Requests-Reset`, epoch ms)."""
    value = headers.get("x-ratelimit-requests-reset") if headers is not None else None
    try:
        return datetime.fromtimestamp(float(value) / 1000, UTC) if value else _later()
    except (ValueError, OverflowError, OSError):
        return _later()


def _later() -> datetime:
    return datetime.now(UTC) + RATE_LIMIT_WAIT


def _kind(exc: BaseException) -> str:
    """What went wrong, without the exception's text (it may quote a request)."""
    cause = exc.__cause__ or exc
    return type(cause).__name__


# mypy holds the client to its role: a method that drifts from IssueTracker fails here.
_ROLE: type[IssueTracker] = LinearClient
