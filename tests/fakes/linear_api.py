"""A recording fake of Linear's GraphQL API: an in-memory workspace served through respx.

Requests are executed by graphql-core against Linear's own published schema
(tests/fixtures/linear/schema.graphql), so a misspelt field, a missing argument or a
variable of the wrong type is answered as Linear answers it (HTTP 400,
GRAPHQL_VALIDATION_FAILED) and kept in `invalid`. Resolvers cover what our client uses,
with Linear's semantics: cursors (both ways), date filters, updatedAt bumps, "Entity not
found" errors, attachments deduplicated by URL. Anything else a request asks of the fake
fails loudly (FAKE_UNSUPPORTED), never silently.

Every mutation also appends to `outbound` the webhook Linear would send for it, with the
API key's user (`viewer`) as actor; `issue_webhook` and `comment_webhook` build the same
payloads for changes a human makes.
"""

from __future__ import annotations

import functools
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import graphql
import httpx
import respx
from graphql import GraphQLError, GraphQLSchema

from tests.support.helpers import FIXTURES

Json = dict[str, Any]
View = Callable[[Json], Json]

SCHEMA_PATH = FIXTURES / "linear" / "schema.graphql"
WORKSPACE_URL = "https://linear.app/acme"
DEFAULT_STATES = (
    ("Triage", "triage", "#fc7840"),
    ("Backlog", "backlog", "#bec2c8"),
    ("Todo", "unstarted", "#e2e2e2"),
    ("In Progress", "started", "#f2c94c"),
    ("In Review", "started", "#0f783c"),
    ("Done", "completed", "#5e6ad2"),
    ("Canceled", "canceled", "#95a2b3"),
)
DEFAULT_PAGE = 50  # Linear's page size when `first` is not given
_COMMENT_WEBHOOK_FIELDS = ("id", "createdAt", "updatedAt", "body", "issueId", "parentId",
                           "userId", "editedAt", "url")  # fmt: skip


@functools.cache
def linear_schema() -> GraphQLSchema:
    """Linear's schema, built once per process (the SDL is 1.2 MB)."""
    return graphql.build_schema(SCHEMA_PATH.read_text())


# --- Linear's error shapes --------------------------------------------------------------------


def _error(message: str, code: str, type_: str, status: int, user_message: str) -> Json:
    extensions = {"type": type_, "code": code, "statusCode": status, "userError": True,
                  "userPresentableMessage": user_message}  # fmt: skip
    return {"message": message, "extensions": extensions}


def _raised(error: Json) -> GraphQLError:
    return GraphQLError(error["message"], extensions=error["extensions"])


def _not_found(entity: str) -> GraphQLError:
    message, user_message = f"Entity not found: {entity}", f"Could not find referenced {entity}."
    return _raised(_error(message, "INPUT_ERROR", "invalid input", 400, user_message))


def _invalid(message: str, user_message: str) -> GraphQLError:
    return _raised(_error(message, "INPUT_ERROR", "invalid input", 400, user_message))


def _forbidden(user_message: str) -> GraphQLError:
    return _raised(_error("Forbidden", "FORBIDDEN", "forbidden", 403, user_message))


def _unsupported(what: str) -> GraphQLError:
    return GraphQLError(
        f"FakeLinear does not implement {what}", extensions={"code": "FAKE_UNSUPPORTED"}
    )


_AUTH_FAILED = _error(
    "Authentication required, not authenticated",
    "AUTHENTICATION_ERROR",
    "authentication error",
    401,
    "You need to authenticate to access this operation.",
)
_RATE_LIMITED = _error(
    "Rate limit exceeded", "RATELIMITED", "ratelimited", 429, "Rate limit exceeded."
)
_SERVER_ERROR = {
    "message": "Internal server error",
    "extensions": {"type": "internal error", "code": "INTERNAL_SERVER_ERROR", "userError": False},
}


@dataclass(frozen=True)
class _Fault:
    status: int = 0
    body: Json | str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    error: type[httpx.TransportError] | None = None


# --- the fake ---------------------------------------------------------------------------------


class FakeLinear:
    """An in-memory Linear workspace; state is plain attributes a test may read and change."""

    def __init__(
        self, api_key: str = "lin_api_test", url: str = "https://linear.test/graphql"
    ) -> None:
        self.api_key = api_key
        self.url = url
        self.organization_id = str(uuid.uuid4())
        self.webhook_id = str(uuid.uuid4())
        self.teams: dict[str, Json] = {}  # by id; each with its `states` list
        self.users: dict[str, Json] = {}
        self.labels: dict[str, Json] = {}
        self.issues: dict[str, Json] = {}
        self.comments: list[Json] = []
        self.reactions: list[Json] = []
        self.attachments: list[Json] = []
        self.calls: list[tuple[str, Json]] = []  # (operation name, variables) of every request
        self.invalid: list[tuple[str, list[Json]]] = []  # (document, errors) Linear would refuse
        self.outbound: list[Json] = []  # webhooks Linear would send for the mutations made
        self._faults: list[_Fault] = []
        self._lost: list[str] = []  # operations whose next answer is lost after doing them
        self._last_ms = 0
        self.viewer = self.add_user("OpenASE", "openase@acme.test")  # the API key's user
        self.human = self.add_user("Ada Lovelace", "ada@example.com")  # default issue creator
        self._root: Json = {
            "viewer": lambda info: self.viewer,
            "team": self._team,
            "teams": self._teams,
            "issueLabels": self._issue_labels,
            "issue": lambda info, id: self._issue_view(self._issue_ref(id)),
            "issues": self._issues,
            "issueCreate": self._issue_create,
            "issueUpdate": self._issue_update,
            "issueAddLabel": lambda info, id, labelId: self._relabel(id, labelId, add=True),
            "issueRemoveLabel": lambda info, id, labelId: self._relabel(id, labelId, add=False),
            "issueLabelCreate": self._label_create,
            "commentCreate": self._comment_create,
            "commentUpdate": self._comment_update,
            "reactionCreate": self._reaction_create,
            "attachmentLinkURL": self._attachment_link_url,
        }

    def mount(self, router: respx.MockRouter) -> respx.Route:
        """Answer POSTs to `url` on `router`."""
        return router.post(self.url).mock(side_effect=self._serve)

    # --- model helpers ------------------------------------------------------------------------

    def add_team(self, key: str, name: str) -> Json:
        team: Json = {"id": _id(), "key": key, "name": name, "states": [], "issueCount": 0}
        for position, (state_name, type_, color) in enumerate(DEFAULT_STATES):
            team["states"].append(
                {
                    "id": _id(),
                    "name": state_name,
                    "type": type_,
                    "color": color,
                    "position": float(position),
                    "teamId": team["id"],
                }
            )
        self.teams[team["id"]] = team
        return team

    def add_user(self, name: str, email: str) -> Json:
        slug = email.split("@")[0]
        user: Json = {
            "id": _id(),
            "name": name,
            "displayName": slug,
            "email": email,
            "url": f"{WORKSPACE_URL}/profiles/{slug}",
            "avatarUrl": None,
        }
        self.users[user["id"]] = user
        return user

    def add_label(self, name: str, team_key: str | None = None, color: str = "#5e6ad2") -> Json:
        """A label of the team, or of the workspace when `team_key` is None."""
        team_id = self.team(team_key)["id"] if team_key else None
        stamp = self._stamp()
        label = {
            "id": _id(),
            "name": name,
            "color": color,
            "teamId": team_id,
            "isGroup": False,
            "parentId": None,
            "description": None,
            "creatorId": self.human["id"],
            "createdAt": stamp,
            "updatedAt": stamp,
        }
        self.labels[label["id"]] = label
        return label

    def add_issue(
        self,
        team_key: str,
        title: str,
        description: str = "",
        labels: Iterable[str] = (),
        state: str = "Todo",
        creator: Json | None = None,
    ) -> Json:
        """An issue; `labels` are names, made on the team when neither it nor the workspace
        has one of that name. `creator` defaults to `human`."""
        team = self.team(team_key)
        team["issueCount"] += 1
        number = team["issueCount"]
        identifier = f"{team['key']}-{number}"
        label_ids = [self._label_named(team, name)["id"] for name in labels]
        state_record = self.state(team_key, state)
        creator = creator or self.human
        stamp = self._stamp()
        issue = {
            "id": _id(),
            "identifier": identifier,
            "number": number,
            "title": title,
            "description": description,
            "priority": 0,
            "priorityLabel": "No priority",
            "sortOrder": -float(number),
            "boardOrder": 0,
            "estimate": None,
            "createdAt": stamp,
            "updatedAt": stamp,
            "startedAt": None,
            "completedAt": None,
            "canceledAt": None,
            "archivedAt": None,
            "trashed": None,
            "dueDate": None,
            "teamId": team["id"],
            "stateId": state_record["id"],
            "labelIds": label_ids,
            "creatorId": creator["id"],
            "assigneeId": None,
            "projectId": None,
            "parentId": None,
            "cycleId": None,
            "subscriberIds": [creator["id"]],
            "url": f"{WORKSPACE_URL}/issue/{identifier}/{_slug(title)}",
        }
        self._stamp_state_change(issue, state_record, stamp)
        self.issues[issue["id"]] = issue
        return issue

    def add_comment(self, issue_id: str, body: str, user: Json | None = None) -> Json:
        """A comment by `user` (default `human`) on the issue."""
        issue = self.issues[issue_id]
        stamp = self._stamp()
        comment_id = _id()
        comment = {
            "id": comment_id,
            "body": body,
            "issueId": issue["id"],
            "userId": (user or self.human)["id"],
            "parentId": None,
            "createdAt": stamp,
            "updatedAt": stamp,
            "editedAt": None,
            "archivedAt": None,
            "url": f"{issue['url']}#comment-{comment_id[:8]}",
        }
        self.comments.append(comment)
        return comment

    def remove_comment(self, comment_id: str) -> None:
        """Delete a comment (as a person would in Linear's UI)."""
        self.comments = [c for c in self.comments if c["id"] != comment_id]

    def team(self, key: str) -> Json:
        return next(t for t in self.teams.values() if t["key"] == key)

    def state(self, team_key: str, name: str) -> Json:
        return next(s for s in self.team(team_key)["states"] if s["name"] == name)

    def comment(self, comment_id: str) -> Json:
        return next(c for c in self.comments if c["id"] == comment_id)

    # --- faults -------------------------------------------------------------------------------

    def rate_limit(self, times: int = 1, reset_in: float = 30.0) -> datetime:
        """Answer the next `times` requests RATELIMITED (HTTP 400, as Linear does); returns
        the reset time sent in `X-RateLimit-Requests-Reset`."""
        reset_ms = int((time.time() + reset_in) * 1000)
        headers = (
            ("X-RateLimit-Requests-Limit", "5000"),
            ("X-RateLimit-Requests-Remaining", "0"),
            ("X-RateLimit-Requests-Reset", str(reset_ms)),
        )
        body = {"errors": [_RATE_LIMITED]}
        self._faults.extend(_Fault(400, body, headers) for _ in range(times))
        return datetime.fromtimestamp(reset_ms / 1000, UTC)

    def fail(self, times: int = 1, status: int = 500, body: str | None = None) -> None:
        """Answer the next `times` requests with `status`: Linear's JSON error, or `body` as
        text (a proxy's error page)."""
        answer: Json | str = body if body is not None else {"errors": [_SERVER_ERROR]}
        self._faults.extend(_Fault(status, answer) for _ in range(times))

    def lose_answer(self, operation: str, times: int = 1) -> None:
        """Do the next `times` requests of `operation`, then answer 502 (a proxy lost
        Linear's answer): the change is made, the caller does not learn of it."""
        self._lost.extend([operation] * times)

    def disconnect(
        self, times: int = 1, error: type[httpx.TransportError] = httpx.ConnectError
    ) -> None:
        """Fail the next `times` requests in transport (`httpx.ReadTimeout`, ...)."""
        self._faults.extend(_Fault(error=error) for _ in range(times))

    # --- webhooks -----------------------------------------------------------------------------

    def move_by_hand(self, issue_id: str, state_name: str, actor: Json | None = None) -> Json:
        """A person drags the issue to another state in Linear's UI; the webhook it sends."""
        issue = self.issues[issue_id]
        team = self.teams[issue["teamId"]]
        state = next(s for s in team["states"] if s["name"] == state_name)
        before = {"stateId": issue["stateId"], "updatedAt": issue["updatedAt"]}
        stamp = self._stamp()
        issue |= {"stateId": state["id"], "updatedAt": stamp}
        self._stamp_state_change(issue, state, stamp)
        return self.issue_webhook(issue_id, "update", before, actor or self.human)

    def issue_webhook(
        self,
        issue_id: str,
        action: str = "create",
        updated_from: Json | None = None,
        actor: Json | None = None,
    ) -> Json:
        """The Issue webhook for the issue as it is now; `actor` defaults to its creator."""
        issue = self.issues[issue_id]
        data = self._issue_data(issue)
        if action == "remove":
            data |= {"archivedAt": self._stamp(), "trashed": True}
        who = actor or self.users.get(issue["creatorId"]) or self.human
        return self._webhook("Issue", action, data, issue["url"], who, updated_from)

    def comment_webhook(
        self,
        comment_id: str,
        action: str = "create",
        updated_from: Json | None = None,
        actor: Json | None = None,
    ) -> Json:
        """The Comment webhook for the comment as it is now; `actor` defaults to its author."""
        comment = self.comment(comment_id)
        issue = self.issues[comment["issueId"]]
        user = self.users[comment["userId"]]
        data = {key: comment[key] for key in _COMMENT_WEBHOOK_FIELDS}
        data |= {
            "reactionData": [],
            "botActor": None,
            "issue": {key: issue[key] for key in ("id", "title", "identifier", "teamId", "url")},
            "user": {key: user[key] for key in ("id", "name", "email", "avatarUrl", "url")},
        }
        if action == "remove":
            data["archivedAt"] = self._stamp()
        return self._webhook("Comment", action, data, comment["url"], actor or user, updated_from)

    def _webhook(
        self,
        type_: str,
        action: str,
        data: Json,
        url: str,
        actor: Json,
        updated_from: Json | None,
    ) -> Json:
        payload: Json = {
            "action": action,
            "actor": {key: actor[key] for key in ("id", "name", "email", "url")} | {"type": "user"},
            "createdAt": data.get("updatedAt") or self._stamp(),
            "data": data,
            "url": url,
            "type": type_,
            "organizationId": self.organization_id,
            "webhookTimestamp": int(time.time() * 1000),
            "webhookId": self.webhook_id,
        }
        if updated_from is not None:
            payload["updatedFrom"] = updated_from
        return payload

    def _issue_data(self, issue: Json) -> Json:
        """An issue as webhooks carry it: its columns plus state, team, labels, assignee."""
        data = {key: value for key, value in issue.items() if key != "archivedAt"}
        data["labelIds"] = list(issue["labelIds"])
        data["subscriberIds"] = list(issue["subscriberIds"])
        state = self._state_record(issue["stateId"])
        team = self.teams[issue["teamId"]]
        data["state"] = {key: state[key] for key in ("id", "color", "name", "type")}
        data["team"] = {key: team[key] for key in ("id", "key", "name")}
        data["labels"] = [
            {key: self.labels[i][key] for key in ("id", "color", "name")} for i in issue["labelIds"]
        ]
        if issue["assigneeId"]:
            assignee = self.users[issue["assigneeId"]]
            data["assignee"] = {"id": assignee["id"], "name": assignee["name"]}
        data["botActor"] = None
        return data

    # --- HTTP ---------------------------------------------------------------------------------

    def _serve(self, request: httpx.Request) -> httpx.Response:
        try:
            body = json.loads(request.content)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _answer(400, {"errors": [{"message": "Must provide query string."}]})
        query: str = body["query"]
        variables = body.get("variables") or {}
        try:
            document: graphql.DocumentNode | None = graphql.parse(query)
            syntax_errors: list[GraphQLError] = []
        except GraphQLError as error:
            document, syntax_errors = None, [error]
        operation = body.get("operationName") or _operation_name(document) or "<anonymous>"
        self.calls.append((operation, variables))
        if self._faults:
            return self._faulted(request, self._faults.pop(0))
        if request.headers.get("authorization") != self.api_key:
            return _answer(400, {"errors": [_AUTH_FAILED]})
        if document is None:
            return self._refused(query, syntax_errors, "GRAPHQL_PARSE_FAILED")
        schema = linear_schema()
        errors = graphql.validate(schema, document)
        if errors:
            return self._refused(query, errors, "GRAPHQL_VALIDATION_FAILED")
        result = graphql.execute_sync(
            schema,
            document,
            root_value=self._root,
            variable_values=variables,
            operation_name=body.get("operationName"),
        )
        # Errors without a path concern the request itself (variables, operation name):
        # Linear refuses those before running anything.
        request_errors = [e for e in result.errors or () if e.path is None]
        if request_errors:
            return self._refused(query, request_errors, "BAD_USER_INPUT")
        answer: Json = {"data": result.data}
        if result.errors:
            answer["errors"] = [e.formatted for e in result.errors]
        if operation in self._lost:
            self._lost.remove(operation)
            return _answer(502, "<html><body>502 Bad Gateway</body></html>")
        return _answer(200, answer)

    def _refused(self, query: str, errors: Iterable[GraphQLError], code: str) -> httpx.Response:
        shaped = [
            {
                **e.formatted,
                "extensions": {"type": "graphql error", "code": code, "userError": True},
            }
            for e in errors
        ]
        self.invalid.append((query, shaped))
        return _answer(400, {"errors": shaped})

    def _faulted(self, request: httpx.Request, fault: _Fault) -> httpx.Response:
        if fault.error is not None:
            raise fault.error("injected by FakeLinear", request=request)
        return _answer(fault.status, fault.body, dict(fault.headers))

    # --- queries ------------------------------------------------------------------------------

    def _team(self, info: Any, id: str) -> Json:
        if id not in self.teams:
            raise _not_found("Team")
        return self._team_view(self.teams[id])

    def _teams(self, info: Any, **args: Any) -> Json:
        where = args.get("filter")
        teams = [team for team in self.teams.values() if self._matches("team", team, where)]
        return _connection(teams, self._team_view, args)

    def _issue_labels(self, info: Any, **args: Any) -> Json:
        return self._labels_connection(list(self.labels.values()), args)

    def _labels_connection(self, labels: list[Json], args: Json) -> Json:
        where = args.get("filter")
        matching = [label for label in labels if self._matches("label", label, where)]
        return _connection(matching, self._label_view, args)

    def _issues(self, info: Any, **args: Any) -> Json:
        if args.get("sort"):
            raise _unsupported("issues(sort:)")
        issues = [
            issue
            for issue in self.issues.values()
            if (args.get("includeArchived") or issue["archivedAt"] is None)
            and self._matches("issue", issue, args.get("filter"))
        ]
        order = args.get("orderBy") or "createdAt"
        issues.sort(key=lambda issue: (issue[order], issue["id"]), reverse=True)  # newest first
        return _connection(issues, self._issue_view, args)

    def _issue_ref(self, ref: str) -> Json:
        """An issue by id or identifier (Linear takes either wherever an issue id goes)."""
        for issue in self.issues.values():
            if ref in (issue["id"], issue["identifier"]):
                return issue
        raise _not_found("Issue")

    # --- views: stored records -> GraphQL objects (relations resolved lazily) ------------------

    def _team_view(self, team: Json) -> Json:
        def labels(info: Any, **args: Any) -> Json:
            mine = [lb for lb in self.labels.values() if lb["teamId"] == team["id"]]
            return self._labels_connection(mine, args)

        def states(info: Any, **args: Any) -> Json:
            if args.get("filter"):
                raise _unsupported("Team.states(filter:)")
            return _connection(team["states"], self._state_view, args)

        return {
            "id": team["id"],
            "key": team["key"],
            "name": team["name"],
            "labels": labels,
            "states": states,
        }

    def _state_view(self, state: Json) -> Json:
        return {**state, "team": lambda info: self._team_view(self.teams[state["teamId"]])}

    def _label_view(self, label: Json) -> Json:
        team_id = label["teamId"]
        return {
            **label,
            "team": lambda info: self._team_view(self.teams[team_id]) if team_id else None,
            "parent": lambda info: None,
        }

    def _issue_view(self, issue: Json) -> Json:
        def labels(info: Any, **args: Any) -> Json:
            return self._labels_connection([self.labels[i] for i in issue["labelIds"]], args)

        def user(key: str) -> Callable[[Any], Json | None]:
            return lambda info: self.users[issue[key]] if issue[key] else None

        return {
            **issue,
            "state": lambda info: self._state_view(self._state_record(issue["stateId"])),
            "team": lambda info: self._team_view(self.teams[issue["teamId"]]),
            "labels": labels,
            "assignee": user("assigneeId"),
            "creator": user("creatorId"),
            "project": lambda info: None,
        }

    def _comment_view(self, comment: Json) -> Json:
        return {
            **comment,
            "issue": lambda info: self._issue_view(self.issues[comment["issueId"]]),
            "user": lambda info: self.users[comment["userId"]],
        }

    # --- filters ------------------------------------------------------------------------------

    _SCALARS: ClassVar[dict[str, set[str]]] = {
        "issue": {"id", "identifier", "number", "title", "createdAt", "updatedAt"},
        "label": {"id", "name", "isGroup", "createdAt", "updatedAt"},
        "team": {"id", "key", "name"},
        "state": {"id", "name", "type"},
    }

    def _related(self, kind: str, record: Json, key: str) -> tuple[str, Json | None] | None:
        if kind in ("issue", "label", "state") and key == "team":
            return "team", self.teams.get(record["teamId"]) if record["teamId"] else None
        if kind == "issue" and key == "state":
            return "state", self._state_record(record["stateId"])
        return None

    def _matches(self, kind: str, record: Json, where: Json | None) -> bool:
        """Linear's filter semantics, for the comparators and relations the fake knows."""
        for key, condition in (where or {}).items():
            if key == "and":
                ok = all(self._matches(kind, record, c) for c in condition)
            elif key == "or":
                ok = any(self._matches(kind, record, c) for c in condition)
            elif key in self._SCALARS[kind]:
                ok = _compare(record.get(key), condition, f"{kind}.{key}")
            elif (related := self._related(kind, record, key)) is not None:
                ok = self._matches_related(*related, condition)
            else:
                raise _unsupported(f"{kind} filter on {key!r}")
            if not ok:
                return False
        return True

    def _matches_related(self, kind: str, other: Json | None, condition: Json) -> bool:
        """`null: true` asks for no related record, `null: false` for one; the rest of the
        condition applies to that record."""
        rest = {k: v for k, v in condition.items() if k != "null"}
        if "null" in condition and (other is None) != condition["null"]:
            return False
        return not rest or (other is not None and self._matches(kind, other, rest))

    # --- mutations ----------------------------------------------------------------------------

    def _issue_create(self, info: Any, input: Json) -> Json:
        """A new issue by the API key's user, in the team's first unstarted state (Linear's
        default for a team without triage), with the id given if any (Linear refuses an id
        that is taken)."""
        _only(input, {"id", "teamId", "title", "description", "labelIds"}, "IssueCreateInput")
        team = self.teams.get(input["teamId"])
        if team is None:
            raise _not_found("Team")
        wanted = input.get("id")
        if wanted is not None:
            try:
                uuid.UUID(wanted)
            except ValueError:
                raise _invalid("Argument Validation Error", "id must be a UUID.") from None
            if wanted in self.issues:
                raise _invalid("Duplicate id", "An issue with this id already exists.")
        if not input.get("title"):
            raise _invalid("Argument Validation Error", "An issue needs a title.")
        issue = self.add_issue(
            team["key"], input["title"], input.get("description") or "", creator=self.viewer
        )
        for label_id in input.get("labelIds") or []:
            self._applicable(issue, label_id)
        issue["labelIds"] = list(dict.fromkeys(input.get("labelIds") or []))
        if wanted is not None:
            self.issues[wanted] = self.issues.pop(issue["id"]) | {"id": wanted}
            issue = self.issues[wanted]
        self.outbound.append(self.issue_webhook(issue["id"], "create", actor=self.viewer))
        return {"success": True, "lastSyncId": 1.0, "issue": self._issue_view(issue)}

    def _issue_update(self, info: Any, id: str, input: Json) -> Json:
        issue = self._issue_ref(id)
        _only(input, {"stateId", "labelIds", "title", "description"}, "IssueUpdateInput")
        before = _snapshot(issue)
        if input.get("stateId") is not None:
            state = self._state_record(input["stateId"])
            if state["teamId"] != issue["teamId"]:
                raise _invalid("Invalid state", "The state does not belong to the issue's team.")
            issue["stateId"] = state["id"]
        if input.get("labelIds") is not None:
            for label_id in input["labelIds"]:
                self._applicable(issue, label_id)
            issue["labelIds"] = list(dict.fromkeys(input["labelIds"]))
        for key in ("title", "description"):
            if input.get(key) is not None:
                issue[key] = input[key]
        self._issue_changed(issue, before)
        return {"success": True, "lastSyncId": 1.0, "issue": self._issue_view(issue)}

    def _relabel(self, issue_ref: str, label_id: str, *, add: bool) -> Json:
        issue = self._issue_ref(issue_ref)
        before = _snapshot(issue)
        if add:
            self._applicable(issue, label_id)
            if label_id not in issue["labelIds"]:
                issue["labelIds"] = [*issue["labelIds"], label_id]
        else:
            if label_id not in self.labels:
                raise _not_found("IssueLabel")
            issue["labelIds"] = [i for i in issue["labelIds"] if i != label_id]
        self._issue_changed(issue, before)
        return {"success": True, "lastSyncId": 1.0, "issue": self._issue_view(issue)}

    def _label_create(self, info: Any, input: Json, replaceTeamLabels: bool | None = None) -> Json:
        _only(input, {"name", "color", "teamId", "description"}, "IssueLabelCreateInput")
        if replaceTeamLabels:
            raise _unsupported("issueLabelCreate(replaceTeamLabels: true)")
        team_id = input.get("teamId")
        if team_id is not None and team_id not in self.teams:
            raise _not_found("Team")
        name = input["name"]
        if self._label_for(team_id, name) is not None:
            raise _invalid("Duplicate label name", f"A label named {name} already exists.")
        stamp = self._stamp()
        label = {
            "id": _id(),
            "name": name,
            "color": input.get("color") or "#bec2c8",
            "teamId": team_id,
            "isGroup": False,
            "parentId": None,
            "description": input.get("description"),
            "creatorId": self.viewer["id"],
            "createdAt": stamp,
            "updatedAt": stamp,
        }
        self.labels[label["id"]] = label
        settings_url = f"{WORKSPACE_URL}/settings/labels"
        self.outbound.append(
            self._webhook("IssueLabel", "create", dict(label), settings_url, self.viewer, None)
        )
        return {"success": True, "lastSyncId": 1.0, "issueLabel": self._label_view(label)}

    def _comment_create(self, info: Any, input: Json) -> Json:
        _only(input, {"issueId", "body", "parentId"}, "CommentCreateInput")
        if not input.get("issueId"):
            raise _unsupported("comments on anything but issues")
        issue = self._issue_ref(input["issueId"])
        if not input.get("body"):
            raise _invalid("Argument Validation Error", "A comment needs a body.")
        comment = self.add_comment(issue["id"], input["body"], self.viewer)
        comment["parentId"] = input.get("parentId")
        self.outbound.append(self.comment_webhook(comment["id"], "create"))
        return {"success": True, "lastSyncId": 1.0, "comment": self._comment_view(comment)}

    def _comment_update(
        self, info: Any, id: str, input: Json, skipEditedAt: bool | None = None
    ) -> Json:
        _only(input, {"body"}, "CommentUpdateInput")
        comment = next((c for c in self.comments if c["id"] == id), None)
        if comment is None:
            raise _not_found("Comment")
        if comment["userId"] != self.viewer["id"]:
            raise _forbidden("You can only edit your own comments.")
        before = {key: comment[key] for key in ("updatedAt", "editedAt", "body")}
        stamp = self._stamp()
        comment["body"] = input.get("body") or comment["body"]
        comment["updatedAt"] = stamp
        if not skipEditedAt:
            comment["editedAt"] = stamp
        self.outbound.append(self.comment_webhook(comment["id"], "update", before))
        return {"success": True, "lastSyncId": 1.0, "comment": self._comment_view(comment)}

    def _reaction_create(self, info: Any, input: Json) -> Json:
        _only(input, {"commentId", "emoji"}, "ReactionCreateInput")
        if not input.get("commentId"):
            raise _unsupported("reactions on anything but comments")
        comment = next((c for c in self.comments if c["id"] == input["commentId"]), None)
        if comment is None:
            raise _not_found("Comment")
        stamp = self._stamp()
        reaction = {
            "id": _id(),
            "emoji": input["emoji"],
            "commentId": comment["id"],
            "userId": self.viewer["id"],
            "createdAt": stamp,
            "updatedAt": stamp,
        }
        self.reactions.append(reaction)
        self.outbound.append(
            self._webhook("Reaction", "create", dict(reaction), comment["url"], self.viewer, None)
        )
        view = {
            **reaction,
            "comment": lambda info: self._comment_view(comment),
            "user": lambda info: self.viewer,
        }
        return {"success": True, "lastSyncId": 1.0, "reaction": view}

    def _attachment_link_url(self, info: Any, issueId: str, url: str, **args: Any) -> Json:
        if args.get("id") or args.get("createAsUser") or args.get("displayIconUrl"):
            raise _unsupported("attachmentLinkURL(id/createAsUser/displayIconUrl)")
        issue = self._issue_ref(issueId)
        stamp = self._stamp()
        title = args.get("title") or url
        existing = next(
            (a for a in self.attachments if a["issueId"] == issue["id"] and a["url"] == url), None
        )
        if existing is None:  # Linear keeps one attachment per URL and issue
            attachment = {
                "id": _id(),
                "issueId": issue["id"],
                "url": url,
                "title": title,
                "creatorId": self.viewer["id"],
                "createdAt": stamp,
                "updatedAt": stamp,
            }
            self.attachments.append(attachment)
            action = "create"
        else:
            attachment = existing
            attachment |= {"title": title, "updatedAt": stamp}
            action = "update"
        self.outbound.append(
            self._webhook("Attachment", action, dict(attachment), url, self.viewer, None)
        )
        view = {**attachment, "issue": lambda info: self._issue_view(issue)}
        return {"success": True, "lastSyncId": 1.0, "attachment": view}

    # --- internals ----------------------------------------------------------------------------

    def _applicable(self, issue: Json, label_id: str) -> None:
        label = self.labels.get(label_id)
        if label is None:
            raise _not_found("IssueLabel")
        if label["teamId"] not in (None, issue["teamId"]) or label["isGroup"]:
            raise _invalid("Invalid label", "The label cannot be applied to this issue.")

    def _issue_changed(self, issue: Json, before: Json) -> None:
        """Stamp a change and send the webhook for it (none when nothing changed)."""
        stamp = self._stamp()
        if issue["stateId"] != before["stateId"]:
            self._stamp_state_change(issue, self._state_record(issue["stateId"]), stamp)
        changed = {k: v for k, v in before.items() if issue[k] != v}
        if not changed:
            return
        issue["updatedAt"] = stamp
        changed["updatedAt"] = before["updatedAt"]
        self.outbound.append(self.issue_webhook(issue["id"], "update", changed, self.viewer))

    @staticmethod
    def _stamp_state_change(issue: Json, state: Json, stamp: str) -> None:
        kind = state["type"]
        if kind == "started":
            issue["startedAt"] = issue["startedAt"] or stamp
        elif kind in ("triage", "backlog", "unstarted"):
            issue["startedAt"] = None
        issue["completedAt"] = stamp if kind == "completed" else None
        issue["canceledAt"] = stamp if kind == "canceled" else None

    def _state_record(self, state_id: str) -> Json:
        for team in self.teams.values():
            state: Json
            for state in team["states"]:
                if state["id"] == state_id:
                    return state
        raise _not_found("WorkflowState")

    def _label_named(self, team: Json, name: str) -> Json:
        return self._label_for(team["id"], name) or self.add_label(name, team["key"])

    def _label_for(self, team_id: str | None, name: str) -> Json | None:
        """The label called `name` (any case) among the team's and the workspace's."""
        wanted = name.casefold()
        for label in self.labels.values():
            if label["name"].casefold() == wanted and label["teamId"] in (None, team_id):
                return label
        return None

    def _stamp(self) -> str:
        """Now, as Linear writes timestamps; strictly increasing, so updates order."""
        ms = max(int(time.time() * 1000), self._last_ms + 1)
        self._last_ms = ms
        return (
            datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{ms % 1000:03d}Z"
        )


# --- helpers ----------------------------------------------------------------------------------


def _id() -> str:
    return str(uuid.uuid4())


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60]


def _operation_name(document: graphql.DocumentNode | None) -> str | None:
    for definition in document.definitions if document else ():
        if isinstance(definition, graphql.OperationDefinitionNode) and definition.name:
            return definition.name.value
    return None


def _answer(
    status: int, body: Json | str | None, headers: dict[str, str] | None = None
) -> httpx.Response:
    if isinstance(body, str):
        return httpx.Response(
            status, text=body, headers={"content-type": "text/html", **(headers or {})}
        )
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json; charset=utf-8", **(headers or {})},
    )


def _connection(items: list[Json], view: View, args: Json) -> Json:
    """One page of `items` as a Linear connection; a cursor is its node's id. Forward with
    `first`/`after`, or backward with `last`/`before` (Relay's rules: the `last` items
    before the cursor, in the connection's order)."""
    ids = [item["id"] for item in items]

    def position(cursor: str) -> int:
        if cursor not in ids:
            raise _invalid("Invalid cursor", "The pagination cursor is not valid.")
        return ids.index(cursor)

    backward = args.get("last") is not None or args.get("before") is not None
    if backward and (args.get("first") is not None or args.get("after") is not None):
        raise _unsupported("first/after together with last/before")
    if backward:
        end = position(args["before"]) if args.get("before") else len(items)
        last = args.get("last")
        size = DEFAULT_PAGE if last is None else last
        start = max(0, end - size)
    else:
        first = args.get("first")
        size = DEFAULT_PAGE if first is None else first
        start = position(args["after"]) + 1 if args.get("after") else 0
        end = start + size
    page = items[start:end]
    nodes = [view(item) for item in page]
    return {
        "nodes": nodes,
        "edges": [{"node": n, "cursor": item["id"]} for n, item in zip(nodes, page, strict=True)],
        "pageInfo": {
            "hasNextPage": end < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": page[0]["id"] if page else None,
            "endCursor": page[-1]["id"] if page else None,
        },
    }


def _compare(value: Any, comparator: Json, where: str) -> bool:
    checks: dict[str, Callable[[Any], bool]] = {
        "eq": lambda x: value == x,
        "neq": lambda x: value != x,
        "in": lambda x: value in x,
        "nin": lambda x: value not in x,
        "eqIgnoreCase": lambda x: str(value).casefold() == str(x).casefold(),
        "null": lambda x: (value is None) == x,
    }
    if where.endswith("At"):  # a DateComparator: compares instants, not strings
        checks |= {
            "gt": lambda x: _instant(value, where) > _instant(x, where),
            "gte": lambda x: _instant(value, where) >= _instant(x, where),
            "lt": lambda x: _instant(value, where) < _instant(x, where),
            "lte": lambda x: _instant(value, where) <= _instant(x, where),
        }
    for op, operand in comparator.items():
        if op not in checks:
            raise _unsupported(f"comparator {op!r} on {where}")
        if not checks[op](operand):
            return False
    return True


def _instant(value: Any, where: str) -> datetime:
    """A DateTimeOrDuration as a moment (the ISO 8601 date-times; durations are not faked)."""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise _unsupported(f"the date {value!r} on {where}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _only(input_: Json, allowed: set[str], type_name: str) -> None:
    extra = sorted(k for k, v in input_.items() if v is not None and k not in allowed)
    if extra:
        raise _unsupported(f"{type_name} fields {extra}")


def _snapshot(issue: Json) -> Json:
    """What an update webhook's `updatedFrom` may report (the fields that changed)."""
    keys = (
        "stateId",
        "labelIds",
        "title",
        "description",
        "startedAt",
        "completedAt",
        "canceledAt",
        "updatedAt",
    )
    return {key: list(issue[key]) if key == "labelIds" else issue[key] for key in keys}
