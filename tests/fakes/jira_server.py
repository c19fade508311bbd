"""A recording fake of the Jira REST API: a real HTTP server on 127.0.0.1 in a thread.

The `jira` library talks through `requests`, which respx cannot intercept, so the fake
listens on a loopback port. It answers in the REST API v2 shapes of Atlassian's docs and of
the webhook fixtures in tests/fixtures/jira (issues, statuses with categories, users,
comments, transitions, remote links), pages searches the Server way (`/search`, startAt and
total) and the Cloud way (`/search/jql`, nextPageToken and isLast; Cloud answers the old
`/search` with 410 Gone, as it does since CHANGE-2046), and checks Basic (email:token) or
Bearer (PAT) auth. JQL: only `project = KEY [AND updated >= "-N(w|d|h|m)"] [ORDER BY
updated [ASC|DESC]]` (a relative date, counted back from the site's clock).

Every request is recorded in `requests` (method, path, JSON body) and `queries`; every
write the API user makes appends the webhook Jira would send to `outbound`. Faults
(`rate_limit`, `fail`, `slow`) apply to the next requests, whatever they are.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import itertools
import json
import re
import secrets
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

Json = dict[str, Any]
Answer = tuple[int, Any, dict[str, str]]  # status, JSON body (None: empty), headers
Transition = tuple[str, str, str]  # id, name, target status

# Status name -> (id, category key); categories as Jira Cloud numbers them.
STATUSES = {
    "To Do": ("10000", "new"),
    "In Progress": ("3", "indeterminate"),
    "In Review": ("10001", "indeterminate"),
    "Done": ("10002", "done"),
}
CATEGORIES = {
    "new": (2, "blue-gray", "To Do"),
    "indeterminate": (4, "yellow", "In Progress"),
    "done": (3, "green", "Done"),
}
# The transition into each status, named as Jira's classic workflow names them, so a
# transition's name and its target differ.
TRANSITION_INTO = {
    "To Do": ("11", "Stop Progress"),
    "In Progress": ("21", "Start Progress"),
    "In Review": ("31", "Request Review"),
    "Done": ("41", "Resolve"),
}
REOPEN: Transition = ("51", "Reopen", "To Do")
FIELD_NAMES = {
    "summary": ("Summary", ["summary"]),
    "description": ("Description", ["description"]),
    "status": ("Status", ["status"]),
    "labels": ("Labels", ["labels"]),
    "components": ("Component/s", ["component"]),
    "project": ("Project", ["project"]),
    "issuetype": ("Issue Type", ["issuetype", "type"]),
    "created": ("Created", ["created", "createdDate"]),
    "updated": ("Updated", ["updated", "updatedDate"]),
    "resolutiondate": ("Resolved", ["resolutiondate", "resolved"]),
    "reporter": ("Reporter", ["reporter"]),
    "assignee": ("Assignee", ["assignee"]),
    "resolution": ("Resolution", ["resolution"]),
    "priority": ("Priority", ["priority"]),
}
_JQL = re.compile(
    r'^\s*project\s*=\s*"?(?P<key>[A-Za-z][A-Za-z0-9_]*)"?\s*'
    r'(?:and\s+updated\s*>=\s*(?P<quote>"?)-(?P<ago>\d+)(?P<unit>[wdhm])(?P=quote)\s*)?'
    r"(?:order\s+by\s+updated(?:\s+(?P<direction>asc|desc))?)?\s*$",
    re.IGNORECASE,
)
_UNITS = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
}
_ISSUE_EXPAND = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"


def default_transitions() -> dict[str, list[Transition]]:
    """Any status to any other, except that Done only reopens to To Do."""
    table: dict[str, list[Transition]] = {}
    for source in STATUSES:
        table[source] = (
            [REOPEN]
            if source == "Done"
            else [(tid, name, to) for to, (tid, name) in TRANSITION_INTO.items() if to != source]
        )
    return table


def _error(status: int, *messages: str, errors: Json | None = None) -> Answer:
    return status, {"errorMessages": list(messages), "errors": errors or {}}, {}


@dataclass
class _Fault:
    status: int | None = None  # None: answer normally, after the delay
    headers: dict[str, str] = field(default_factory=dict)
    body: Json | None = None
    delay: float = 0.0


class FakeJira:
    """A Jira site with one workflow, served on 127.0.0.1; use as a context manager."""

    def __init__(
        self,
        *,
        cloud: bool = True,
        email: str = "openase-bot@example.com",
        token: str | None = None,
    ) -> None:
        self.cloud = cloud
        self.token = token or f"jira-token-{secrets.token_urlsafe(18)}"
        self.lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.users: dict[str, Json] = {}
        self._emails: dict[str, str] = {}
        self.projects: dict[str, Json] = {}
        self.issues: dict[str, Json] = {}
        self.comments: dict[str, list[Json]] = defaultdict(list)
        self._deleted_comments: dict[str, list[Json]] = defaultdict(list)
        self.remote_links: dict[str, list[Json]] = defaultdict(list)
        self.transitions = default_transitions()
        self.requests: list[tuple[str, str, Any]] = []
        self.queries: list[tuple[str, dict[str, list[str]]]] = []
        self.outbound: list[Json] = []
        self.crashes: list[str] = []  # tracebacks of the fake's own bugs (answered 500)
        self._faults: list[_Fault] = []
        self._lost: list[tuple[str, re.Pattern[str]]] = []
        self._ids = itertools.count(10000)
        self._numbers: dict[str, itertools.count[int]] = {}
        self._page_tokens: dict[str, tuple[str, int]] = {}
        self._last_time: datetime | None = None
        self._api_account = "5f0c0ffee0ddba11ab1e0ase"
        self.api_user = self.add_user(self._api_account, "openase-bot", email)
        self.human = self.add_user("5b10a2844c20165700ede21g", "alice", "alice@example.com")

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeJira:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fake-jira",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeJira:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- model ---------------------------------------------------------------------------

    def add_user(
        self, account_id: str, name: str, email: str, *, display_name: str | None = None
    ) -> Json:
        """A user in the shape of the site's flavour (Cloud: accountId; Server: name/key)."""
        with self.lock:
            base = self.url + "/rest/api/2/user"
            user: Json
            if self.cloud:
                user = {"self": f"{base}?accountId={account_id}", "accountId": account_id}
            else:
                user = {"self": f"{base}?username={name}", "name": name, "key": name}
                user["emailAddress"] = email
            user |= {
                "avatarUrls": {"48x48": f"{self.url}/secure/useravatar?ownerId={account_id}"},
                "displayName": display_name or name,
                "active": True,
                "timeZone": "Etc/UTC",
            }
            if self.cloud:
                user["accountType"] = "atlassian"
            self.users[account_id] = user
            self._emails[account_id] = email
            return copy.deepcopy(user)

    def add_project(self, key: str, name: str) -> Json:
        with self.lock:
            project_id = str(next(self._ids))
            project = {
                "self": f"{self.url}/rest/api/2/project/{project_id}",
                "id": project_id,
                "key": key,
                "name": name,
                "projectTypeKey": "software",
                "simplified": False,
            }
            self.projects[key] = project
            self._numbers[key] = itertools.count(1)
            return copy.deepcopy(project)

    def add_issue(
        self,
        project_key: str,
        summary: str,
        description: str = "",
        labels: Sequence[str] = (),
        components: Sequence[str] = (),
        status: str = "To Do",
        reporter: Json | None = None,
    ) -> Json:
        """A Task in `project_key`; the reporter defaults to the human user."""
        with self.lock:
            project = self.projects[project_key]
            issue_id = str(next(self._ids))
            key = f"{project_key}-{next(self._numbers[project_key])}"
            stamp = self._stamp()
            done = STATUSES[status][1] == "done"
            self.issues[key] = {
                "expand": _ISSUE_EXPAND,
                "id": issue_id,
                "self": f"{self.url}/rest/api/2/issue/{issue_id}",
                "key": key,
                "fields": {
                    "statuscategorychangedate": stamp,
                    "issuetype": {
                        "self": f"{self.url}/rest/api/2/issuetype/10001",
                        "id": "10001",
                        "description": "A small, distinct piece of work.",
                        "name": "Task",
                        "subtask": False,
                    },
                    "project": copy.deepcopy(project),
                    "components": [self._component(name) for name in components],
                    "created": stamp,
                    "updated": stamp,
                    "resolutiondate": stamp if done else None,
                    "resolution": self._resolution() if done else None,
                    "summary": summary,
                    "description": description or None,
                    "labels": list(labels),
                    "reporter": copy.deepcopy(reporter or self.human),
                    "assignee": None,
                    "priority": {
                        "self": f"{self.url}/rest/api/2/priority/3",
                        "iconUrl": f"{self.url}/images/icons/priorities/medium.svg",
                        "name": "Medium",
                        "id": "3",
                    },
                    "status": self._status(status),
                },
            }
            return copy.deepcopy(self.issues[key])

    def add_comment(self, key: str, body: str, author: Json | None = None) -> Json:
        """A comment written in Jira's UI (by `human` unless `author` says who)."""
        with self.lock:
            issue = self.issues[key]
            comment_id = str(next(self._ids))
            stamp = self._stamp()
            who = copy.deepcopy(author or self.human)
            comment: Json = {
                "self": f"{self.url}/rest/api/2/issue/{issue['id']}/comment/{comment_id}",
                "id": comment_id,
                "author": who,
                "body": body,
                "updateAuthor": who,
                "created": stamp,
                "updated": stamp,
            }
            if self.cloud:
                comment["jsdPublic"] = True
            self.comments[key].append(comment)
            return copy.deepcopy(comment)

    def move_by_hand(self, key: str, status: str, user: Json | None = None) -> Json:
        """A person moves the issue to `status` in Jira's UI (`human` unless `user`); the
        webhook Jira sends for it."""
        with self.lock:
            issue = self.issues[key]
            items = self._set_status(issue, status)
            issue["fields"]["updated"] = self._stamp()
            return self.issue_webhook(key, changelog_items=items, user=user or self.human)

    def remove_comment(self, key: str, comment_id: str) -> None:
        """Someone deleted the comment in Jira's UI."""
        with self.lock:
            for comment in list(self.comments[key]):
                if comment["id"] == comment_id:
                    self.comments[key].remove(comment)
                    self._deleted_comments[key].append(comment)

    # --- faults --------------------------------------------------------------------------

    def rate_limit(
        self, times: int = 1, retry_after: int | None = 30, reset: datetime | None = None
    ) -> None:
        """The next `times` requests get 429, with Retry-After and/or X-RateLimit-Reset."""
        headers = {"RateLimit-Reason": "jira-quota-tenant-based", "X-RateLimit-Remaining": "0"}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if reset is not None:
            headers["X-RateLimit-Reset"] = reset.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
        body = {"errorMessages": ["Rate limit exceeded."], "errors": {}}
        with self.lock:
            self._faults += [_Fault(429, headers, body) for _ in range(times)]

    def fail(self, times: int = 1, status: int = 500) -> None:
        body = {"errorMessages": ["Internal server error"], "errors": {}}
        with self.lock:
            self._faults += [_Fault(status, {}, body) for _ in range(times)]

    def lose_answer(self, method: str, path: str, times: int = 1) -> None:
        """Do the next `times` requests of `method` on a path matching `path`, then answer
        502 (a proxy lost Jira's answer): the change is made, the caller does not learn of it."""
        with self.lock:
            self._lost += [(method, re.compile(path))] * times

    def slow(self, seconds: float, times: int = 1) -> None:
        """The next `times` requests are answered (normally) after `seconds`."""
        with self.lock:
            self._faults += [_Fault(delay=seconds) for _ in range(times)]

    # --- webhooks ------------------------------------------------------------------------

    def issue_webhook(
        self,
        key: str,
        event: str = "jira:issue_updated",
        changelog_items: list[Json] | None = None,
        user: Json | None = None,
    ) -> Json:
        """The delivery Jira sends for `key` as it is now; `user` defaults to the reporter."""
        with self.lock:
            issue = self.issues[key]
            actor = user or issue["fields"]["reporter"]
            payload = self._issue_event(issue, event, actor)
            if changelog_items is not None:
                payload["changelog"] = {
                    "id": str(next(self._ids)),
                    "items": copy.deepcopy(changelog_items),
                }
            return payload

    def comment_webhook(self, key: str, comment_id: str, event: str = "comment_created") -> Json:
        with self.lock:
            known = self.comments[key] + self._deleted_comments[key]
            comment = next(c for c in known if c["id"] == comment_id)
            return {
                "timestamp": _millis(),
                "webhookEvent": event,
                "comment": copy.deepcopy(comment),
                "issue": self._comment_issue(self.issues[key]),
            }

    # --- HTTP ----------------------------------------------------------------------------

    def handle(self, method: str, target: str, authorization: str | None, raw: bytes) -> Answer:
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        with self.lock:
            self.requests.append((method, parts.path, body))
            self.queries.append((parts.path, query))
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            time.sleep(fault.delay)
            if fault.status is not None:
                return fault.status, fault.body, fault.headers
        if not self._authenticated(authorization):
            status, payload, _ = _error(
                401, "You are not authenticated. Authentication required to perform this operation."
            )
            return status, payload, {"X-Seraph-LoginReason": "AUTHENTICATED_FAILED"}
        if bad_json:
            return _error(400, "Unexpected character in the request body: not JSON.")
        try:
            with self.lock:
                answer = self._route(method, parts.path, query, body)
                for lost in self._lost:
                    if lost[0] == method and lost[1].search(parts.path):
                        self._lost.remove(lost)
                        return 502, {"errorMessages": ["Bad Gateway"], "errors": {}}, {}
                return answer
        except Exception:
            self.crashes.append(traceback.format_exc())
            return _error(500, "the fake crashed; see FakeJira.crashes")

    def _authenticated(self, header: str | None) -> bool:
        scheme, _, credential = (header or "").partition(" ")
        if scheme.lower() == "bearer":
            return hmac.compare_digest(credential.strip().encode(), self.token.encode())
        if scheme.lower() != "basic":
            return False
        try:
            login, _, secret = base64.b64decode(credential.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        logins = {self._emails[self._api_account], self.api_user.get("name")}
        return login in logins and hmac.compare_digest(secret.encode(), self.token.encode())

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Answer:
        for methods, pattern, handler in self._routes():
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if method not in methods:
                return _error(405, f"Method {method} is not allowed for {path}")
            return handler(method, match.groupdict(), query, body)
        return _error(404, f"null for uri: {self.url}{path}")

    def _routes(self) -> Iterable[tuple[set[str], re.Pattern[str], Callable[..., Answer]]]:
        api, issue = r"/rest/api/(?P<v>2|3|latest)", r"/rest/api/2/issue/(?P<key>[^/]+)"
        yield {"GET"}, re.compile(api + "/serverInfo"), self._server_info
        yield {"GET"}, re.compile(api + "/myself"), self._myself
        yield {"GET"}, re.compile(api + "/field"), self._fields
        yield {"GET", "POST"}, re.compile(api + "/search/jql"), self._search_jql
        yield {"GET", "POST"}, re.compile(api + "/search"), self._search
        yield {"GET", "POST"}, re.compile(issue + "/transitions"), self._transitions
        yield {"GET", "POST"}, re.compile(issue + "/comment"), self._comments
        yield {"GET", "PUT"}, re.compile(issue + r"/comment/(?P<id>[^/]+)"), self._comment
        yield {"GET", "POST"}, re.compile(issue + "/remotelink"), self._remote_links
        yield {"GET", "PUT"}, re.compile(api + "/issue/(?P<key>[^/]+)"), self._issue
        yield {"POST"}, re.compile(api + "/issue"), self._create

    # --- endpoints -----------------------------------------------------------------------

    def _server_info(self, method: str, args: Json, query: Any, body: Any) -> Answer:
        version = [1001, 0, 0] if self.cloud else [9, 12, 15]
        return (
            200,
            {
                "baseUrl": self.url,
                "version": ".".join(map(str, version)) + ("-SNAPSHOT" if self.cloud else ""),
                "versionNumbers": version,
                "deploymentType": "Cloud" if self.cloud else "Server",
                "buildNumber": 100290 if self.cloud else 9120015,
                "buildDate": "2026-01-05T00:00:00.000+0000",
                "serverTime": self._stamp(),
                "scmInfo": "0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6",
                "serverTitle": "Jira",
            },
            {},
        )

    def _myself(self, method: str, args: Json, query: Any, body: Any) -> Answer:
        me = copy.deepcopy(self.api_user)
        me |= {
            "emailAddress": self._emails[self._api_account],
            "locale": "en_US",
            "groups": {"size": 1, "items": []},
            "applicationRoles": {"size": 1, "items": []},
            "expand": "groups,applicationRoles",
        }
        return 200, me, {}

    def _fields(self, method: str, args: Json, query: Any, body: Any) -> Answer:
        return (
            200,
            [
                {
                    "id": field_id,
                    "key": field_id,
                    "name": name,
                    "custom": False,
                    "orderable": True,
                    "navigable": True,
                    "searchable": True,
                    "clauseNames": clauses,
                    "schema": {"type": "string", "system": field_id},
                }
                for field_id, (name, clauses) in FIELD_NAMES.items()
            ],
            {},
        )

    def _issue(self, method: str, args: Json, query: dict[str, list[str]], body: Any) -> Answer:
        issue = self._find(args["key"])
        if issue is None:
            return _missing_issue()
        if method == "GET":
            wanted = _field_list(query.get("fields"))
            return 200, self._render(issue, args["v"], wanted), {}
        if args["v"] != "2" or not isinstance(body, dict):
            return _error(400, "The fake edits issues through API v2 with a JSON object.")
        return self._edit(issue, body)

    def _create(self, method: str, args: Json, query: Any, body: Any) -> Answer:
        """POST /issue as Jira answers it: 201 with id, key and self; 400 naming each field
        that is wrong. The API user is the reporter; the issue starts in To Do."""
        fields = body.get("fields") if isinstance(body, dict) else None
        if args["v"] != "2" or not isinstance(fields, dict):
            return _error(400, "The fake creates issues through API v2 with `fields`.")
        errors: Json = {}
        project = str((fields.get("project") or {}).get("key"))
        if project not in self.projects:
            errors["project"] = "Specify a valid project ID or key"
        # A stock Jira Software project's issue types.
        if (fields.get("issuetype") or {}).get("name") not in ("Task", "Story", "Bug", "Epic"):
            errors["issuetype"] = "Specify a valid issue type"
        if not isinstance(fields.get("summary"), str) or not fields["summary"].strip():
            errors["summary"] = "You must specify a summary of the issue."
        labels = fields.get("labels") or []
        for label in labels:
            if not isinstance(label, str) or not label or " " in label:
                errors["labels"] = f"The label '{label}' contains spaces which is invalid."
        extra = set(fields) - {"project", "issuetype", "summary", "description", "labels"}
        for name in sorted(extra):
            errors[name] = _not_settable(name)
        if errors:
            return _error(400, errors=errors)
        created = self.add_issue(
            project,
            fields["summary"],
            fields.get("description") or "",
            labels=labels,
            reporter=self.api_user,
        )
        issue = self.issues[created["key"]]
        self.outbound.append(self._issue_event(issue, "jira:issue_created", self.api_user))
        return 201, {"id": issue["id"], "key": issue["key"], "self": issue["self"]}, {}

    def _edit(self, issue: Json, body: Json) -> Answer:
        fields = issue["fields"]
        errors: Json = {}
        labels = list(fields["labels"])
        for name, value in (body.get("fields") or {}).items():
            if name == "labels":
                labels = list(value)
            elif name in ("summary", "description"):
                fields[name] = value
            else:
                errors[name] = _not_settable(name)
        for name, operations in (body.get("update") or {}).items():
            if name != "labels":
                errors[name] = _not_settable(name)
                continue
            for operation in operations:
                for verb, value in operation.items():
                    if verb == "add" and value not in labels:
                        labels.append(value)
                    elif verb == "remove" and value in labels:
                        labels.remove(value)
                    elif verb == "set":
                        labels = list(value)
        for label in labels:
            if not isinstance(label, str) or not label or " " in label:
                errors["labels"] = f"The label '{label}' contains spaces which is invalid."
        if errors:
            return _error(400, errors=errors)
        if labels != fields["labels"]:
            items = [
                {
                    "field": "labels",
                    "fieldtype": "jira",
                    "fieldId": "labels",
                    "from": None,
                    "fromString": " ".join(fields["labels"]),
                    "to": None,
                    "toString": " ".join(labels),
                }
            ]
            fields["labels"] = labels
            self._wrote(issue, items)
        return 204, None, {}

    def _transitions(self, method: str, args: Json, query: Any, body: Any) -> Answer:
        issue = self._find(args["key"])
        if issue is None:
            return _missing_issue()
        available = self.transitions.get(issue["fields"]["status"]["name"], [])
        if method == "GET":
            listed = [
                {
                    "id": tid,
                    "name": name,
                    "to": self._status(to),
                    "hasScreen": False,
                    "isGlobal": False,
                    "isInitial": False,
                    "isAvailable": True,
                    "isConditional": False,
                    "isLooped": False,
                }
                for tid, name, to in available
            ]
            return 200, {"expand": "transitions", "transitions": listed}, {}
        wanted = (body or {}).get("transition", {}).get("id") if isinstance(body, dict) else None
        if wanted is None:
            return _error(400, "Missing 'transition' identifier")
        chosen = next((t for t in available if t[0] == str(wanted)), None)
        if chosen is None:
            return _error(400, f"Transition id '{wanted}' is not valid for this issue.")
        self._wrote(issue, self._set_status(issue, chosen[2]))
        return 204, None, {}

    def _comments(self, method: str, args: Json, query: Any, body: Any) -> Answer:
        issue = self._find(args["key"])
        if issue is None:
            return _missing_issue()
        key = issue["key"]
        if method == "GET":
            listed = copy.deepcopy(self.comments[key])
            page = {"startAt": 0, "maxResults": len(listed), "total": len(listed)}
            return 200, page | {"comments": listed}, {}
        text = body.get("body") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return _error(400, errors={"comment": "Comment body can not be empty!"})
        comment_id = str(next(self._ids))
        stamp = self._stamp()
        comment: Json = {
            "self": f"{self.url}/rest/api/2/issue/{issue['id']}/comment/{comment_id}",
            "id": comment_id,
            "author": copy.deepcopy(self.api_user),
            "body": text,
            "updateAuthor": copy.deepcopy(self.api_user),
            "created": stamp,
            "updated": stamp,
        }
        if self.cloud:
            comment["jsdPublic"] = True
        self.comments[key].append(comment)
        issue["fields"]["updated"] = stamp
        self.outbound.append(self.comment_webhook(key, comment_id, "comment_created"))
        return 201, copy.deepcopy(comment), {}

    def _comment(self, method: str, args: Json, query: Any, body: Any) -> Answer:
        issue = self._find(args["key"])
        if issue is None:
            return _missing_issue()
        comment = next((c for c in self.comments[issue["key"]] if c["id"] == args["id"]), None)
        if comment is None:
            return _error(404, f"Can not find a comment for the id: {args['id']}.")
        if method == "GET":
            return 200, copy.deepcopy(comment), {}
        text = body.get("body") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return _error(400, errors={"comment": "Comment body can not be empty!"})
        comment |= {
            "body": text,
            "updateAuthor": copy.deepcopy(self.api_user),
            "updated": self._stamp(),
        }
        self.outbound.append(self.comment_webhook(issue["key"], comment["id"], "comment_updated"))
        return 200, copy.deepcopy(comment), {}

    def _remote_links(self, method: str, args: Json, query: Any, body: Any) -> Answer:
        issue = self._find(args["key"])
        if issue is None:
            return _missing_issue()
        links = self.remote_links[issue["key"]]
        if method == "GET":
            return 200, copy.deepcopy(links), {}
        target = body.get("object") if isinstance(body, dict) else None
        if not isinstance(target, dict) or not target.get("url") or not target.get("title"):
            return _error(
                400, errors={"object": "A remote link needs object.url and object.title."}
            )
        global_id = body.get("globalId")
        existing = next((x for x in links if global_id and x.get("globalId") == global_id), None)
        if existing is not None:
            existing["object"] = copy.deepcopy(target)
            answer = {"id": existing["id"], "self": existing["self"]}
            return 200, answer, {}
        link_id = next(self._ids)
        link = {
            "id": link_id,
            "self": f"{self.url}/rest/api/2/issue/{issue['key']}/remotelink/{link_id}",
            "globalId": global_id,
            "application": body.get("application") or {},
            "object": copy.deepcopy(target),
        }
        links.append(link)
        return 201, {"id": link_id, "self": link["self"]}, {}

    def _search(self, method: str, args: Json, query: dict[str, list[str]], body: Any) -> Answer:
        if self.cloud:
            return _error(
                410,
                "The requested API has been removed. Please migrate to the /rest/api/3/search/jql "
                "API. A full migration guideline is available at "
                "https://developer.atlassian.com/changelog/#CHANGE-2046",
            )
        params = _params(method, query, body)
        found = self._query(params.get("jql"))
        if isinstance(found, tuple):
            return found
        start = int(params.get("startAt") or 0)
        limit = min(int(params.get("maxResults") or 50), 1000)
        wanted = params.get("fields")
        issues = [self._render(i, args["v"], wanted) for i in found[start : start + limit]]
        page = {"expand": "schema,names", "startAt": start, "maxResults": limit}
        return 200, page | {"total": len(found), "issues": issues}, {}

    def _search_jql(
        self, method: str, args: Json, query: dict[str, list[str]], body: Any
    ) -> Answer:
        if not self.cloud:
            return _error(404, f"null for uri: {self.url}/rest/api/{args['v']}/search/jql")
        params = _params(method, query, body)
        jql = params.get("jql")
        found = self._query(jql)
        if isinstance(found, tuple):
            return found
        start = 0
        token = params.get("nextPageToken")
        if token:
            known = self._page_tokens.get(token)
            if known is None or known[0] != jql:
                return _error(400, "The provided next page token is invalid or expired.")
            start = known[1]
        limit = min(int(params.get("maxResults") or 50), 5000)
        # The enhanced search returns only ids unless it is asked for fields.
        wanted = params.get("fields") or ["id"]
        issues = [self._render(i, args["v"], wanted) for i in found[start : start + limit]]
        page: Json = {"issues": issues}
        if start + limit < len(found):
            next_token = secrets.token_urlsafe(24)
            self._page_tokens[next_token] = (jql or "", start + limit)
            page["nextPageToken"] = next_token
            page["isLast"] = False
        else:
            page["isLast"] = True
        return 200, page, {}

    # --- helpers -------------------------------------------------------------------------

    def _query(self, jql: Any) -> list[Json] | Answer:
        match = _JQL.match(jql) if isinstance(jql, str) else None
        if match is None:
            return _error(
                400,
                "Error in the JQL Query: this fake understands only 'project = KEY "
                '[AND updated >= "-Nm"] [ORDER BY updated [ASC|DESC]]\', '
                f"not {jql!r}.",
            )
        project = match["key"].upper()
        if project not in self.projects:
            return _error(
                400, f"The value '{match['key']}' does not exist for the field 'project'."
            )
        found = [i for i in self.issues.values() if i["fields"]["project"]["key"] == project]
        if match["ago"]:
            since = datetime.now(UTC) - int(match["ago"]) * _UNITS[match["unit"].lower()]
            found = [i for i in found if datetime.fromisoformat(i["fields"]["updated"]) >= since]
        found.sort(key=lambda issue: int(issue["id"]))
        if re.search(r"order\s+by", jql, re.IGNORECASE):
            descending = (match["direction"] or "asc").lower() == "desc"
            found.sort(key=lambda issue: str(issue["fields"]["updated"]), reverse=descending)
        return found

    def _find(self, key_or_id: str) -> Json | None:
        if key_or_id in self.issues:
            return self.issues[key_or_id]
        return next((i for i in self.issues.values() if i["id"] == key_or_id), None)

    def _render(self, issue: Json, version: str, wanted: list[str] | None) -> Json:
        """The issue as API `version` answers it, with the `wanted` fields (None: all)."""
        if wanted == ["id"]:
            return {"id": issue["id"]}
        rendered = copy.deepcopy(issue)
        if version == "3":
            rendered["self"] = f"{self.url}/rest/api/3/issue/{issue['id']}"
            rendered["fields"]["description"] = _adf(issue["fields"]["description"])
        if wanted is not None and not {"*all", "*navigable"} & set(wanted):
            rendered["fields"] = {k: v for k, v in rendered["fields"].items() if k in wanted}
        return rendered

    def _set_status(self, issue: Json, to: str) -> list[Json]:
        fields = issue["fields"]
        before = fields["status"]
        stamp = self._stamp()
        fields["status"] = self._status(to)
        fields["statuscategorychangedate"] = stamp
        items: list[Json] = [
            {
                "field": "status",
                "fieldtype": "jira",
                "fieldId": "status",
                "from": before["id"],
                "fromString": before["name"],
                "to": fields["status"]["id"],
                "toString": to,
            }
        ]
        was_done = before["statusCategory"]["key"] == "done"
        is_done = STATUSES[to][1] == "done"
        if is_done != was_done:
            fields["resolution"] = self._resolution() if is_done else None
            fields["resolutiondate"] = stamp if is_done else None
            items.append(
                {
                    "field": "resolution",
                    "fieldtype": "jira",
                    "fieldId": "resolution",
                    "from": None if is_done else "10000",
                    "fromString": None if is_done else "Done",
                    "to": "10000" if is_done else None,
                    "toString": "Done" if is_done else None,
                }
            )
        return items

    def _wrote(self, issue: Json, items: list[Json]) -> None:
        """The API user changed `issue`: bump `updated`, send the webhook Jira would."""
        issue["fields"]["updated"] = self._stamp()
        payload = self._issue_event(issue, "jira:issue_updated", self.api_user)
        payload["changelog"] = {"id": str(next(self._ids)), "items": items}
        self.outbound.append(payload)

    def _issue_event(self, issue: Json, event: str, user: Json) -> Json:
        kind = {"jira:issue_created": "issue_created", "jira:issue_deleted": "issue_deleted"}
        return {
            "timestamp": _millis(),
            "webhookEvent": event,
            "issue_event_type_name": kind.get(event, "issue_generic"),
            "user": copy.deepcopy(user),
            "issue": self._render(issue, "2", None),
        }

    def _comment_issue(self, issue: Json) -> Json:
        """Comment webhooks carry a slimmer issue, as the fixtures show."""
        kept = ("summary", "status", "labels", "updated", "created", "issuetype", "project")
        fields = {k: copy.deepcopy(v) for k, v in issue["fields"].items() if k in kept}
        return {"id": issue["id"], "self": issue["self"], "key": issue["key"], "fields": fields}

    def _status(self, name: str) -> Json:
        status_id, category = STATUSES[name]
        category_id, colour, category_name = CATEGORIES[category]
        return {
            "self": f"{self.url}/rest/api/2/status/{status_id}",
            "description": "",
            "iconUrl": f"{self.url}/",
            "name": name,
            "id": status_id,
            "statusCategory": {
                "self": f"{self.url}/rest/api/2/statuscategory/{category_id}",
                "id": category_id,
                "key": category,
                "colorName": colour,
                "name": category_name,
            },
        }

    def _resolution(self) -> Json:
        return {
            "self": f"{self.url}/rest/api/2/resolution/10000",
            "id": "10000",
            "description": "Work has been completed on this issue.",
            "name": "Done",
        }

    def _component(self, name: str) -> Json:
        component_id = str(next(self._ids))
        return {
            "self": f"{self.url}/rest/api/2/component/{component_id}",
            "id": component_id,
            "name": name,
        }

    def _stamp(self) -> str:
        """Now as Jira writes it, strictly after the previous stamp (ms resolution)."""
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if self._last_time is not None and now <= self._last_time:
            now = self._last_time + timedelta(milliseconds=1)
        self._last_time = now
        return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


def _handler_for(fake: FakeJira) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, payload, headers = fake.handle(
                self.command, self.path, self.headers.get("Authorization"), raw
            )
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if data:
                self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test output stays readable; `requests` records everything

    return Handler


def _params(method: str, query: dict[str, list[str]], body: Any) -> Json:
    """Search parameters from a POST body or a GET query (fields: repeated or comma-joined)."""
    if method == "POST":
        params = dict(body) if isinstance(body, dict) else {}
        if "fields" in params:
            params["fields"] = _field_list(params["fields"])
        return params
    params = {name: values[-1] for name, values in query.items() if values}
    if "fields" in query:
        params["fields"] = _field_list(query["fields"])
    return params


def _field_list(values: Any) -> list[str] | None:
    if values is None:
        return None
    listed = [values] if isinstance(values, str) else list(values)
    return [part.strip() for value in listed for part in str(value).split(",") if part.strip()]


def _adf(text: str | None) -> Json | None:
    """A v2 description as API v3 shows it: an Atlassian Document Format document."""
    if not text:
        return None
    paragraphs = [line for line in text.split("\n") if line]
    return {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": line}]}
            for line in paragraphs
        ],
    }


def _not_settable(name: str) -> str:
    return f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."


def _missing_issue() -> Answer:
    return _error(404, "Issue does not exist or you do not have permission to see it.")


def _millis() -> int:
    return int(time.time() * 1000)
