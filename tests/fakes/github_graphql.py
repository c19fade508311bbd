"""A fake of GitHub's GraphQL API for Projects (v2) boards, plugged into FakeGitHubAPI.

It holds boards (a project with a single-select "Status" field and its options), cards
on them linking to the fake's issues, and the option each card sits in. graphql-core
parses documents, checks them against the slice of GitHub's schema the fake serves
(tests/fixtures/github/projects_v2.graphql) and executes them with the resolvers below, so
an answer carries exactly the fields asked for, in GitHub's shapes: refusals worded as
GitHub words them (github_graphql_errors.py), errors in a 200 with `type`, `path` and
`locations`, nulls propagated up to the nearest nullable field. Like GitHub it wants a
live installation token, and it answers FORBIDDEN for boards the installation may not
read or write.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import graphql
import httpx
from graphql import GraphQLError, GraphQLResolveInfo, GraphQLScalarType, GraphQLSchema

from tests.fakes.github_api import FakeGitHubAPI, FakeRepo
from tests.fakes.github_graphql_errors import static_errors, syntax_error, variable_errors
from tests.support.helpers import FIXTURES

Json = dict[str, Any]

SCHEMA_PATH = FIXTURES / "github" / "projects_v2.graphql"
NOT_ACCESSIBLE = "Resource not accessible by integration"


@functools.lru_cache(maxsize=256)
def _static_errors_once(query: str) -> str:
    """A document's static errors (as JSON), worked out once per document: validating one
    against the schema takes milliseconds, and the product sends the same few documents over
    and over (in a benchmark, in the same event loop as the product)."""
    document = graphql.parse(query, allow_empty_selection_sets=False)
    return json.dumps(static_errors(projects_schema(), document))


def _static_errors(query: str) -> list[Json]:
    return list(json.loads(_static_errors_once(query)))


@functools.cache
def projects_schema() -> GraphQLSchema:
    """The slice of GitHub's schema the fake serves, built once per process."""
    schema = graphql.build_schema(SCHEMA_PATH.read_text())
    graphql.assert_valid_schema(schema)
    # GitHub's Date is an ISO-8601 date string; graphql-core would take any value.
    day = schema.type_map["Date"]
    assert isinstance(day, GraphQLScalarType)
    day.coerce_input_value = _iso_date
    day.coerce_input_literal = lambda node: _iso_date(graphql.value_from_ast_untyped(node))
    return schema


def _iso_date(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"a Date is a string, not {value!r}")
    date.fromisoformat(value)  # raises ValueError for what is not a date
    return value


@dataclass(frozen=True)
class Node:
    """A value of an object type while executing: its concrete type and what resolvers need."""

    typename: str
    value: Any


class FieldError(Exception):
    """Raised by a resolver: the field is null and this error is reported (GitHub's `type`)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


# (the parent's value, the field's arguments) -> the field's value
Resolver = Callable[[Any, Json], Any]


@dataclass
class FakeBoard:
    """A Projects v2 board and its Status field (None: the board has no such field)."""

    id: str
    number: int
    title: str
    field_name: str | None  # "Status" as GitHub's templates make it
    field_id: str
    single_select: bool  # False: a text field of that name
    options: list[tuple[str, str]]  # (option id, name), in column order
    closed: bool = False
    readable: bool = True  # False: the installation may not see it (FORBIDDEN)
    writable: bool = True  # False: it may read the board but not move cards

    def option_id(self, name: str) -> str:
        return next(oid for oid, option in self.options if option == name)


@dataclass
class FakeCard:
    id: str
    board: FakeBoard
    repo: str | None  # lower-case full name of the content's repository; None for drafts
    number: int | None
    content_type: str  # Issue | PullRequest | DraftIssue
    option_id: str | None = None
    archived: bool = False


@dataclass
class FakeGitHubGraphQL:
    """Answers POST /graphql for the REST fake `api`; read `mutations` to see what moved."""

    api: FakeGitHubAPI
    boards: list[FakeBoard] = field(default_factory=list)
    cards: list[FakeCard] = field(default_factory=list)
    mutations: list[Json] = field(default_factory=list)  # the input of each one received
    operations: list[str] = field(default_factory=list)  # names of the operations received
    rate_limit: int = 5000
    rate_remaining: int = 5000
    queued_errors: list[list[Json]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.api.graphql = self._serve

    # --- building state --------------------------------------------------------------------

    def add_board(
        self,
        title: str,
        options: Iterable[str] = ("Todo", "In Progress", "Done"),
        *,
        field_name: str | None = "Status",
        single_select: bool = True,
    ) -> FakeBoard:
        n = next(self._ids)
        board = FakeBoard(
            id=f"PVT_kwDOAB{n:06d}",
            number=n,
            title=title,
            field_name=field_name,
            field_id=f"PVTSSF_lADOAB{n:06d}" if single_select else f"PVTF_lADOAB{n:06d}",
            single_select=single_select,
            options=[(_option_id(title, name), name) for name in options],
        )
        self.boards.append(board)
        return board

    def add_card(
        self,
        board: FakeBoard,
        repo: FakeRepo | None,
        number: int | None,
        *,
        status: str | None = None,
        content_type: str = "Issue",
        card_id: str | None = None,
    ) -> FakeCard:
        card = FakeCard(
            id=card_id or f"PVTI_lADOAB{next(self._ids):08d}",
            board=board,
            repo=repo.full_name.lower() if repo is not None else None,
            number=number,
            content_type=content_type if repo is not None else "DraftIssue",
            option_id=board.option_id(status) if status is not None else None,
        )
        self.cards.append(card)
        return card

    def status_of(self, card: FakeCard) -> str | None:
        return next((name for oid, name in card.board.options if oid == card.option_id), None)

    def fail_next(self, errors: list[Json]) -> None:
        """Answer the next document with these errors (and `data: null`), as GitHub does."""
        self.queued_errors.append(errors)

    # --- serving ------------------------------------------------------------------------------

    def _serve(self, request: httpx.Request) -> httpx.Response:
        installation_id = self.api._installation_of(request)
        if installation_id is None:
            docs = "https://docs.github.com/graphql"
            return self._answer(401, {"message": "Bad credentials", "documentation_url": docs})
        try:
            body = json.loads(request.content or b"null")
        except ValueError:
            return self._answer(400, {"message": "Problems parsing JSON"})
        query = body.get("query") if isinstance(body, dict) else None
        if not isinstance(query, str):
            message = "A query attribute must be specified and must be a string."
            return self._answer(200, {"errors": [{"message": message}]})
        variables = body.get("variables") or {}
        try:
            # GitHub refuses `{ }`, which graphql-core 3.3 parses unless told not to.
            document = graphql.parse(query, allow_empty_selection_sets=False)
        except GraphQLError as error:
            return self._answer(200, {"errors": [syntax_error(error)]})
        wanted = body.get("operationName")
        chosen = [
            definition
            for definition in document.definitions
            if isinstance(definition, graphql.OperationDefinitionNode)
            and (wanted is None or (definition.name and definition.name.value) == wanted)
        ]
        if len(chosen) != 1:
            message = "An operation name is required" if wanted is None else "Unknown operation"
            return self._answer(200, {"errors": [{"message": message}]})
        operation = chosen[0]
        self.operations.append(
            operation.name.value if operation.name else operation.operation.value
        )
        schema = projects_schema()
        errors = _static_errors(query) or variable_errors(schema, operation, variables)
        if errors:
            return self._answer(200, {"errors": errors})
        if self.queued_errors:
            return self._answer(200, {"data": None, "errors": self.queued_errors.pop(0)})
        return self._answer(200, self._execute(document, operation, variables, installation_id))

    def _execute(
        self,
        document: graphql.DocumentNode,
        operation: graphql.OperationDefinitionNode,
        variables: Json,
        installation_id: int,
    ) -> Json:
        resolvers = self._resolvers(installation_id)

        def resolve(parent: Node, info: GraphQLResolveInfo[Any], **args: Any) -> Any:
            resolver = resolvers.get((info.parent_type.name, info.field_name))
            if resolver is None:
                return parent.value.get(info.field_name)  # a plain mapping's own field
            return resolver(parent.value, args)

        result = graphql.execute_sync(
            projects_schema(),
            document,
            root_value=Node("root", None),  # root fields' resolvers take no parent value
            variable_values=variables,
            operation_name=operation.name.value if operation.name else None,
            field_resolver=resolve,
            type_resolver=lambda value, *_: value.typename,
        )
        answer: Json = {"data": result.data}
        if result.errors:
            answer["errors"] = [_field_error(error) for error in result.errors]
        return answer

    def _answer(self, status: int, body: Json) -> httpx.Response:
        if self.rate_remaining > 0:
            self.rate_remaining -= 1
        reset = int((self.api.clock() + timedelta(hours=1)).timestamp())
        headers = {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(self.rate_remaining),
            "x-ratelimit-used": str(self.rate_limit - self.rate_remaining),
            "x-ratelimit-reset": str(reset),
            "x-ratelimit-resource": "graphql",
        }
        return self.api._answer(status, body, headers, costs=False)

    # --- resolving ----------------------------------------------------------------------------

    def _resolvers(self, installation_id: int) -> dict[tuple[str, str], Resolver]:
        def repository(_: Any, args: Json) -> Node:
            full_name = f"{args['owner']}/{args['name']}"
            repo = self.api.repos.get(full_name.lower())
            if repo is None or repo.installation_id != installation_id:
                message = f"Could not resolve to a Repository with the name '{full_name}'."
                raise FieldError("NOT_FOUND", message)
            return Node("Repository", repo)

        def issue(repo: FakeRepo, args: Json) -> Node:
            found = self.api._issue(repo, args["number"])
            if found is None or "pull_request" in found:
                message = f"Could not resolve to an Issue with the number of {args['number']}."
                raise FieldError("NOT_FOUND", message)
            return Node("Issue", (repo, found))

        def project_items(content: tuple[FakeRepo, Json], args: Json) -> Node:
            repo, found = content
            limit = args.get("first") or args.get("last")
            if limit is None:
                message = (
                    "You must provide a `first` or `last` value to properly paginate the "
                    "`projectItems` connection."
                )
                raise FieldError("MISSING_PAGINATION_BOUNDARIES", message)
            if limit > 100:
                message = (
                    f"Requesting {limit} records on the `projectItems` connection exceeds the "
                    "`first` limit of 100 records."
                )
                raise FieldError("EXCESSIVE_PAGINATION", message)
            cards = [
                card
                for card in self.cards
                if (card.repo, card.number) == (repo.full_name.lower(), found["number"])
                and (args.get("includeArchived", True) or not card.archived)
            ]
            shown = cards[:limit] if args.get("first") else cards[-limit:]
            return Node(
                "ProjectV2ItemConnection",
                {"nodes": [Node("ProjectV2Item", c) for c in shown], "totalCount": len(cards)},
            )

        def node(_: Any, args: Json) -> Node:
            card = next((c for c in self.cards if c.id == args["id"]), None)
            if card is None:
                raise FieldError("NOT_FOUND", _unresolved(args["id"]))
            if not card.board.readable:
                raise FieldError("FORBIDDEN", NOT_ACCESSIBLE)
            return Node("ProjectV2Item", card)

        def project(card: FakeCard, _: Json) -> Node:
            if not card.board.readable:
                raise FieldError("FORBIDDEN", NOT_ACCESSIBLE)
            return Node("ProjectV2", card.board)

        def field_value(card: FakeCard, args: Json) -> Node | None:
            if not card.board.readable:
                raise FieldError("FORBIDDEN", NOT_ACCESSIBLE)
            board = card.board
            if board.field_name != args["name"] or card.option_id is None:
                return None
            value = {
                "id": f"PVTFSV_{card.id}",
                "name": self.status_of(card),
                "optionId": card.option_id,
            }
            return Node("ProjectV2ItemFieldSingleSelectValue", value)

        def board_field(board: FakeBoard, args: Json) -> Node | None:
            if board.field_name != args["name"]:
                return None
            if not board.single_select:
                value = {"id": board.field_id, "name": board.field_name, "dataType": "TEXT"}
                return Node("ProjectV2Field", value)
            return Node("ProjectV2SingleSelectField", board)

        def content(card: FakeCard, _: Json) -> Node | None:
            if card.content_type == "DraftIssue":
                return Node("DraftIssue", {"id": f"DI_{card.id}", "title": "A draft"})
            repo = self.api.repos[card.repo or ""]
            found = self.api._issue(repo, card.number or 0)
            if found is None or repo.installation_id != installation_id:
                return None  # content the installation may not see reads as null
            return Node(card.content_type, (repo, found))

        def update(_: Any, args: Json) -> Node:
            given = args["input"]
            self.mutations.append(given)
            board = next((b for b in self.boards if b.id == given["projectId"]), None)
            card = next((c for c in self.cards if c.id == given["itemId"]), None)
            if board is None:
                raise FieldError("NOT_FOUND", _unresolved(given["projectId"]))
            if not (board.readable and board.writable):
                raise FieldError("FORBIDDEN", NOT_ACCESSIBLE)
            if card is None or card.board is not board:
                raise FieldError("NOT_FOUND", _unresolved(given["itemId"]))
            if given["fieldId"] != board.field_id:
                raise FieldError("NOT_FOUND", _unresolved(given["fieldId"]))
            value = given["value"]
            option = value.get("singleSelectOptionId")
            if len(value) != 1 or option not in dict(board.options):
                message = "The single select option Id does not reference a valid option"
                raise FieldError("UNPROCESSABLE", message)
            card.option_id = option
            payload = {
                "clientMutationId": given.get("clientMutationId"),
                "projectV2Item": Node("ProjectV2Item", card),
            }
            return Node("UpdateProjectV2ItemFieldValuePayload", payload)

        return {
            ("Query", "repository"): repository,
            ("Query", "node"): node,
            ("Mutation", "updateProjectV2ItemFieldValue"): update,
            ("Repository", "id"): lambda repo, _: f"R_{repo.data['id']}",
            ("Repository", "name"): lambda repo, _: repo.data["name"],
            ("Repository", "nameWithOwner"): lambda repo, _: repo.full_name,
            ("Repository", "issue"): issue,
            **_issue_like("Issue"),
            ("Issue", "projectItems"): project_items,
            **_issue_like("PullRequest"),
            ("ProjectV2Item", "id"): lambda card, _: card.id,
            ("ProjectV2Item", "isArchived"): lambda card, _: card.archived,
            ("ProjectV2Item", "type"): lambda card, _: _ITEM_TYPES[card.content_type],
            ("ProjectV2Item", "project"): project,
            ("ProjectV2Item", "content"): content,
            ("ProjectV2Item", "fieldValueByName"): field_value,
            ("ProjectV2", "id"): lambda board, _: board.id,
            ("ProjectV2", "number"): lambda board, _: board.number,
            ("ProjectV2", "title"): lambda board, _: board.title,
            ("ProjectV2", "closed"): lambda board, _: board.closed,
            ("ProjectV2", "field"): board_field,
            ("ProjectV2SingleSelectField", "id"): lambda board, _: board.field_id,
            ("ProjectV2SingleSelectField", "name"): lambda board, _: board.field_name,
            ("ProjectV2SingleSelectField", "dataType"): lambda board, _: "SINGLE_SELECT",
            ("ProjectV2SingleSelectField", "options"): _options,
        }


_ITEM_TYPES = {"Issue": "ISSUE", "PullRequest": "PULL_REQUEST", "DraftIssue": "DRAFT_ISSUE"}


def _issue_like(typename: str) -> dict[tuple[str, str], Resolver]:
    """Fields issues and pull requests share; their value is (FakeRepo, issue JSON)."""
    prefix = {"Issue": "I", "PullRequest": "PR"}[typename]
    return {
        (typename, "id"): lambda c, _: f"{prefix}_kwDO{c[1]['id']}",
        (typename, "number"): lambda c, _: c[1]["number"],
        (typename, "title"): lambda c, _: c[1]["title"],
        (typename, "repository"): lambda c, _: Node("Repository", c[0]),
    }


def _field_error(error: GraphQLError) -> Json:
    """A resolver's FieldError as GitHub reports it; anything else is a bug of the fake."""
    if not isinstance(error.original_error, FieldError):
        raise error.original_error or error
    return {
        "type": error.original_error.error_type,
        "path": error.path,
        "locations": [location.formatted for location in error.locations or ()],
        "message": error.original_error.message,
    }


def _unresolved(node_id: str) -> str:
    return f"Could not resolve to a node with the global id of '{node_id}'"


def _options(board: FakeBoard, args: Json) -> list[Node]:
    names = args.get("names")
    return [
        Node("ProjectV2SingleSelectFieldOption", {"id": oid, "name": name})
        for oid, name in board.options
        if names is None or name in names
    ]


def _option_id(board: str, name: str) -> str:
    # GitHub's option ids are eight hex digits.
    return hashlib.sha1(f"{board}:{name}".encode(), usedforsecurity=False).hexdigest()[:8]
